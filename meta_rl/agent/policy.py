"""Policy and value networks conditioned on the observation and the belief over z.

:class:`ActorCritic` is a plain ``nn.Module`` whose ``forward(obs, belief)`` is a pure function
of its parameters, so it can be used functionally (MAML)::

    out = torch.func.functional_call(policy, params, (obs, belief))

``obs`` is the raw observation (the running normaliser, a buffer, is applied inside);
``belief`` is :meth:`meta_rl.agent.encoder.Belief.features` (mean and variance of z).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from meta_rl.agent import maml
from meta_rl.agent.task_model import mlp

__all__ = ["ActorCritic", "PolicyOutput", "RunningNorm", "gaussian_entropy", "gaussian_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


class RunningNorm(nn.Module):
    """Running mean and variance of a vector (buffers), normalising and clipping to +-``clip``.

    :meth:`update` merges a batch with the parallel-variance formula; the statistics are saved
    with the module's ``state_dict``.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, dim: int, clip: float = 10.0, enabled: bool = True) -> None:
        super().__init__()
        self.clip = clip
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch ``(..., dim)`` into the statistics (rows with NaN/inf are ignored)."""
        if not self.enabled:
            return
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        x = x[torch.isfinite(x).all(-1)]  # a non-finite sample must not poison the statistics
        if x.shape[0] == 0:
            return
        b_mean, b_var, b_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        new_mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        mean = self.mean.to(x.dtype)
        std = (self.var.to(x.dtype) + 1e-8).sqrt()
        return ((x - mean) / std).clamp(-self.clip, self.clip)


class PolicyOutput(NamedTuple):
    """Action mean and log-std (diagonal Gaussian, unbounded) and the state value."""

    mean: torch.Tensor
    log_std: torch.Tensor
    value: torch.Tensor


def gaussian_log_prob(out: PolicyOutput, action: torch.Tensor) -> torch.Tensor:
    """Log-density of ``action`` under the policy's Gaussian, summed over action dimensions."""
    return maml.gaussian_log_prob(out.mean, out.log_std, action)


def gaussian_entropy(out: PolicyOutput) -> torch.Tensor:
    """Entropy of the policy's Gaussian, summed over action dimensions."""
    return (out.log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1).expand(out.mean.shape[:-1])


class ActorCritic(nn.Module):
    """Gaussian actor and value critic, both on ``[normalised obs, belief features]``.

    Separate MLPs for actor and critic (no shared trunk, so the value loss does not disturb the
    policy); a state-independent log-std parameter; the last actor layer starts small so the
    initial actions are near zero. Actions are unbounded: the caller clips them to the action
    space for the environment and keeps the raw ones for the log-probabilities.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        belief_dim: int,
        *,
        hidden: tuple[int, ...] = (128, 128),
        activation: str = "tanh",
        init_log_std: float = -0.5,
        normalize_obs: bool = True,
    ) -> None:
        super().__init__()
        act: type[nn.Module] = nn.Tanh if activation == "tanh" else nn.ReLU
        self.obs_norm = RunningNorm(obs_dim, enabled=normalize_obs)
        in_dim = obs_dim + belief_dim
        self.actor = mlp([in_dim, *hidden, action_dim], act)
        self.critic = mlp([in_dim, *hidden, 1], act)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))
        last = self.actor[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()

    def forward(self, obs: torch.Tensor, belief: torch.Tensor) -> PolicyOutput:
        x = torch.cat([self.obs_norm(obs), belief], dim=-1)
        mean = self.actor(x)
        value = self.critic(x).squeeze(-1)
        return PolicyOutput(mean, self.log_std.expand_as(mean), value)
