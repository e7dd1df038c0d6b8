"""The one place that writes and reads the training state of a run.

A checkpoint's payload (:mod:`meta_rl.checkpoint` stores it) holds ``meta`` (format
version, config hash, env id, spaces, progress; the width of the true task features
``task_dim`` when training read them; a student's ``teacher``: the checkpoint it started
from), the resolved ``config``, the action bounds, the
``networks`` and the ``trainer`` state: both optimisers, every generator state, the return
scaler and the counters. Restoring all of it makes a resumed run make exactly the updates the
uninterrupted run would have made (on the same device).

A distributed run's checkpoint (rank 0 writes it) also holds ``meta.world_size`` and every
rank's learner generator (``trainer.rank_learn_gens``); a one-process checkpoint has neither,
as before. Every rank restores from rank 0's reading of the file
(:func:`~meta_rl.training.distributed.broadcast_from_main`). Resuming with another number of
processes keeps the tasks, the start states and the exploration noise (streams all ranks share)
but not the learner's draws of the ranks (minibatches, ELBO samples): ranks other than 0 start
fresh streams of ``(seed, rank, iteration)``; ``train()`` says so and records it.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from meta_rl.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_compatible,
    load_checkpoint,
)
from meta_rl.config import to_dict
from meta_rl.training.distributed import broadcast_from_main
from meta_rl.training.optim import Counters

if TYPE_CHECKING:
    from meta_rl.training.trainer import Trainer

__all__ = ["restore_training_state", "training_payload"]


def training_payload(trainer: Trainer) -> dict[str, Any]:
    """Everything a checkpoint of ``trainer`` holds."""
    c = trainer.counters
    payload: dict[str, Any] = {
        "meta": {
            "format_version": FORMAT_VERSION,
            "config_hash": trainer.config_hash,
            "env_id": trainer.cfg.env.id,
            "obs_shape": list(trainer.obs_shape),
            "action_shape": list(trainer.action_shape),
            "iteration": c.iteration,
            "env_steps": c.env_steps,
            "created": time.time(),
        },
        "config": to_dict(trainer.cfg),
        "action_low": trainer.action_low.tolist(),
        "action_high": trainer.action_high.tolist(),
        "networks": {k: v.detach().cpu() for k, v in trainer.networks.state_dict().items()},
        "trainer": {
            "ppo_opt": trainer.ppo_opt.state_dict(),
            "elbo_opt": trainer.elbo_opt.state_dict(),
            "np_rng": trainer.np_rng.bit_generator.state,
            "act_gen": trainer.act_gen.get_state(),
            "learn_gen": trainer.learn_gen.get_state(),
            "scaler": trainer.scaler.state_dict(),
            "counters": {f.name: getattr(c, f.name) for f in fields(c)},
        },
    }
    if trainer.reward_opt is not None:
        payload["trainer"]["reward_opt"] = trainer.reward_opt.state_dict()
    if trainer.task_dim is not None:
        payload["meta"]["task_dim"] = trainer.task_dim
    if trainer.teacher_source is not None:
        payload["meta"]["teacher"] = dict(trainer.teacher_source)
    if trainer.expert is not None:
        payload["meta"]["expert"] = dict(trainer.expert.source)
    world = trainer.world
    if world.distributed:
        payload["meta"]["world_size"] = world.size
        payload["trainer"]["rank_learn_gens"] = list(trainer.rank_learn_gens)
    return payload


def restore_training_state(trainer: Trainer, path: Path) -> None:
    """Load checkpoint ``path`` into ``trainer``; a checkpoint of another config, env id or
    spaces, or one that does not fit, raises :class:`CheckpointError` that says which.

    Sets ``trainer.checkpoint_world_size`` (the processes of the run that wrote it)."""
    world = trainer.world
    payload = broadcast_from_main(world, lambda: load_checkpoint(path))
    check_compatible(
        payload,
        config_hash=trainer.config_hash,
        env_id=trainer.cfg.env.id,
        obs_shape=trainer.obs_shape,
        action_shape=trainer.action_shape,
        path=path,
        config=to_dict(trainer.cfg),
    )
    try:
        trainer.networks.load_state_dict(payload["networks"])
        tr = payload["trainer"]
        trainer.ppo_opt.load_state_dict(tr["ppo_opt"])
        trainer.elbo_opt.load_state_dict(tr["elbo_opt"])
        if trainer.reward_opt is not None:
            trainer.reward_opt.load_state_dict(tr["reward_opt"])
        trainer.np_rng.bit_generator.state = tr["np_rng"]
        trainer.act_gen.set_state(tr["act_gen"])
        saved_world = int(payload["meta"].get("world_size", 1))
        trainer.checkpoint_world_size = saved_world
        if saved_world == world.size and world.size > 1:
            trainer.learn_gen.set_state(tr["rank_learn_gens"][world.rank])
        elif world.rank == 0:
            trainer.learn_gen.set_state(tr["learn_gen"])
        else:
            seq = np.random.SeedSequence(
                [trainer.cfg.train.seed, 2, world.rank, int(payload["meta"]["iteration"])]
            )
            trainer.learn_gen.manual_seed(int(seq.generate_state(1)[0]))
        trainer.scaler.load_state_dict(tr["scaler"])
        trainer.teacher_source = payload["meta"].get("teacher")
        counters = Counters(**tr["counters"])
        for f in fields(counters):
            # In place: the optimisers' guards share this object.
            setattr(trainer.counters, f.name, getattr(counters, f.name))
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be restored: {e}") from e
