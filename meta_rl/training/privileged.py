"""Training losses that read the true task features (docs/privileged.md).

The trainer takes the features from the tasks it pins, one row per sub-environment
(:func:`task_features`), and puts them into the :class:`~meta_rl.training.rollout.TrialBatch`
after the rollout; only the losses here read them:

- :func:`privileged_values`: the asymmetric critic's values of a batch (GAE's baseline and the
  PPO value loss, ``privileged.critic``);
- :func:`task_inference_loss`: the belief after every step predicts the standardised task
  features (``privileged.task_inference_weight``, added to the ELBO);
- :func:`task_inference_errors`: that error before and after every step, without gradients:
  the information-gain reward (``privileged.info_gain_weight``) and the per-episode metrics;
- :func:`reward_model_update`: the particle posterior's reward model learns the reward of
  each transition under the true features (``privileged.hypotheses: particles``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from meta_rl.agent.encoder import Belief, ContextEncoder
from meta_rl.agent.particles import (
    FeatureDynamicsModel,
    FeatureObservationModel,
    FeatureRewardModel,
)
from meta_rl.agent.privileged import PrivilegedCritic, TaskInferenceHead, standardize_features
from meta_rl.agent.task_model import TrialTensors
from meta_rl.task_envs.family import task_features_of
from meta_rl.training.optim import GuardedOptimizer

__all__ = [
    "InferenceErrors",
    "observation_model_loss",
    "privileged_values",
    "reward_model_loss",
    "reward_model_update",
    "standardize_features",
    "task_features",
    "task_inference_errors",
    "task_inference_loss",
]


def task_features(tasks: Sequence[Any], device: torch.device | str = "cpu") -> torch.Tensor:
    """``(N, F)`` float32 true task features, one row per task, from ``task.features()``."""
    rows = [
        task_features_of(
            task,
            "privileged",
            "turn privileged.critic and privileged.task_inference_weight off",
        )
        for task in tasks
    ]
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


def observation_model_loss(
    model: FeatureObservationModel, first_obs: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """The observation model's squared error (mean over dimensions and trials) on the trials'
    first normalised observations ``(N, obs_dim)`` from their standardised features ``(N, F)``."""
    return ((model(features) - first_obs) ** 2).mean()


def reward_model_loss(
    model: FeatureRewardModel,
    obs: torch.Tensor,
    action: torch.Tensor,
    next_obs: torch.Tensor,
    features: torch.Tensor,
    reward: torch.Tensor,
) -> torch.Tensor:
    """The reward model's loss on transitions: the squared error, or with ``learned_noise``
    the beta-NLL of Seitzer et al. (2022) with beta 1/2, the Gaussian negative log-likelihood
    of each transition weighed by its (constant) predicted width, so that the mean is not
    fitted only where the model is already sure."""
    if not model.learned_noise:
        return ((model(obs, action, next_obs, features) - reward) ** 2).mean()
    mean, log_var = model.distribution(obs, action, next_obs, features)
    nll = 0.5 * ((mean - reward) ** 2 / log_var.exp() + log_var)
    return ((0.5 * log_var).exp().detach() * nll).mean()


def reward_model_update(
    model: FeatureRewardModel,
    trials: TrialTensors,
    raw_rewards: torch.Tensor,
    features: torch.Tensor,
    *,
    updates: int,
    batch_size: int,
    guard: GuardedOptimizer,
    generator: torch.Generator,
    observation_model: FeatureObservationModel | None = None,
    dynamics_model: FeatureDynamicsModel | None = None,
    average: FeatureRewardModel | None = None,
    averaging: tuple[float, int] = (0.0, 0),
) -> dict[str, float]:
    """Fit the reward model of the particle posterior (``privileged.hypotheses: particles``) on
    a batch of trials: ``updates`` steps of squared error on minibatches of ``batch_size`` valid
    transitions, the model reading the trials' normalised observations and the standardised
    true features ``(N, F)`` of their tasks, predicting the raw rewards ``(T, N)``.

    First, before it learns from them, its root-mean-square error on these (fresh) trials
    becomes its ``sigma``, the likelihood's scale. Logged as ``privileged/reward_model_rmse``
    (that error) and ``losses/reward_model`` (the mean training loss). A model with
    ``learned_noise`` learns by :func:`reward_model_loss`, and its ``sigma`` becomes the
    root-mean-square of the fresh errors in units of its predicted widths
    (``privileged/reward_noise_calibration``; ``privileged/reward_noise_width`` is the mean
    predicted width).

    With ``observation_model`` (``privileged.observation_likelihood``) each step also fits it
    on the trials' first observations, whose per-dimension error on the fresh trials becomes
    its ``log_var`` first (``privileged/observation_model_error``: the mean of that error).

    With ``dynamics_model`` (``privileged.dynamics_likelihood``) each step also fits it on the
    same minibatch's changes of the normalised observation, after its per-dimension error on
    the fresh trials became its ``log_var`` (``privileged/dynamics_model_error``: the mean of
    that error).

    With ``average`` (``privileged.reward_model_averaging``), the model the posterior reads:
    it is calibrated (its ``sigma``, the logged errors) in place of ``model``, and after the
    steps its weights move to ``w`` times themselves plus ``1 - w`` times ``model``'s, where
    ``averaging`` is ``(momentum, n)``, ``n`` the averages made before and ``w = min(momentum,
    n / (n + 1))``: the plain mean of the trained weights until the momentum is reached."""
    t_len = trials.obs.shape[0]
    feats = features.unsqueeze(0).expand(t_len, *features.shape)
    valid = trials.mask
    obs, act, nxt, f, r = (
        x[valid] for x in (trials.obs, trials.action, trials.next_obs, feats, raw_rewards)
    )
    out: dict[str, float] = {}
    read = model if average is None else average  # the model the posterior reads
    with torch.no_grad():
        mean, log_var = read.distribution(obs, act, nxt, f)
        rmse = ((mean - r) ** 2).mean().sqrt()
        if read.learned_noise:
            calibration = ((mean - r) ** 2 / log_var.exp()).mean().sqrt()
            read.sigma.copy_(calibration)
            out["privileged/reward_noise_calibration"] = float(calibration)
            out["privileged/reward_noise_width"] = float((0.5 * log_var).exp().mean())
        else:
            read.sigma.copy_(rmse)
    first = trials.obs[0]
    if observation_model is not None:
        with torch.no_grad():
            err = ((observation_model(features) - first) ** 2).mean(0)
            observation_model.log_var.copy_(err.clamp_min(1e-8).log())
        out["privileged/observation_model_error"] = float(err.mean())
    if dynamics_model is not None:
        change = nxt - obs  # its targets, for the error here and every minibatch below
        with torch.no_grad():
            err = ((dynamics_model(obs, act, f) - change) ** 2).mean(0)
            dynamics_model.log_var.copy_(err.clamp_min(1e-12).log())
        out["privileged/dynamics_model_error"] = float(err.mean())
    losses = []
    n = r.shape[0]
    for _ in range(updates):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=generator).to(r.device)
        loss = reward_model_loss(model, obs[idx], act[idx], nxt[idx], f[idx], r[idx])
        if dynamics_model is not None:
            predicted = dynamics_model(obs[idx], act[idx], f[idx])
            loss = loss + ((predicted - change[idx]) ** 2).mean()
        if observation_model is not None:
            loss = loss + observation_model_loss(observation_model, first, features)
        guard.step(loss)
        if guard.stopped:
            break
        losses.append(float(loss.detach()))
    if average is not None and not guard.stopped:
        momentum, n = averaging
        keep = min(momentum, n / (n + 1))
        with torch.no_grad():
            for avg, trained in zip(average.parameters(), model.parameters(), strict=True):
                avg.lerp_(trained, 1.0 - keep)
    return {
        **out,
        "privileged/reward_model_rmse": float(rmse),
        "losses/reward_model": float(sum(losses) / max(len(losses), 1)),
    }
