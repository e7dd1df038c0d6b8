"""The ELBO update (step 5 of the trainer): the context encoder and the task decoder learn to
predict the trial's rewards (and next states) from the belief."""

from __future__ import annotations

import numpy as np
import torch

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.task_model import TrialTensors, elbo_loss
from meta_rl.experiment import TaskModelConfig
from meta_rl.training.optim import GuardedOptimizer
from meta_rl.training.privileged import task_inference_loss

__all__ = ["elbo_update"]


def elbo_update(
    cfg: TaskModelConfig,
    networks: AgentNetworks,
    trials: TrialTensors,
    *,
    guard: GuardedOptimizer,
    generator: torch.Generator,
    task_features: torch.Tensor | None = None,
    task_inference_weight: float = 0.0,
) -> dict[str, float]:
    """``task_model.updates_per_iteration`` ELBO steps on ``trials``; the mean of each term as
    ``losses/elbo_<term>``. ``generator`` draws the ELBO's samples.

    With ``networks.task_head`` and ``task_features`` ``(N, F)`` each step also minimises
    ``task_inference_weight`` times the task-inference loss
    (:func:`~meta_rl.training.privileged.task_inference_loss`, logged as
    ``losses/task_inference``), which trains the encoder and the head.
    """
    stats: dict[str, list[float]] = {}
    head = networks.task_head
    encoder = networks.encoder
    for _ in range(cfg.updates_per_iteration):
        # One pass of the encoder per step, whose beliefs both losses read.
        beliefs, _ = trials.encode(encoder)
        terms = elbo_loss(encoder, networks.decoder, trials, cfg, generator, beliefs)
        total = terms.total
        inference: torch.Tensor | None = None
        if head is not None and task_features is not None and task_inference_weight > 0.0:
            inference = task_inference_loss(encoder, head, trials, task_features, beliefs)
            total = total + task_inference_weight * inference
        guard.step(total)
        if guard.stopped:
            break
        for key in ("total", "reward_loss", "state_loss", "kl"):
            stats.setdefault(f"elbo_{key}", []).append(float(getattr(terms, key).detach()))
        if inference is not None:
            stats.setdefault("task_inference", []).append(float(inference.detach()))
    return {f"losses/{k}": float(np.mean(v)) for k, v in stats.items()}
