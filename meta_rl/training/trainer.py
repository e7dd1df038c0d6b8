"""Meta-training: PPO on a belief-conditioned policy plus the ELBO of the task model.

Each iteration (:meth:`Trainer.iteration`) reads top to bottom:

1. sample ``tasks_per_batch`` tasks from the train split, one per sub-environment;
2. collect one trial (K episodes) per task with the :class:`~meta_rl.agent.meta_agent.MetaAgent`
   (:func:`meta_rl.training.rollout.collect_trials`, on the one trial loop
   :func:`meta_rl.trial.run_trial`);
3. scale rewards, compute GAE over whole trials (episode boundaries inside a trial are not
   terminal: the agent maximises the return of the trial, so exploring early pays off later);
4. PPO epochs over minibatches (:mod:`meta_rl.training.ppo_update`; the encoder gets RL
   gradients only if ``encoder.rl_gradients``); with ``maml.enabled`` the MAML outer loop
   instead (:mod:`meta_rl.training.maml_update`); none in a student's first
   ``privileged.teacher_freeze_iterations`` (:mod:`meta_rl.training.teacher`);
5. ELBO steps on the encoder and the task decoder (:mod:`meta_rl.training.elbo_update`);
6. update the observation normaliser (not while a student's policy is frozen); log; every
   ``eval_every`` iterations evaluate on held-out (test split) tasks; checkpoint at iteration
   boundaries
   (:mod:`meta_rl.training.state` writes and reads the training state).

All randomness comes from generators seeded by ``train.seed`` whose states are checkpointed,
and each trial's first reset is seeded from them, so ``train(cfg, resume=run_dir)`` makes
exactly the updates the uninterrupted run would have made (on the same device).
A non-finite loss or gradient skips that update (logged as ``losses/skipped_updates``;
:mod:`meta_rl.training.optim`); ``train.max_consecutive_nonfinite`` consecutive skips stop the
run, keeping the last good checkpoint.

Under ``torchrun`` the same loop runs data-parallel (:mod:`meta_rl.training.distributed`,
docs/distributed.md): each rank collects its share of the meta-batch, gradients and running
statistics are reduced over the ranks, and rank 0 alone logs, evaluates and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meta_rl.agent.advantages import compute_gae
from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.agent.privileged import inference_targets
from meta_rl.agent.task_model import TrialTensors, final_belief_error
from meta_rl.checkpoint import (
    CheckpointManager,
    locate,
)
from meta_rl.config import to_dict
from meta_rl.errors import JobStopped
from meta_rl.experiment import ExperimentConfig, resolve_device
from meta_rl.logging import RunLogger
from meta_rl.runs import (
    check_fresh_run_dir,
    create_run_dir,
    prepare_run_dir,
    record_resume,
    remove_orphaned_temp_files,
    save_config,
    write_atomic,
)
from meta_rl.task_envs.family import make_env, register_family, resolve_episode_steps
from meta_rl.task_envs.vector import (
    TaskVectorEnvLike,
    make_task_vector_env,
    repeat_per_rollout,
)
from meta_rl.training.distributed import (
    World,
    any_rank,
    broadcast_from_main,
    broadcast_module,
    check_in_sync,
    close_world,
    finish,
    global_moments,
    init_world,
    reduce_metrics,
    stop_on_sigterm,
)
from meta_rl.training.elbo_update import elbo_update
from meta_rl.training.imitation import RevealedPolicy, imitation_update
from meta_rl.training.maml_update import maml_loss, maml_update
from meta_rl.training.optim import Counters, GuardedOptimizer
from meta_rl.training.ppo import PPOTerms
from meta_rl.training.ppo_update import ppo_update
from meta_rl.training.privileged import (
    InferenceErrors,
    privileged_values,
    reward_model_update,
    task_features,
    task_inference_errors,
)
from meta_rl.training.rollout import TrialBatch, collect_trials
from meta_rl.training.state import TrainingState
from meta_rl.training.teacher import start_from_teacher

__all__ = ["Trainer", "train"]


class Trainer:
    """Runs the iterations of one run: its envs, its acting agent, the guarded optimiser steps
    and the updates, over its :class:`~meta_rl.training.state.TrainingState` (``state``: the
    networks, optimisers, generators and counters, all a checkpoint holds)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        run_dir: Path | None,
        resume_from: Path | None = None,
        world: World | None = None,
    ) -> None:
        """Build everything of a run and restore ``resume_from``; nothing is written to disk
        until :meth:`attach` gives the run directory (``run_dir`` here attaches at once).
        ``world``: the processes of a distributed run (default: this one alone)."""
        self.cfg = cfg
        self.world = world = World() if world is None else world
        if cfg.train.torch_threads is not None:
            torch.set_num_threads(cfg.train.torch_threads)
        self.device = resolve_device(cfg.train.device)
        if world.distributed and self.device.type == "cuda":
            self.device = world.device  # this rank's GPU
        env = cfg.env
        # This rank's sub-environments of the meta-batch (all of them for one process).
        self.shard = world.shard(
            env.tasks_per_batch, "env.tasks_per_batch", cfg.maml.rollouts_per_task
        )
        # The family's module is imported here (env.module or module:id); later calls use the
        # bare registered id. cfg.env.id itself is what the checkpoints record.
        env_id = register_family(env.id, env.module)
        self.episode_steps = resolve_episode_steps(env_id, env.episode_steps, "env.episode_steps")
        bptt = cfg.encoder.rl_bptt_steps
        trial_steps = env.episodes_per_trial * self.episode_steps
        if bptt is not None and trial_steps % bptt:
            raise ValueError(
                f"encoder.rl_bptt_steps: got {bptt}; allowed: null or a divisor of the trial "
                f"length {trial_steps} (env.episodes_per_trial {env.episodes_per_trial} x "
                f"{self.episode_steps} steps per episode), e.g. {self.episode_steps}"
            )
        # Evaluation makes the family with split="test": a family it cannot make fails here,
        # before the run starts, not after it.
        make_env(env_id, **{**env.kwargs, "split": "test"}).close()
        seed = cfg.train.seed
        self.venv: TaskVectorEnvLike = make_task_vector_env(
            env_id,
            self.shard.stop - self.shard.start,
            num_threads=env.num_threads,
            batched=env.batched,
            **env.kwargs,
        )
        try:
            self.eval_venv: TaskVectorEnvLike = make_task_vector_env(
                env_id,
                env.eval_tasks,
                num_threads=env.num_threads,
                batched=env.batched,
                **env.kwargs,
            )
        except BaseException:
            self.venv.close()
            raise
        obs_space, act_space = self.venv.single_observation_space, self.venv.single_action_space
        assert obs_space.shape is not None and act_space.shape is not None
        obs_shape = tuple(int(s) for s in obs_space.shape)
        action_shape = tuple(int(s) for s in act_space.shape)
        obs_dim, act_dim = int(np.prod(obs_shape)), int(np.prod(action_shape))

        # Held-out tasks are fixed for the run and drawn from their own seed stream.
        self.eval_tasks = repeat_per_rollout(
            self.eval_venv.task_distribution.sample(
                env.eval_tasks // cfg.maml.rollouts_per_task,
                "test",
                np.random.default_rng([seed, 7919]),
            ),
            cfg.maml.rollouts_per_task,
        )
        # The width of the true task features, when a training loss reads them (never the agent).
        reads_features = cfg.privileged.enabled or cfg.train.algorithm == "dagger"
        task_dim = int(task_features(self.eval_tasks[:1]).shape[1]) if reads_features else None
        self.state = TrainingState.fresh(
            cfg,
            device=self.device,
            rank=world.rank,
            obs_shape=obs_shape,
            action_shape=action_shape,
            action_low=np.asarray(act_space.low, dtype=np.float32),  # type: ignore[attr-defined]
            action_high=np.asarray(act_space.high, dtype=np.float32),  # type: ignore[attr-defined]
            task_dim=task_dim,
            return_moments=self._return_moments if world.distributed else None,
        )
        state = self.state
        self.eval_seed = int(np.random.default_rng([seed, 104729]).integers(2**31 - 1))
        self.agent = MetaAgent(
            state.networks,
            cfg,
            action_low=state.action_low,
            action_high=state.action_high,
            device=self.device,
            generator=state.act_gen,
            noise_rows=(self.shard.start, env.tasks_per_batch) if world.distributed else None,
            refine_every=0,  # privileged.refine_every is how the trained agent acts, not training
        )
        self._inference_errors: InferenceErrors | None = None  # of the last collected batch
        limit = cfg.train.max_consecutive_nonfinite

        def guard(
            opt: torch.optim.Optimizer, params: list[nn.Parameter], norm: float
        ) -> GuardedOptimizer:
            return GuardedOptimizer(opt, params, norm, state.counters, limit, world)

        self.ppo_guard = guard(state.ppo_opt, state.ppo_params, cfg.ppo.max_grad_norm)
        self.elbo_guard = guard(state.elbo_opt, state.elbo_params, cfg.task_model.max_grad_norm)
        self.reward_guard: GuardedOptimizer | None = None
        if state.reward_opt is not None:
            self.reward_guard = guard(
                state.reward_opt, state.reward_params, cfg.task_model.max_grad_norm
            )
        self.run_dir: Path | None = None
        self._checkpoints: CheckpointManager | None = None
        self.expert: RevealedPolicy | None = None
        """What DAgger imitates (``train.algorithm: dagger``); read again on resume."""
        expert = cfg.expert if cfg.train.algorithm == "dagger" else None
        if expert is not None:
            assert task_dim is not None
            key = "imitation.expert" if cfg.imitation.expert else "privileged.teacher"
            self.expert = broadcast_from_main(
                world,
                lambda: RevealedPolicy.load(
                    expert,
                    env_id=cfg.env.id,
                    obs_dim=obs_dim,
                    task_dim=task_dim or 0,
                    action_dim=act_dim,
                    device=self.device,
                    key=key,
                ),
            )
            state.expert_source = self.expert.source
        if resume_from is not None:
            state.restore(resume_from, world)
        elif cfg.privileged.teacher is not None:
            state.teacher_source = start_from_teacher(state, world)
            if self.networks.reward_model is not None:
                # The particles: the prior over the task, from the family's own train split.
                bank = self.venv.task_distribution.sample(
                    cfg.privileged.particles, "train", np.random.default_rng([seed, 4242])
                )
                self.networks.particle_bank.copy_(task_features(bank, self.device))
        broadcast_module(world, self.networks)  # the same start on every rank, whatever it ran on
        if run_dir is not None:
            self.attach(run_dir)

    def attach(self, run_dir: Path) -> None:
        """Write this run's checkpoints into ``run_dir/checkpoints``."""
        self.run_dir = run_dir
        self._checkpoints = CheckpointManager(
            run_dir / "checkpoints", self.cfg.train.keep_checkpoints
        )

    @property
    def networks(self) -> AgentNetworks:
        """The run's networks (``state.networks``)."""
        return self.state.networks

    @property
    def counters(self) -> Counters:
        """The run's counters (``state.counters``)."""
        return self.state.counters

    @property
    def checkpoints(self) -> CheckpointManager:
        if self._checkpoints is None:
            raise RuntimeError("Trainer.attach(run_dir) must come before checkpoints are saved")
        return self._checkpoints

    # ------------------------------------------------------------------ checkpoints

    def save(self, is_best: bool, logger: RunLogger | None = None) -> Path:
        path = self.checkpoints.save(
            self.counters.iteration, self.state.payload(self.world), is_best=is_best
        )
        if logger is not None:
            logger.log_checkpoint(path, ["latest", "best"] if is_best else ["latest"])
        return path

    # ------------------------------------------------------------------ one iteration

    @property
    def policy_frozen(self) -> bool:
        """A student's adaptation stage (``privileged.teacher_freeze_iterations``): the next
        iteration leaves the teacher's policy and observation normaliser as they are."""
        return self.counters.iteration < self.cfg.privileged.teacher_freeze_iterations

    @property
    def stopped(self) -> bool:
        """Too many non-finite updates in a row: the run stops."""
        return self.ppo_guard.stopped

    def advantages(self, batch: TrialBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over whole trials on scaled rewards: ``(advantages, returns)``, each ``(T, N)``."""
        cfg = self.cfg
        raw = batch.rewards
        if batch.info_gain is not None:  # the RL reward only: never the task model's targets
            raw = raw + cfg.privileged.info_gain_weight * batch.info_gain
        rewards = torch.as_tensor(self.state.scaler.scale(raw.cpu().numpy()), device=self.device)
        terminals = torch.zeros_like(batch.dones, dtype=torch.bool)
        terminals[-1] = True  # the trial ends; boundaries between its episodes are not terminal
        values = batch.values
        critic = self.networks.privileged_critic
        if critic is not None:
            assert batch.task_features is not None
            with torch.no_grad():
                values = privileged_values(
                    critic, self.networks.normalize(batch.obs), batch.beliefs, batch.task_features
                )
        return compute_gae(
            rewards,
            values,
            terminals,
            torch.zeros_like(values[0]),
            cfg.ppo.gamma,
            cfg.ppo.gae_lambda,
        )

    def _recompute_trials(self, batch: TrialBatch) -> TrialTensors | None:
        """The trials to recompute beliefs from when the encoder learns from PPO, else None."""
        enc = self.cfg.encoder
        return batch.trial_tensors(self.agent) if enc.rl_gradients and enc.use_context else None

    def ppo_update(self, batch: TrialBatch) -> dict[str, float]:
        """Step 4 without MAML (:func:`meta_rl.training.ppo_update.ppo_update`)."""
        adv, ret = self.advantages(batch)
        return ppo_update(
            self.cfg,
            self.networks,
            batch,
            adv,
            ret,
            trials=self._recompute_trials(batch),
            guard=self.ppo_guard,
            generator=self.state.learn_gen,
        )

    def maml_update(self, batch: TrialBatch) -> dict[str, float]:
        """Step 4 with MAML (:func:`meta_rl.training.maml_update.maml_update`)."""
        adv, ret = self.advantages(batch)
        return maml_update(
            self.agent,
            batch,
            adv,
            ret,
            trials=self._recompute_trials(batch),
            guard=self.ppo_guard,
            generator=self.state.learn_gen,
            reward_scale=self.state.scaler.reward_scale,
        )

    def maml_loss(
        self,
        batch: TrialBatch,
        adv: torch.Tensor,
        ret: torch.Tensor,
        idx: torch.Tensor,
        trials: TrialTensors | None = None,
    ) -> PPOTerms:
        """The outer loss of tasks ``idx`` (:func:`meta_rl.training.maml_update.maml_loss`)."""
        return maml_loss(self.agent, batch, adv, ret, idx, trials)

    def imitation_update(self, batch: TrialBatch) -> dict[str, float]:
        """Step 4 with ``train.algorithm: dagger``: the expert labels the visited states and
        the policy regresses them (:func:`meta_rl.training.imitation.imitation_update`)."""
        assert self.expert is not None and batch.task_features is not None
        labels = self.expert.actions(batch.obs, batch.task_features)
        return imitation_update(
            self.cfg,
            self.networks,
            batch,
            labels,
            trials=self._recompute_trials(batch),
            guard=self.ppo_guard,
            generator=self.state.learn_gen,
        )

    def elbo_update(self, batch: TrialBatch) -> dict[str, float]:
        """Step 5 (:func:`meta_rl.training.elbo_update.elbo_update`)."""
        return elbo_update(
            self.cfg.task_model,
            self.networks,
            batch.trial_tensors(self.agent),
            guard=self.elbo_guard,
            generator=self.state.learn_gen,
            task_features=None
            if batch.task_features is None
            else inference_targets(self.cfg.privileged, batch.task_features),
            task_inference_weight=self.cfg.privileged.task_inference_weight,
        )

    def reward_model_update(self, batch: TrialBatch) -> dict[str, float]:
        """The particle posterior's reward model learns from the batch (before the
        normalisers move, as the agent read the batch)."""
        model, head = self.networks.reward_model, self.networks.task_head
        assert model is not None and head is not None and self.reward_guard is not None
        assert batch.task_features is not None
        priv = self.cfg.privileged
        fitted = self.networks.fitted_reward_model
        assert fitted is not None
        return reward_model_update(
            fitted,
            batch.trial_tensors(self.agent),
            batch.rewards,
            head.targets(batch.task_features),
            updates=priv.reward_model_updates,
            batch_size=priv.reward_model_batch,
            guard=self.reward_guard,
            generator=self.state.learn_gen,
            observation_model=self.networks.observation_model,
            dynamics_model=self.networks.dynamics_model,
            average=None if fitted is model else model,
            averaging=(priv.reward_model_averaging, self.counters.iteration),
        )

    def evaluate(self) -> dict[str, float]:
        """Deterministic trials on the run's fixed held-out tasks: adaptation and model error."""
        batch = collect_trials(
            self.eval_venv,
            self._eval_agent(),
            self.eval_tasks,
            episodes=self.cfg.env.episodes_per_trial,
            episode_steps=self.episode_steps,
            seed=self.eval_seed,
            deterministic=True,
        )
        out: dict[str, float] = {}
        for k in range(batch.episode_returns.shape[0]):
            out[f"adapt/return_ep{k + 1}"] = float(batch.episode_returns[k].mean())
            out[f"adapt/success_ep{k + 1}"] = float(batch.episode_success[k].mean())
        out["adapt/return"] = float(batch.episode_returns.mean())
        out["adapt/success"] = float(batch.episode_success.mean())
        errors = final_belief_error(
            self.networks.encoder, self.networks.decoder, batch.trial_tensors(self.agent)
        )
        out.update({f"adapt/task_model_{k}": v for k, v in errors.items()})
        return out

    def _eval_agent(self) -> MetaAgent:
        return MetaAgent(
            self.networks,
            self.cfg,
            action_low=self.state.action_low,
            action_high=self.state.action_high,
            device=self.device,
            generator=torch.Generator().manual_seed(self.eval_seed),
            refine_every=0,  # as collection acts (privileged.refine_every: the trained agent's)
        )

    def collect(self) -> TrialBatch:
        """Steps 1-2: one trial per freshly sampled train task (the agent adapts if MAML)."""
        cfg = self.cfg
        m = cfg.maml.rollouts_per_task
        tasks = repeat_per_rollout(
            self.venv.task_distribution.sample(
                cfg.env.tasks_per_batch // m, "train", self.state.np_rng
            ),
            m,
        )[self.shard]
        # Sub-environment i of the meta-batch starts from seed + i, on whichever rank it runs.
        seed = int(self.state.np_rng.integers(2**31 - 1)) + self.shard.start
        self.networks.eval()
        batch = collect_trials(
            self.venv,
            self.agent,
            tasks,
            episodes=cfg.env.episodes_per_trial,
            episode_steps=self.episode_steps,
            seed=seed,
        )
        if self.state.task_dim is not None:
            # After the rollout, for the training losses only: the agent acted without them.
            features = task_features(tasks, self.device)
            batch = dataclasses.replace(batch, task_features=features)
            head = self.networks.task_head
            if head is not None and cfg.privileged.task_inference_weight > 0.0:
                errors = task_inference_errors(
                    self.networks.encoder,
                    head,
                    batch.trial_tensors(self.agent),
                    inference_targets(cfg.privileged, features),
                )
                self._inference_errors = errors
                if cfg.privileged.info_gain_weight > 0.0:
                    batch = dataclasses.replace(batch, info_gain=errors.gain(batch.mask))
        return batch

    def iteration(self) -> dict[str, float]:
        """One meta-training iteration (steps 1-6 of the module docstring) and its metrics."""
        cfg = self.cfg
        t0 = time.perf_counter()
        batch = self.collect()
        t1 = time.perf_counter()
        self.networks.train()
        frozen = self.policy_frozen
        if frozen:
            # RMA's adaptation stage: only the ELBO step (with the task-inference loss) learns.
            metrics: dict[str, float] = {}
        elif self.networks.maml is not None:
            metrics = self.maml_update(batch)
        elif cfg.train.algorithm == "dagger":
            metrics = self.imitation_update(batch)
        else:
            metrics = self.ppo_update(batch)
        if not self.stopped:
            metrics.update(self.elbo_update(batch))
        if not self.stopped and self.networks.reward_model is not None:
            metrics.update(self.reward_model_update(batch))
        moments = self._moments if self.world.distributed else None
        if not frozen:  # the normaliser is part of the frozen policy's function
            self.networks.policy.obs_norm.update(batch.obs[batch.mask], moments)
        self.networks.reward_norm.update(batch.rewards[batch.mask].unsqueeze(-1), moments)
        t2 = time.perf_counter()
        self.counters.iteration += 1
        self.counters.env_steps += batch.env_steps * self.world.size  # equal shares
        n_updates = metrics.get("losses/updates", 0.0) + cfg.task_model.updates_per_iteration
        for k in range(batch.episode_returns.shape[0]):
            metrics[f"train/return_ep{k + 1}"] = float(batch.episode_returns[k].mean())
            metrics[f"train/success_ep{k + 1}"] = float(batch.episode_success[k].mean())
        metrics["train/return"] = float(batch.episode_returns.mean())
        metrics["train/success"] = float(batch.episode_success.mean())
        if self._inference_errors is not None:
            metrics.update(self._inference_metrics(self._inference_errors, batch))
        if cfg.privileged.teacher is not None:
            metrics["teacher/policy_frozen"] = float(frozen)
        metrics["losses/skipped_updates"] = float(self.counters.skipped_updates)
        metrics["time/env_steps_per_s"] = batch.env_steps / max(t1 - t0, 1e-9)
        metrics["time/updates_per_s"] = n_updates / max(t2 - t1, 1e-9)
        metrics["time/iteration_s"] = t2 - t0
        if self.world.distributed:
            metrics = reduce_metrics(
                self.world,
                metrics,
                sums=("time/env_steps_per_s",),
                maxima=("time/iteration_s",),
            )
        self.state.rank_learn_gens = check_in_sync(
            self.world, self.networks, self.counters.iteration, self.state.learn_gen.get_state()
        )
        return metrics

    def _inference_metrics(self, errors: InferenceErrors, batch: TrialBatch) -> dict[str, float]:
        """What the belief knows of the true task over a trial: the task-inference error at the
        prior and after each episode (``privileged/task_error_*``, standardised features), and
        the mean information gain per trial (``privileged/info_gain``, unweighted)."""
        steps = self.episode_steps
        out = {"privileged/task_error_prior": float(errors.before[0].mean())}
        for k in range(batch.episode_returns.shape[0]):
            end = (k + 1) * steps - 1  # the last step of episode k + 1
            out[f"privileged/task_error_ep{k + 1}"] = float(errors.after[end].mean())
        out["privileged/info_gain"] = float(errors.gain(batch.mask).sum(0).mean())
        return out

    def _moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """The batch moments over every rank (the normalisers of a distributed run)."""
        return global_moments(self.world, x)

    def _return_moments(self, x: np.ndarray) -> tuple[float, float, int] | None:
        """The return scaler's batch moments over every rank."""
        stats = global_moments(self.world, torch.from_numpy(x))
        if stats is None:
            return None
        mean, var, count = stats
        return float(mean[0]), float(var[0]), count

    def close(self) -> None:
        self.venv.close()
        self.eval_venv.close()


