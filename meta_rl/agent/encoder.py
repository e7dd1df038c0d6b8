"""Recurrent context encoder: a GRU over the transitions of a trial, giving a belief over z.

A *trial* is K consecutive episodes on one task. The encoder reads every transition
``(obs, action, reward, next_obs, done)`` of the trial in order; its hidden state is carried
across the episode boundaries inside the trial (``done`` is an input, so it knows where they
are) and is reset (:meth:`ContextEncoder.initial_state`) when a new task begins. After each
transition it outputs a diagonal Gaussian belief ``q(z | transitions so far)``; before the first
transition the belief is the prior ``N(0, I)`` exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["LOGVAR_RANGE", "Belief", "ContextEncoder"]

LOGVAR_RANGE = (-10.0, 4.0)


class Belief(NamedTuple):
    """A diagonal Gaussian over z: mean and log-variance, shape ``(..., latent_dim)``."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def features(self) -> torch.Tensor:
        """What the policy sees: mean and variance, concatenated."""
        return torch.cat([self.mean, self.logvar.exp()], dim=-1)

    def detach(self) -> Belief:
        return Belief(self.mean.detach(), self.logvar.detach())


class ContextEncoder(nn.Module):
    """GRU encoder of transitions into a Gaussian belief over a latent task variable z.

    Inputs per transition: observation and next observation (``obs_dim`` each, normalised by the
    caller), action (``action_dim``), reward (scalar) and done (0/1, the episode ended with this
    transition). Each input gets its own linear embedding (ReLU) before the GRU, so that the
    scalar reward is not drowned by the high-dimensional observations.

    Shapes: sequences are time-major, ``(T, N, ...)``; the hidden state is ``(N, hidden_size)``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        latent_dim: int = 5,
        hidden_size: int = 64,
        embed_size: int = 32,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.latent_dim = latent_dim
        self.hidden_size = hidden_size
        self.embed_obs = nn.Linear(obs_dim, embed_size)
        self.embed_next_obs = nn.Linear(obs_dim, embed_size)
        self.embed_action = nn.Linear(action_dim, embed_size // 2 or 1)
        self.embed_reward = nn.Linear(2, embed_size // 2 or 1)  # reward and done
        gru_in = 2 * embed_size + 2 * (embed_size // 2 or 1)
        self.gru = nn.GRU(gru_in, hidden_size)
        self.head = nn.Linear(hidden_size, 2 * latent_dim)

    def initial_state(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The hidden state at the start of a trial (a new task): zeros, ``(n, hidden_size)``."""
        return torch.zeros(n, self.hidden_size, device=device)

    def prior(self, n: int, device: torch.device | str | None = None) -> Belief:
        """The prior N(0, I) as a belief of ``n`` rows."""
        zeros = torch.zeros(n, self.latent_dim, device=device)
        return Belief(zeros, zeros.clone())

    def _embed(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
    ) -> torch.Tensor:
        rd = torch.stack([reward, done.to(reward.dtype)], dim=-1)
        parts = [
            self.embed_obs(obs),
            self.embed_next_obs(next_obs),
            self.embed_action(action),
            self.embed_reward(rd),
        ]
        return torch.relu(torch.cat(parts, dim=-1))

    def belief(self, hidden: torch.Tensor) -> Belief:
        """The belief read out of hidden states ``(..., hidden_size)``."""
        out = self.head(hidden)
        mean, logvar = out.split(self.latent_dim, dim=-1)
        return Belief(mean, logvar.clamp(*LOGVAR_RANGE))

    def step(
        self,
        hidden: torch.Tensor,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Belief]:
        """Read one transition per row ``(N, ...)``: the new hidden state and belief.

        Rows where ``mask`` is false (an invalid transition, e.g. an autoreset step) keep their
        hidden state.
        """
        x = self._embed(obs, action, reward, next_obs, done)
        gru = self.gru
        # The GRU's one-step cell on its own weights: the same numbers as a one-step call of
        # the module (a test checks it bit for bit), without the module's per-call overhead
        # (this runs at every env step of collection).
        new_hidden = torch.ops.aten.gru_cell(
            x, hidden, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
        )
        if mask is not None:
            new_hidden = torch.where(mask.unsqueeze(-1), new_hidden, hidden)
        return new_hidden, self.belief(new_hidden)

    def forward(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
        hidden: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[Belief, torch.Tensor]:
        """Encode whole sequences ``(T, N, ...)``: beliefs after each transition and last state.

        Returns the beliefs ``(T, N, latent_dim)`` (index t: after reading transitions 0..t) and
        the final hidden state ``(N, hidden_size)``. Equal to calling :meth:`step` T times.
        """
        states = self.hidden_states(obs, action, reward, next_obs, done, hidden, mask)
        return self.belief(states), states[-1]

    def hidden_states(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        done: torch.Tensor,
        hidden: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The hidden states ``(T, N, hidden_size)`` after each transition of ``(T, N, ...)``
        sequences that start from ``hidden`` (default: :meth:`initial_state`)."""
        t_len, n = reward.shape
        if hidden is None:
            hidden = self.initial_state(n, reward.device)
        x = self._embed(obs, action, reward, next_obs, done)
        if mask is None or bool(mask.all()):
            out, _ = self.gru(x, hidden.unsqueeze(0))
            return out
        outs = []
        h_t = hidden
        for t in range(t_len):
            _, h = self.gru(x[t : t + 1], h_t.unsqueeze(0))
            h_t = torch.where(mask[t].unsqueeze(-1), h.squeeze(0), h_t)
            outs.append(h_t)
        return torch.stack(outs)

    def beliefs_with_prior(self, beliefs: Belief) -> Belief:
        """Prepend the prior to ``(T, N, d)`` beliefs: index t is the belief before transition t."""
        n = beliefs.mean.shape[1]
        prior = self.prior(n, beliefs.mean.device)
        return Belief(
            torch.cat([prior.mean.unsqueeze(0), beliefs.mean], dim=0),
            torch.cat([prior.logvar.unsqueeze(0), beliefs.logvar], dim=0),
        )
