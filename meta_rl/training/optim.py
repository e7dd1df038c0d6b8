"""Guarded optimiser steps: a non-finite loss or gradient skips the step (counted), and
``train.max_consecutive_nonfinite`` skips in a row stop the run.

With several processes (:mod:`meta_rl.training.distributed`) the gradients are averaged over the
ranks before the clip and the step, and a non-finite loss on any rank skips the step on all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from meta_rl.training.distributed import World, average_gradients

__all__ = ["Counters", "GuardedOptimizer", "apply_update"]


def apply_update(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[nn.Parameter],
    max_grad_norm: float,
    world: World | None = None,
) -> bool:
    """One gradient step unless the loss or a gradient is non-finite; True if it was applied.

    With a distributed ``world`` the gradients are averaged over its ranks first (every rank
    calls this for the same step) and the step is skipped on all ranks if any is non-finite.
    """
    optimizer.zero_grad(set_to_none=True)
    params = list(params)
    finite = bool(torch.isfinite(loss))
    if world is not None and world.distributed:
        if finite:
            loss.backward()
        if not average_gradients(world, params, finite):
            optimizer.zero_grad(set_to_none=True)
            return False
    elif not finite:
        return False
    else:
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
    ``counters`` (shared by all the run's optimisers, so the streak spans PPO and ELBO steps);
    with a distributed ``world`` its gradients are averaged over the ranks."""

    optimizer: torch.optim.Optimizer
    params: list[nn.Parameter]
    max_grad_norm: float
    counters: Counters
    max_consecutive_nonfinite: int
    world: World = field(default_factory=World)

    def step(self, loss: torch.Tensor) -> bool:
        """Apply one clipped gradient step on ``loss``; False (and counted) if it was skipped."""
        applied = apply_update(self.optimizer, loss, self.params, self.max_grad_norm, self.world)
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
