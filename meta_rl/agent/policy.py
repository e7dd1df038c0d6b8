"""Policy and value networks conditioned on the observation and the belief over z.

:class:`ActorCritic` is a plain ``nn.Module`` whose ``forward(obs, belief)`` is a pure function
of its parameters, so it can be used functionally (MAML)::

    out = torch.func.functional_call(policy, params, (obs, belief))

``obs`` is the raw observation (the running normaliser, a buffer, is applied inside);
``belief`` is :meth:`meta_rl.agent.encoder.Belief.features` (mean and variance of z).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from meta_rl.agent.networks import RunningNorm, mlp

__all__ = ["ActorCritic", "PolicyOutput"]


class PolicyOutput(NamedTuple):
    """Action mean and log-std (diagonal Gaussian, unbounded) and the state value."""

    mean: torch.Tensor
    log_std: torch.Tensor
    value: torch.Tensor


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
