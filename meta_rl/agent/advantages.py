"""Generalised advantage estimation, shared by PPO (the trainer) and the MAML inner loss (the
agent adapting on an episode)."""

from __future__ import annotations

import torch

__all__ = ["compute_gae"]


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminals: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets, time-major ``(T, N)``.

    ``terminals[t]`` is true when the state after step t is terminal (no bootstrap from it);
    ``last_value`` ``(N,)`` is the value of the state after the last step (ignored where that
    step is terminal). Returns ``(advantages, returns)`` with ``returns = advantages + values``::

        delta_t = r_t + gamma * (1 - term_t) * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * (1 - term_t) * A_{t+1}
    """
    t_len = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(t_len)):
        not_term = 1.0 - terminals[t].to(rewards.dtype)
        delta = rewards[t] + gamma * not_term * next_value - values[t]
        next_adv = delta + gamma * lam * not_term * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values
