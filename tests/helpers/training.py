"""One training iteration, observed from outside the trainer."""

from __future__ import annotations

import torch

from meta_rl.experiment import ExperimentConfig
from meta_rl.training.trainer import Trainer


def one_iteration(cfg: ExperimentConfig) -> tuple[dict[str, float], set[str]]:
    """One training iteration of a fresh trainer: its metrics and the names of the networks'
    entries it changed."""
    trainer = Trainer(cfg, None)
    try:
        nets = trainer.networks
        before = {k: v.clone() for k, v in nets.state_dict().items()}
        metrics = trainer.iteration()
        after = nets.state_dict()
    finally:
        trainer.close()
    return metrics, {k for k in before if not torch.equal(before[k], after[k])}
