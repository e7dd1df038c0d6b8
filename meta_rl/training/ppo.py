"""PPO pieces: the clipped loss and reward scaling (GAE: :mod:`meta_rl.agent.advantages`).

The loss is a pure function of ``(params, batch)`` evaluated through
``torch.func.functional_call``, so the MAML inner loop can reuse it with adapted parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from meta_rl.agent.networks import gaussian_entropy, gaussian_log_prob
from meta_rl.agent.policy import PolicyOutput
from meta_rl.experiment import PPOConfig

__all__ = [
    "Moments",
    "PPOBatch",
    "PPOTerms",
    "ReturnScaler",
    "SumFn",
    "ppo_loss",
    "ppo_loss_from_output",
]


SumFn = Callable[[torch.Tensor], torch.Tensor]
"""The sum of a tensor over the processes of a distributed run
(:func:`meta_rl.training.distributed.all_reduce_sum`)."""

Moments = Callable[[np.ndarray], tuple[float, float, int] | None]
"""Mean, variance and count of a ``(n, 1)`` array over the processes of a distributed run; None
when any process's array holds a NaN or an inf."""


@dataclass(frozen=True)
class PPOBatch:
    """Flat samples for the PPO loss: rows are (step, sub-environment) pairs."""

    obs: torch.Tensor
    belief: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class PPOTerms:
    """PPO loss terms; ``total`` is differentiable, the rest are diagnostics."""

    total: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def ppo_loss(
    policy: nn.Module,
    params: Mapping[str, torch.Tensor] | None,
    batch: PPOBatch,
    cfg: PPOConfig,
    *,
    reduce: SumFn | None = None,
) -> PPOTerms:
    """The clipped PPO objective (to minimise) of ``policy`` with ``params`` on ``batch``.

    ``params`` None uses the module's own parameters. Masked-out rows do not count.
    ``reduce``: as in :func:`ppo_loss_from_output`.
    """
    if params is None:
        out = policy(batch.obs, batch.belief)
    else:
        out = torch.func.functional_call(policy, dict(params), (batch.obs, batch.belief))
    assert isinstance(out, PolicyOutput)
    return ppo_loss_from_output(out, batch, cfg, reduce=reduce)


def ppo_loss_from_output(
    out: PolicyOutput,
    batch: PPOBatch,
    cfg: PPOConfig,
    *,
    policy_mask: torch.Tensor | None = None,
    reduce: SumFn | None = None,
) -> PPOTerms:
    """The clipped PPO objective given the policy's output on ``batch`` (any common shape).

    ``batch.obs`` and ``batch.belief`` are not read: ``out`` was computed from them, e.g. by the
    MAML outer loop with different (adapted) parameters per task and episode. ``policy_mask``
    (shaped like ``batch.mask``; None: ``batch.mask``) restricts the policy and entropy terms
    (and the advantage standardisation) to some steps, e.g. the post-adaptation episodes; the
    value loss still covers every valid step.

    ``reduce`` (a distributed run: the sum over the ranks) standardises the advantages with the
    mean and std of the minibatch of every rank together, as one process holding them all would.
    """
    w_value = batch.mask.to(out.value.dtype)
    w = w_value if policy_mask is None else policy_mask.to(out.value.dtype) * w_value

    def mean(x: torch.Tensor, weights: torch.Tensor = w) -> torch.Tensor:
        return (x * weights).sum() / weights.sum().clamp_min(1.0)

    adv = batch.advantages
    if cfg.normalize_advantages and reduce is None:
        mu = mean(adv)
        std = (mean((adv - mu) ** 2) + 1e-8).sqrt()
        adv = (adv - mu) / std
    elif cfg.normalize_advantages:
        assert reduce is not None
        sums = reduce(torch.stack([(adv * w).sum(), w.sum()]))
        count = sums[1].clamp_min(1.0)
        mu = sums[0] / count
        std = (reduce(((adv - mu) ** 2 * w).sum()) / count + 1e-8).sqrt()
        adv = (adv - mu) / std
    log_prob = gaussian_log_prob(out.mean, out.log_std, batch.actions)
    log_ratio = log_prob - batch.old_log_probs
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * adv, ratio.clamp(1.0 - cfg.clip, 1.0 + cfg.clip) * adv)
    policy_loss = -mean(surrogate)
    value_loss = 0.5 * mean((out.value - batch.returns) ** 2, w_value)
    entropy = mean(gaussian_entropy(out.mean, out.log_std))
    total = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    with torch.no_grad():
        approx_kl = mean((ratio - 1.0) - log_ratio)
        clip_fraction = mean(((ratio - 1.0).abs() > cfg.clip).to(w.dtype))
    return PPOTerms(total, policy_loss, value_loss, entropy, approx_kl, clip_fraction)


class ReturnScaler:
    """Scales rewards by a running std of the discounted return (as SB3's VecNormalize).

    :meth:`scale` takes the rewards of whole trials ``(T, N)`` and the flags where trials
    restart, updates the statistics with the discounted returns, and divides by their std.
    ``moments`` (a distributed run) takes the batch's mean and variance over the returns of
    every rank, so all ranks hold the same statistics.
    """

    def __init__(self, gamma: float, enabled: bool = True, moments: Moments | None = None) -> None:
        self.gamma = gamma
        self.enabled = enabled
        self.moments = moments
        self.mean = 0.0
        self.var = 1.0
        self.count = 1e-4

    def scale(self, rewards: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return rewards
        ret = np.zeros(rewards.shape[1])
        returns = np.empty_like(rewards, dtype=np.float64)
        for t in range(rewards.shape[0]):
            ret = ret * self.gamma + rewards[t]
            returns[t] = ret
        stats = self._batch_moments(returns)
        if stats is None:
            return (rewards / np.sqrt(self.var + 1e-8)).astype(rewards.dtype)
        b_mean, b_var, b_count = stats
        delta = b_mean - self.mean
        total = self.count + b_count
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean += delta * b_count / total
        self.var = m2 / total
        self.count = total
        return (rewards / np.sqrt(self.var + 1e-8)).astype(rewards.dtype)

    def _batch_moments(self, returns: np.ndarray) -> tuple[float, float, int] | None:
        if self.moments is not None:
            return self.moments(returns.reshape(-1, 1))
        if not np.isfinite(returns).all():
            return None
        return float(returns.mean()), float(returns.var()), returns.size

    @property
    def reward_scale(self) -> float:
        """The factor :meth:`scale` multiplies rewards by (1 when disabled)."""
        return 1.0 / float(np.sqrt(self.var + 1e-8)) if self.enabled else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.count = float(state["count"])
