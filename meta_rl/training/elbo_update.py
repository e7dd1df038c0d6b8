"""The ELBO update (step 5 of the trainer): the context encoder and the task decoder learn to
predict the trial's rewards (and next states) from the belief."""

from __future__ import annotations

import numpy as np
import torch

from meta_rl.agent.meta_agent import AgentNetworks
from meta_rl.agent.task_model import TrialTensors, elbo_loss
from meta_rl.experiment import TaskModelConfig
from meta_rl.training.optim import GuardedOptimizer

__all__ = ["elbo_update"]


def elbo_update(
    cfg: TaskModelConfig,
    networks: AgentNetworks,
    trials: TrialTensors,
    *,
    guard: GuardedOptimizer,
    generator: torch.Generator,
) -> dict[str, float]:
    """``task_model.updates_per_iteration`` ELBO steps on ``trials``; the mean of each term as
    ``losses/elbo_<term>``. ``generator`` draws the ELBO's samples."""
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.updates_per_iteration):
        terms = elbo_loss(networks.encoder, networks.decoder, trials, cfg, generator)
        guard.step(terms.total)
        if guard.stopped:
            break
        for key in ("total", "reward_loss", "state_loss", "kl"):
            stats.setdefault(key, []).append(float(getattr(terms, key).detach()))
    return {f"losses/elbo_{k}": float(np.mean(v)) for k, v in stats.items()}
