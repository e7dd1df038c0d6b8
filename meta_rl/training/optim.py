"""Guarded optimiser steps: a non-finite loss or gradient skips the step (counted), and
``train.max_consecutive_nonfinite`` skips in a row stop the run."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Counters", "GuardedOptimizer", "apply_update"]


def apply_update(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[nn.Parameter],
    max_grad_norm: float,
) -> bool:
    """One gradient step unless the loss or a gradient is non-finite; True if it was applied."""
    optimizer.zero_grad(set_to_none=True)
    if not bool(torch.isfinite(loss)):
        return False
    loss.backward()
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if not bool(torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


@dataclass
class Counters:
    """The run's progress, checkpointed with the training state (:mod:`meta_rl.training.state`)."""

    iteration: int = 0
    env_steps: int = 0
    best_score: float = -math.inf
    nonfinite_streak: int = 0
    skipped_updates: int = 0


@dataclass
class GuardedOptimizer:
    """``optimizer`` over ``params`` whose :meth:`step` skips non-finite updates and counts them in
    ``counters`` (shared by all the run's optimisers, so the streak spans PPO and ELBO steps)."""

    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    max_grad_norm: float
    counters: Counters
    max_consecutive_nonfinite: int

    def step(self, loss: torch.Tensor) -> bool:
        """Apply one clipped gradient step on ``loss``; False (and counted) if it was skipped."""
        applied = apply_update(self.optimizer, loss, self.params, self.max_grad_norm)
        c = self.counters
        if applied:
            c.nonfinite_streak = 0
        else:
            c.nonfinite_streak += 1
            c.skipped_updates += 1
        return applied

    @property
    def stopped(self) -> bool:
        """Too many non-finite updates in a row: the run must stop."""
        return self.counters.nonfinite_streak >= self.max_consecutive_nonfinite
