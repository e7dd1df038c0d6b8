"""The training state of a run, one object (:class:`TrainingState`), and the one place that
writes and reads it.

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
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    check_compatible,
    load_checkpoint,
)
from meta_rl.config import to_dict
from meta_rl.experiment import ExperimentConfig, config_hash
from meta_rl.training.distributed import World, broadcast_from_main, learn_seed
from meta_rl.training.optim import Counters
from meta_rl.training.ppo import ReturnScaler

__all__ = ["TrainingState"]

Moments = Callable[[np.ndarray], "tuple[float, float, int] | None"]


@dataclass(eq=False)
class TrainingState:
    """Everything a run carries from one iteration to the next, which is all its checkpoints
    hold: the networks, the optimisers (PPO's or imitation's, the ELBO's, the reward model's)
    and the parameters each steps, the return scaler, the counters and every generator, with
    what identifies the run (config, its hash, the spaces, the width of the true task features
    a training loss reads) and where a student's or imitator's policy came from.

    The trainer, resume (:meth:`restore`), a student's start from its teacher
    (:func:`~meta_rl.training.teacher.start_from_teacher`) and torchrun read and write the
    state here; :meth:`payload` is a checkpoint's content.
    """

    cfg: ExperimentConfig
    networks: AgentNetworks
    ppo_params: list[nn.Parameter]
    ppo_opt: torch.optim.Optimizer
    """The policy's optimiser: PPO's, or the imitation step's (``train.algorithm: dagger``)."""
    elbo_params: list[nn.Parameter]
    elbo_opt: torch.optim.Optimizer
    reward_params: list[nn.Parameter]
    reward_opt: torch.optim.Optimizer | None
    """The particle posterior's models' (``privileged.hypotheses: particles``), else None."""
    scaler: ReturnScaler
    counters: Counters
    np_rng: np.random.Generator
    """The task draws (the same stream on every rank)."""
    act_gen: torch.Generator
    """The exploration noise (the same stream on every rank, each taking its rows)."""
    learn_gen: torch.Generator
    """The learner's draws (minibatches, ELBO samples): the rank's own."""
    obs_shape: tuple[int, ...]
    action_shape: tuple[int, ...]
    action_low: np.ndarray
    action_high: np.ndarray
    task_dim: int | None
    """The width of the true task features, when a training loss reads them (never the agent)."""
    config_hash: str
    rank_learn_gens: list[torch.Tensor]
    """Every rank's learner generator state at the last check (saved by a distributed run)."""
    checkpoint_world_size: int | None = None
    """The processes of the run that wrote the checkpoint this run resumed from."""
    teacher_source: dict[str, object] | None = None
    """A student's teacher: the checkpoint it started from."""
    expert_source: dict[str, object] | None = None
    """What DAgger imitates (``train.algorithm: dagger``): the expert's checkpoint."""

    @classmethod
    def fresh(
        cls,
        cfg: ExperimentConfig,
        *,
        device: torch.device,
        rank: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_low: np.ndarray,
        action_high: np.ndarray,
        task_dim: int | None,
        return_moments: Moments | None,
    ) -> TrainingState:
        """The state of a run before its first iteration: networks initialised from
        ``train.seed``, fresh optimisers, the generators' streams for this ``rank``."""
        seed = cfg.train.seed
        obs_dim, act_dim = int(np.prod(obs_shape)), int(np.prod(action_shape))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            nets = AgentNetworks(obs_dim, act_dim, cfg, task_dim).to(device)
        np_rng = np.random.default_rng(seed)
        act_gen = torch.Generator().manual_seed(seed + 1)
        learn_gen = torch.Generator().manual_seed(learn_seed(seed, rank))
        ppo_params = list(nets.policy.parameters())
        if cfg.encoder.rl_gradients:
            ppo_params += list(nets.encoder.parameters())
        if nets.maml is not None:
            ppo_params += list(nets.maml.parameters())  # the step sizes (none when fixed)
        if nets.privileged_critic is not None:
            ppo_params += list(nets.privileged_critic.parameters())
        policy_lr = cfg.imitation.lr if cfg.train.algorithm == "dagger" else cfg.ppo.lr
        elbo_params = list(nets.encoder.parameters()) + list(nets.decoder.parameters())
        if nets.task_head is not None:
            elbo_params += list(nets.task_head.parameters())
        reward_params: list[nn.Parameter] = []
        reward_opt = None
        if nets.reward_model is not None:
            fitted = nets.fitted_reward_model
            assert fitted is not None
            reward_params = list(fitted.parameters())  # an average only follows
            if nets.observation_model is not None:
                reward_params += list(nets.observation_model.parameters())
            if nets.dynamics_model is not None:
                reward_params += list(nets.dynamics_model.parameters())
            reward_opt = torch.optim.Adam(reward_params, lr=cfg.privileged.reward_model_lr)
        return cls(
            cfg=cfg,
            networks=nets,
            ppo_params=ppo_params,
            ppo_opt=torch.optim.Adam(ppo_params, lr=policy_lr, eps=1e-5),
            elbo_params=elbo_params,
            elbo_opt=torch.optim.Adam(elbo_params, lr=cfg.task_model.lr),
            reward_params=reward_params,
            reward_opt=reward_opt,
            scaler=ReturnScaler(
                cfg.ppo.gamma, enabled=cfg.ppo.normalize_rewards, moments=return_moments
            ),
            counters=Counters(),
            np_rng=np_rng,
            act_gen=act_gen,
            learn_gen=learn_gen,
            obs_shape=obs_shape,
            action_shape=action_shape,
            action_low=action_low,
            action_high=action_high,
            task_dim=task_dim,
            config_hash=config_hash(cfg),
            rank_learn_gens=[learn_gen.get_state()],
        )

    def payload(self, world: World) -> dict[str, Any]:
        """Everything a checkpoint of this state holds (``world``: the processes that write
        it; a distributed run also saves every rank's learner generator)."""
        c = self.counters
        payload: dict[str, Any] = {
            "meta": {
                "format_version": FORMAT_VERSION,
                "config_hash": self.config_hash,
                "env_id": self.cfg.env.id,
                "obs_shape": list(self.obs_shape),
                "action_shape": list(self.action_shape),
                "iteration": c.iteration,
                "env_steps": c.env_steps,
                "created": time.time(),
            },
            "config": to_dict(self.cfg),
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "networks": {k: v.detach().cpu() for k, v in self.networks.state_dict().items()},
            "trainer": {
                "ppo_opt": self.ppo_opt.state_dict(),
                "elbo_opt": self.elbo_opt.state_dict(),
                "np_rng": self.np_rng.bit_generator.state,
                "act_gen": self.act_gen.get_state(),
                "learn_gen": self.learn_gen.get_state(),
                "scaler": self.scaler.state_dict(),
                "counters": {f.name: getattr(c, f.name) for f in fields(c)},
            },
        }
        if self.reward_opt is not None:
            payload["trainer"]["reward_opt"] = self.reward_opt.state_dict()
        if self.task_dim is not None:
            payload["meta"]["task_dim"] = self.task_dim
        if self.teacher_source is not None:
            payload["meta"]["teacher"] = dict(self.teacher_source)
        if self.expert_source is not None:
            payload["meta"]["expert"] = dict(self.expert_source)
        if world.distributed:
            payload["meta"]["world_size"] = world.size
            payload["trainer"]["rank_learn_gens"] = list(self.rank_learn_gens)
        return payload

    def restore(self, path: Path, world: World) -> None:
        """Load checkpoint ``path`` into this state (every rank from rank 0's reading); a
        checkpoint of another config, env id or spaces, or one that does not fit, raises
        :class:`CheckpointError` that says which. Sets ``checkpoint_world_size``."""
        payload = broadcast_from_main(world, lambda: load_checkpoint(path))
        check_compatible(
            payload,
            config_hash=self.config_hash,
            env_id=self.cfg.env.id,
            obs_shape=self.obs_shape,
            action_shape=self.action_shape,
            path=path,
            config=to_dict(self.cfg),
        )
        try:
            self.networks.load_state_dict(payload["networks"])
            tr = payload["trainer"]
            self.ppo_opt.load_state_dict(tr["ppo_opt"])
            self.elbo_opt.load_state_dict(tr["elbo_opt"])
            if self.reward_opt is not None:
                self.reward_opt.load_state_dict(tr["reward_opt"])
            self.np_rng.bit_generator.state = tr["np_rng"]
            self.act_gen.set_state(tr["act_gen"])
            saved_world = int(payload["meta"].get("world_size", 1))
            self.checkpoint_world_size = saved_world
            if saved_world == world.size and world.size > 1:
                self.learn_gen.set_state(tr["rank_learn_gens"][world.rank])
            elif world.rank == 0:
                self.learn_gen.set_state(tr["learn_gen"])
            else:
                seq = np.random.SeedSequence(
                    [self.cfg.train.seed, 2, world.rank, int(payload["meta"]["iteration"])]
                )
                self.learn_gen.manual_seed(int(seq.generate_state(1)[0]))
            self.scaler.load_state_dict(tr["scaler"])
            self.teacher_source = payload["meta"].get("teacher")
            counters = Counters(**tr["counters"])
            for f in fields(counters):
                # In place: the optimisers' guards share this object.
                setattr(self.counters, f.name, getattr(counters, f.name))
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {str(path)!r} cannot be restored: {e}") from e
