"""A small context encoder and random transitions to feed it."""

from __future__ import annotations

import torch

from meta_rl.agent.encoder import ContextEncoder


def random_transitions(t_len: int, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``(obs, action, reward, next_obs, done)`` of ``t_len`` steps of ``n`` envs (observations
    of width 3, actions of width 2); an episode ends at step ``t_len // 2 - 1``."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(t_len, n, 3, generator=g)
    action = torch.randn(t_len, n, 2, generator=g)
    reward = torch.randn(t_len, n, generator=g)
    next_obs = torch.randn(t_len, n, 3, generator=g)
    done = torch.zeros(t_len, n)
    done[t_len // 2 - 1] = 1.0
    return obs, action, reward, next_obs, done


def small_encoder() -> ContextEncoder:
    """An encoder for :func:`random_transitions`, initialised from torch seed 0."""
    torch.manual_seed(0)
    return ContextEncoder(3, 2, latent_dim=4, hidden_size=16, embed_size=8)
