"""Networks that read the true task features, used by training losses only (docs/privileged.md).

:class:`PrivilegedCritic` is the asymmetric critic (``privileged.critic``): a value network on
``[normalised obs, belief features, task features]``. :class:`TaskInferenceHead` maps belief
features to predicted task features (``privileged.task_inference_weight``). Neither reads the
true task features when the agent acts: :class:`~meta_rl.agent.meta_agent.MetaAgent` has no
input for them. The critic is never called then, and
:meth:`~meta_rl.agent.meta_agent.MetaAgent.from_checkpoint` does not even build it; the head is
built (and acts) only in a student (``privileged.teacher``), where it reads the belief alone and
its output is part of what the policy conditions on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from meta_rl.agent.networks import RunningNorm, mlp

__all__ = [
    "PRIVILEGED_MODULES",
    "PrivilegedCritic",
    "TaskInferenceHead",
    "inference_targets",
    "inference_width",
    "standardize_features",
]

PRIVILEGED_MODULES = ("privileged_critic", "task_head")
"""Attribute names (and ``state_dict`` prefixes) of the privileged parts of ``AgentNetworks``."""


def inference_width(priv: Any, task_dim: int) -> int:
    """How many task features the task-inference head predicts: the columns of
    ``privileged.inference_features`` (``priv``), else all ``task_dim``; an index outside the
    features is refused naming the key."""
    cols = priv.inference_features
    if cols is None:
        return task_dim
    if max(cols) >= task_dim:
        raise ValueError(
            f"privileged.inference_features: got {list(cols)}; allowed: column indices below "
            f"{task_dim}, the width of this family's Task.features()"
        )
    return len(cols)


def inference_targets(priv: Any, features: torch.Tensor) -> torch.Tensor:
    """The columns of the true task features ``(N, F)`` the head predicts
    (``privileged.inference_features``; all of them when null)."""
    cols = priv.inference_features
    return features if cols is None else features[:, list(cols)]


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


def standardize_features(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Features ``(N, F)`` with zero mean and unit variance over the batch (constant columns
    become 0), so goal, size, mass and friction weigh alike whatever their units."""
    mean = features.mean(0)
    std = features.std(0, unbiased=False)
    return (features - mean) / (std + eps)


class TaskInferenceHead(nn.Module):
    """Predicted (standardised) task features from belief features.

    What "standardised" means is :meth:`targets`: over each batch by default; with
    ``fixed_norm`` (a student's head, ``privileged.teacher``) by the fixed statistics of
    ``feature_norm``, a :class:`~meta_rl.agent.networks.RunningNorm` that is never updated: the
    teacher's observation normaliser on its task-feature columns, copied at the student's start
    and saved with the head. The head's output is then exactly what the teacher's policy read
    in those columns, so the student's policy reads it in their place.
    """

    feature_norm: RunningNorm | None

    def __init__(
        self,
        belief_dim: int,
        task_dim: int,
        *,
        hidden: tuple[int, ...] = (64,),
        fixed_norm: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.net = mlp([belief_dim, *hidden, task_dim], nn.ReLU)
        # Only a student's head has it, so a plain head's state_dict is as before.
        self.feature_norm = RunningNorm(task_dim, enabled=normalize) if fixed_norm else None

    def targets(self, features: torch.Tensor) -> torch.Tensor:
        """The standardised true features ``(N, F)`` that the head learns to predict."""
        if self.feature_norm is None:
            return standardize_features(features)
        return self.feature_norm(features)

    def forward(self, belief: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(belief)
        return out
