"""Networks that read the true task features, used by training losses only (docs/privileged.md).

:class:`PrivilegedCritic` is the asymmetric critic (``privileged.critic``): a value network on
``[normalised obs, belief features, task features]``. :class:`TaskInferenceHead` maps belief
features to predicted task features (``privileged.task_inference_weight``). Neither is called
when the agent acts: :class:`~meta_rl.agent.meta_agent.MetaAgent` has no input for task features,
and :meth:`~meta_rl.agent.meta_agent.MetaAgent.from_checkpoint` does not even build them.
"""

from __future__ import annotations

import torch
from torch import nn

from meta_rl.agent.networks import mlp

__all__ = ["PRIVILEGED_MODULES", "PrivilegedCritic", "TaskInferenceHead"]

PRIVILEGED_MODULES = ("privileged_critic", "task_head")
"""Attribute names (and ``state_dict`` prefixes) of the privileged parts of ``AgentNetworks``."""


class PrivilegedCritic(nn.Module):
    """State value from the normalised observation, the belief features and the task features."""

    def __init__(
        self,
        obs_dim: int,
        belief_dim: int,
        task_dim: int,
        *,
        hidden: tuple[int, ...] = (128, 128),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        act: type[nn.Module] = nn.Tanh if activation == "tanh" else nn.ReLU
        self.in_dim = obs_dim + belief_dim + task_dim
        self.net = mlp([self.in_dim, *hidden, 1], act)

    def forward(
        self, norm_obs: torch.Tensor, belief: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        """Values ``(...)`` of inputs ``(..., obs_dim)``, ``(..., belief)``, ``(..., task)``."""
        value: torch.Tensor = self.net(torch.cat([norm_obs, belief, task], dim=-1)).squeeze(-1)
        return value


class TaskInferenceHead(nn.Module):
    """Predicted (standardised) task features from belief features."""

    def __init__(self, belief_dim: int, task_dim: int, *, hidden: tuple[int, ...] = (64,)) -> None:
        super().__init__()
        self.net = mlp([belief_dim, *hidden, task_dim], nn.ReLU)

    def forward(self, belief: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(belief)
        return out
