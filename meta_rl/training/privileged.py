"""Training losses that read the true task features (docs/privileged.md).

The trainer takes the features from the tasks it pins, one row per sub-environment
(:func:`task_features`), and puts them into the :class:`~meta_rl.training.rollout.TrialBatch`
after the rollout; only the losses here read them:

- :func:`privileged_values`: the asymmetric critic's values of a batch (GAE's baseline and the
  PPO value loss, ``privileged.critic``);
- :func:`task_inference_loss`: the belief after every step predicts the standardised task
  features (``privileged.task_inference_weight``, added to the ELBO);
- :func:`task_inference_errors`: that error before and after every step, without gradients:
  the information-gain reward (``privileged.info_gain_weight``) and the per-episode metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from meta_rl.agent.encoder import Belief, ContextEncoder
from meta_rl.agent.privileged import PrivilegedCritic, TaskInferenceHead, standardize_features
from meta_rl.agent.task_model import TrialTensors

__all__ = [
    "InferenceErrors",
    "privileged_values",
    "standardize_features",
    "task_features",
    "task_inference_errors",
    "task_inference_loss",
]


def task_features(tasks: Sequence[Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, F)`` float32 true task features, one row per task, from ``task.features()``."""
    rows = []
    for task in tasks:
        features = getattr(task, "features", None)
        if not callable(features):
            raise ValueError(
                f"privileged: the task {type(task).__name__} has no features() method; give "
                "your task dataclass a features() -> 1-D float array (envs.tasks.Task.features "
                "is an example) or turn privileged.critic and privileged.task_inference_weight off"
            )
        rows.append(np.asarray(features(), dtype=np.float32).reshape(-1))
    return torch.as_tensor(np.stack(rows), device=device)


def privileged_values(
    critic: PrivilegedCritic,
    norm_obs: torch.Tensor,
    belief: torch.Tensor,
    features: torch.Tensor,
) -> torch.Tensor:
    """Values ``(T, N)`` of the asymmetric critic on time-major inputs; ``features`` ``(N, F)``
    are the same at every step of a trial."""
    return critic(norm_obs, belief, features.expand(norm_obs.shape[0], *features.shape))


def task_inference_loss(
    encoder: ContextEncoder,
    head: TaskInferenceHead,
    trials: TrialTensors,
    features: torch.Tensor,
    beliefs: Belief | None = None,
) -> torch.Tensor:
    """The loss of ``head`` (:meth:`TaskInferenceHead.loss`: the squared error of a point
    estimate, a mixture's negative log-likelihood) on the belief after each valid transition
    against the standardised task features ``(N, F)`` of the trials' tasks (mean over features
    and steps; standardised as :meth:`TaskInferenceHead.targets` says: over the batch, or with
    a student's fixed statistics). ``beliefs``: the encoder's beliefs after each step of
    ``trials`` when the caller has them already (the ELBO step shares its pass); None encodes
    the trials."""
    if beliefs is None:
        beliefs, _ = trials.encode(encoder)
    err = head.loss(beliefs.features(), head.targets(features).unsqueeze(0))
    w = trials.mask.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def _errors_after(
    encoder: ContextEncoder,
    head: TaskInferenceHead,
    trials: TrialTensors,
    target: torch.Tensor,
    beliefs: Belief | None = None,
) -> torch.Tensor:
    """``(T, N)``: the error (mean over features) of ``head`` on the belief after each step of
    the trials against ``target`` ``(N, F)``, the standardised task features."""
    if beliefs is None:
        beliefs, _ = trials.encode(encoder)
    return ((head(beliefs.features()) - target.unsqueeze(0)) ** 2).mean(-1)


class InferenceErrors(NamedTuple):
    """The task-inference head's error (mean over features) per step, ``(T, N)`` each."""

    before: torch.Tensor
    """On the belief before step t: the prior's at t = 0, else ``after[t - 1]``."""
    after: torch.Tensor
    """On the belief after step t (masked steps leave the belief, so the error, unchanged)."""

    def gain(self, mask: torch.Tensor) -> torch.Tensor:
        """The information gain ``before - after`` per step, 0 on masked steps; per trial it sums
        to the error at the prior minus the error after the last step."""
        return (self.before - self.after) * mask.to(self.after.dtype)


def task_inference_errors(
    encoder: ContextEncoder,
    head: TaskInferenceHead,
    trials: TrialTensors,
    features: torch.Tensor,
) -> InferenceErrors:
    """The squared error of ``head`` against the standardised features ``(N, F)`` of the
    trials' tasks, on the belief before and after every step (no gradients)."""
    with torch.no_grad():
        target = head.targets(features)
        after = _errors_after(encoder, head, trials, target)
        prior = encoder.prior(target.shape[0], target.device).features()
        first = ((head(prior) - target) ** 2).mean(-1)
        before = torch.cat([first.unsqueeze(0), after[:-1]], dim=0)
    return InferenceErrors(before, after)