def _drop_metrics_after(run_dir: Path, iteration: int) -> None:
    """Forget metrics logged after the checkpoint a run resumes from (they will be redone)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip() and json.loads(ln)["iteration"] <= iteration]
    if len(kept) != len(lines):
        write_atomic(path, "".join(kept).encode())


def _world_size_note(saved: int | None, size: int) -> dict[str, object]:
    """What a resume records about the number of processes (nothing when both are one)."""
    saved = 1 if saved is None else saved
    if saved == 1 and size == 1:
        return {}
    note: dict[str, object] = {"world_size": [saved, size]}
    if saved != size:
        note["warning"] = (
            f"resumed a checkpoint of {saved} processes with {size}: the tasks, start states "
            "and exploration noise continue as before (streams every rank shares), but the "
            "meta-batch is split into other shares and the ranks' learner draws (minibatches, "
            "ELBO samples) change, so the run is no longer the one the checkpoint's "
            f"{saved} processes would have made"
        )
    return note


def train(
    cfg: ExperimentConfig, *, run_dir: Path | None = None, resume: Path | None = None
) -> Path:
    """Meta-train with ``cfg``; returns the run directory.

    ``resume`` (a run dir, or one of its checkpoint files) continues that run from its last
    checkpoint; ``cfg`` must then be the run's own config (its hash is checked; a changed budget
    is recorded in ``config.yaml`` and ``resumes.jsonl``). Otherwise a fresh run dir is created
    under ``cfg.runs_dir``, or ``run_dir`` is used if it is empty or missing (one that holds
    files is refused). Nothing is written before the config, the env and the checkpoint to
    resume are validated.

    Under ``torchrun`` every rank calls this (docs/distributed.md): rank 0 alone reads the
    checkpoint, writes the run directory, logs, evaluates and checkpoints; every rank returns
    the run directory.
    """
    world = init_world(resolve_device(cfg.train.device))
    try:
        with stop_on_sigterm(world):
            out = _train(cfg, world, run_dir=run_dir, resume=resume)
            finish(world)
        return out
    finally:
        close_world(world)


def _stopped(world: World, trainer: Trainer, run_dir: Path, cause: JobStopped) -> JobStopped:
    """What a rank of a stopped distributed job says: why, and what is kept."""
    why = f"{cause}; stopped after iteration {trainer.counters.iteration}"
    if not world.is_main:
        return JobStopped(f"{why}; rank 0 keeps the run's checkpoints in {run_dir}")
    latest = trainer.checkpoints.latest()
    kept = f"the last checkpoint {latest} is kept" if latest else "no checkpoint was written yet"
    return JobStopped(
        f"{why}; {kept}; continue with `torchrun ... -m meta_rl train --resume {run_dir}`"
    )


def _train(
    cfg: ExperimentConfig, world: World, *, run_dir: Path | None, resume: Path | None
) -> Path:
    ckpt: Path | None = None
    if resume is not None:
        found = broadcast_from_main(world, lambda: locate(resume, prefer="latest"))
        run_dir, ckpt = found.run_dir, found.file
    elif run_dir is not None:
        fresh = run_dir
        broadcast_from_main(world, lambda: check_fresh_run_dir(fresh))
    trainer = Trainer(cfg, None, ckpt, world)
    c = trainer.counters

    def open_run_dir() -> Path:
        """Rank 0: the resume's bookkeeping, or the fresh run directory and its config."""
        if ckpt is not None:
            assert run_dir is not None
            # A kill during a save leaves a temporary file behind: clear it up.
            remove_orphaned_temp_files(run_dir / "checkpoints")
            remove_orphaned_temp_files(run_dir)
            note = _world_size_note(trainer.state.checkpoint_world_size, world.size)
            if "warning" in note:
                print(f"metarl train: warning: {note['warning']}", file=sys.stderr)
            record_resume(run_dir, cfg, c.iteration, extra=note)
            _drop_metrics_after(run_dir, c.iteration)
            return run_dir
        made = (
            create_run_dir(cfg.runs_dir, cfg.experiment, cfg.train.seed)
            if run_dir is None
            else prepare_run_dir(run_dir)
        )
        save_config(made, cfg)
        return made

    try:
        run_dir = broadcast_from_main(world, open_run_dir)
        if world.is_main:
            trainer.attach(run_dir)
    except BaseException:
        trainer.close()
        raise
    # Rank 0 alone logs, evaluates and writes checkpoints (the only rank with a logger).
    logger = (
        RunLogger(
            run_dir,
            cfg.logging,
            run_name=run_dir.name,
            resolved_config=to_dict(cfg),
            total_iterations=cfg.train.iterations,
            start_iteration=c.iteration,
        )
        if world.is_main
        else None
    )
    budget = cfg.train.total_env_steps
    deadline = (
        None if cfg.train.max_minutes is None else time.monotonic() + 60.0 * cfg.train.max_minutes
    )
    try:
        while c.iteration < cfg.train.iterations and (budget is None or c.env_steps < budget):
            metrics = trainer.iteration()
            c = trainer.counters
            if trainer.stopped:
                metrics["train/stopped_nonfinite"] = 1.0
                if logger is not None:
                    logger.log(c.iteration, c.env_steps, metrics)
                break
            is_last = (
                c.iteration >= cfg.train.iterations
                or (budget is not None and c.env_steps >= budget)
                # Every rank stops when any one's clock runs out.
                or any_rank(world, deadline is not None and time.monotonic() >= deadline)
            )
            if logger is not None:
                is_best = False
                if c.iteration % cfg.train.eval_every == 0 or is_last:
                    metrics.update(trainer.evaluate())
                    score = metrics[f"adapt/return_ep{cfg.env.episodes_per_trial}"]
                    if score > c.best_score:
                        c.best_score, is_best = score, True
                logger.log(c.iteration, c.env_steps, metrics)
                if c.iteration % cfg.train.checkpoint_every == 0 or is_last or is_best:
                    trainer.save(is_best, logger)
                logger.progress(
                    c.iteration,
                    {"success": metrics["train/success"], "return": metrics["train/return"]},
                )
            if is_last:
                break
    except JobStopped as e:
        raise _stopped(world, trainer, run_dir, e) from e
    finally:
        if logger is not None:
            logger.close()
        trainer.close()
    return run_dir
