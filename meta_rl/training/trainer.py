"""Meta-training: PPO on a belief-conditioned policy plus the ELBO of the task model.

Each iteration reads top to bottom:

1. sample ``tasks_per_batch`` tasks from the train split, one per sub-environment;
2. collect one trial (K episodes) per task with the :class:`~meta_rl.agent.meta_agent.MetaAgent`;
3. scale rewards, compute GAE over whole trials (episode boundaries inside a trial are not
   terminal: the agent maximises the return of the trial, so exploring early pays off later);
4. PPO epochs over minibatches (the encoder gets RL gradients only if ``encoder.rl_gradients``);
   with ``maml.enabled`` this is the MAML outer loop instead (:meth:`Trainer.maml_update`):
   minibatches of whole trials, the inner adaptation rebuilt with its graph from the episodes
   the agent adapted on, the PPO loss of every episode under the parameters the agent acted with,
   differentiated through the inner steps into the meta-parameters and the step sizes;
5. ELBO steps on the encoder and the task decoder;
6. update the observation normaliser; log; every ``eval_every`` iterations evaluate on
   held-out (test split) tasks; checkpoint at iteration boundaries.

All randomness comes from generators seeded by ``train.seed`` whose states are checkpointed,
and each trial's first reset is seeded from them, so ``train(cfg, resume=run_dir)`` makes
exactly the updates the uninterrupted run would have made (on the same device).
A non-finite loss or gradient skips that update (logged as ``losses/skipped_updates``);
``train.max_consecutive_nonfinite`` consecutive skips stop the run, keeping the last good
checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from meta_rl.agent.encoder import Belief
from meta_rl.agent.maml import (
    MetaSGD,
    batched_loss,
    expand_rollouts,
    functional_model,
    map_batch,
)
from meta_rl.agent.meta_agent import AgentNetworks, MetaAgent
from meta_rl.agent.policy import PolicyOutput
from meta_rl.agent.task_model import TrialTensors, elbo_loss, final_belief_error
from meta_rl.config import to_dict
from meta_rl.experiment import ExperimentConfig, config_hash, resolve_device
from meta_rl.logging import RunLogger
from meta_rl.runs import (
    check_fresh_run_dir,
    create_run_dir,
    prepare_run_dir,
    record_resume,
    save_config,
)
from meta_rl.task_envs.family import make_env, register_family, resolve_episode_steps
from meta_rl.task_envs.vector import (
    TaskVectorEnvLike,
    make_task_vector_env,
    repeat_per_rollout,
)
from meta_rl.training.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointManager,
    check_compatible,
    load_checkpoint,
    locate,
    remove_orphaned_temp_files,
    write_atomic,
)
from meta_rl.training.ppo import (
    PPOBatch,
    PPOTerms,
    ReturnScaler,
    compute_gae,
    ppo_loss,
    ppo_loss_from_output,
)
from meta_rl.training.rollout import TrialBatch, collect_trials

__all__ = ["Trainer", "apply_update", "train"]


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
class _Counters:
    iteration: int = 0
    env_steps: int = 0
    best_score: float = -math.inf
    nonfinite_streak: int = 0
    skipped_updates: int = 0


_PPO_TERMS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
"""The PPO terms logged per minibatch update (``losses/<term>``, averaged per iteration)."""


def _summarize_losses(stats: dict[str, list[float]]) -> dict[str, float]:
    """The mean of every logged value, and ``losses/updates``: the updates applied."""
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["losses/updates"] = float(len(stats.get("losses/policy_loss", [])))
    return out


class Trainer:
    """Owns the networks, optimisers, generators, envs and logger of one run."""

    def __init__(
        self, cfg: ExperimentConfig, run_dir: Path | None, resume_from: Path | None = None
    ) -> None:
        """Build everything of a run and restore ``resume_from``; nothing is written to disk
        until :meth:`attach` gives the run directory (``run_dir`` here attaches at once)."""
        self.cfg = cfg
        if cfg.train.torch_threads is not None:
            torch.set_num_threads(cfg.train.torch_threads)
        self.device = resolve_device(cfg.train.device)
        env = cfg.env
        # The family's module is imported here (env.module or module:id); later calls use the
        # bare registered id. cfg.env.id itself is what the checkpoints record.
        env_id = register_family(env.id, env.module)
        self.episode_steps = resolve_episode_steps(env_id, env.episode_steps, "env.episode_steps")
        # Evaluation makes the family with split="test": a family it cannot make fails here,
        # before the run starts, not after it.
        make_env(env_id, **{**env.kwargs, "split": "test"}).close()
        seed = cfg.train.seed
        self.venv: TaskVectorEnvLike = make_task_vector_env(
            env_id,
            env.tasks_per_batch,
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
        self.obs_shape = tuple(int(s) for s in obs_space.shape)
        self.action_shape = tuple(int(s) for s in act_space.shape)
        self.action_low = np.asarray(act_space.low, dtype=np.float32)  # type: ignore[attr-defined]
        self.action_high = np.asarray(act_space.high, dtype=np.float32)  # type: ignore[attr-defined]
        obs_dim, act_dim = int(np.prod(self.obs_shape)), int(np.prod(self.action_shape))

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.networks = AgentNetworks(obs_dim, act_dim, cfg).to(self.device)
        self.np_rng = np.random.default_rng(seed)
        self.act_gen = torch.Generator().manual_seed(seed + 1)
        self.learn_gen = torch.Generator().manual_seed(seed + 2)
        # Held-out tasks are fixed for the run and drawn from their own seed stream.
        self.eval_tasks = repeat_per_rollout(
            self.eval_venv.task_distribution.sample(
                env.eval_tasks // cfg.maml.rollouts_per_task,
                "test",
                np.random.default_rng([seed, 7919]),
            ),
            cfg.maml.rollouts_per_task,
        )
        self.eval_seed = int(np.random.default_rng([seed, 104729]).integers(2**31 - 1))
        self.agent = MetaAgent(
            self.networks,
            cfg,
            action_low=self.action_low,
            action_high=self.action_high,
            device=self.device,
            generator=self.act_gen,
        )
        nets = self.networks
        ppo_params = list(nets.policy.parameters())
        if cfg.encoder.rl_gradients:
            ppo_params += list(nets.encoder.parameters())
        if nets.maml is not None:
            ppo_params += list(nets.maml.parameters())  # the step sizes (none when fixed)
        self.ppo_params = ppo_params
        self.ppo_opt = torch.optim.Adam(ppo_params, lr=cfg.ppo.lr, eps=1e-5)
        self.elbo_params = list(nets.encoder.parameters()) + list(nets.decoder.parameters())
        self.elbo_opt = torch.optim.Adam(self.elbo_params, lr=cfg.task_model.lr)
        self.scaler = ReturnScaler(cfg.ppo.gamma, enabled=cfg.ppo.normalize_rewards)
        self.counters = _Counters()
        self.config_hash = config_hash(cfg)
        self.run_dir: Path | None = None
        self._checkpoints: CheckpointManager | None = None
        if resume_from is not None:
            self._restore(resume_from)
        if run_dir is not None:
            self.attach(run_dir)

    def attach(self, run_dir: Path) -> None:
        """Write this run's checkpoints into ``run_dir/checkpoints``."""
        self.run_dir = run_dir
        self._checkpoints = CheckpointManager(
            run_dir / "checkpoints", self.cfg.train.keep_checkpoints
        )

    @property
    def checkpoints(self) -> CheckpointManager:
        if self._checkpoints is None:
            raise RuntimeError("Trainer.attach(run_dir) must come before checkpoints are saved")
        return self._checkpoints

    # ------------------------------------------------------------------ checkpoints

    def _payload(self) -> dict[str, Any]:
        c = self.counters
        return {
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
                "counters": {
                    "iteration": c.iteration,
                    "env_steps": c.env_steps,
                    "best_score": c.best_score,
                    "nonfinite_streak": c.nonfinite_streak,
                    "skipped_updates": c.skipped_updates,
                },
            },
        }

    def _restore(self, path: Path) -> None:
        payload = load_checkpoint(path)
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
            self.np_rng.bit_generator.state = tr["np_rng"]
            self.act_gen.set_state(tr["act_gen"])
            self.learn_gen.set_state(tr["learn_gen"])
            self.scaler.load_state_dict(tr["scaler"])
            self.counters = _Counters(**tr["counters"])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise CheckpointError(f"checkpoint {str(path)!r} cannot be restored: {e}") from e

    def save(self, is_best: bool, logger: RunLogger | None = None) -> Path:
        path = self.checkpoints.save(self.counters.iteration, self._payload(), is_best=is_best)
        if logger is not None:
            logger.log_checkpoint(path, ["latest", "best"] if is_best else ["latest"])
        return path

    # ------------------------------------------------------------------ one iteration

    def _update_ok(self, applied: bool) -> None:
        c = self.counters
        if applied:
            c.nonfinite_streak = 0
        else:
            c.nonfinite_streak += 1
            c.skipped_updates += 1

    @property
    def stopped(self) -> bool:
        return self.counters.nonfinite_streak >= self.cfg.train.max_consecutive_nonfinite

    def advantages(self, batch: TrialBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over whole trials on scaled rewards: ``(advantages, returns)``, each ``(T, N)``."""
        cfg = self.cfg
        rewards = torch.as_tensor(
            self.scaler.scale(batch.rewards.cpu().numpy()), device=self.device
        )
        terminals = torch.zeros_like(batch.dones, dtype=torch.bool)
        terminals[-1] = True  # the trial ends; boundaries between its episodes are not terminal
        return compute_gae(
            rewards,
            batch.values,
            terminals,
            torch.zeros_like(batch.values[0]),
            cfg.ppo.gamma,
            cfg.ppo.gae_lambda,
        )

    def _sub_beliefs(self, trials: TrialTensors, idx: torch.Tensor) -> torch.Tensor:
        """Belief features ``(T, n, F)`` of trials ``idx`` recomputed with the encoder's graph."""
        sub = trials.select(idx)
        beliefs, _ = self.networks.encoder(
            sub.obs, sub.action, sub.reward, sub.next_obs, sub.done, mask=sub.mask
        )
        before = self.networks.encoder.beliefs_with_prior(beliefs)
        return Belief(before.mean[:-1], before.logvar[:-1]).features()

    def ppo_update(self, batch: TrialBatch) -> dict[str, float]:
        cfg, nets = self.cfg, self.networks
        adv, ret = self.advantages(batch)
        t_len, n = batch.rewards.shape
        recompute = cfg.encoder.rl_gradients and cfg.encoder.use_context
        trials = batch.trial_tensors(self.agent) if recompute else None
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.ppo.epochs):
            if recompute:
                # The encoder learns from PPO too: minibatches of whole trials.
                perm = torch.randperm(n, generator=self.learn_gen).to(self.device)
                chunks = perm.chunk(min(cfg.ppo.minibatches, n))
            else:
                perm = torch.randperm(t_len * n, generator=self.learn_gen).to(self.device)
                chunks = perm.chunk(cfg.ppo.minibatches)
            for idx in chunks:
                if recompute:
                    assert trials is not None
                    feats = self._sub_beliefs(trials, idx)
                    mb = PPOBatch(
                        obs=batch.obs[:, idx].flatten(0, 1),
                        belief=feats.flatten(0, 1),
                        actions=batch.raw_actions[:, idx].flatten(0, 1),
                        old_log_probs=batch.log_probs[:, idx].flatten(0, 1),
                        advantages=adv[:, idx].flatten(0, 1),
                        returns=ret[:, idx].flatten(0, 1),
                        mask=batch.mask[:, idx].flatten(0, 1),
                    )
                else:
                    mb = PPOBatch(
                        obs=batch.obs.flatten(0, 1)[idx],
                        belief=batch.beliefs.flatten(0, 1)[idx],
                        actions=batch.raw_actions.flatten(0, 1)[idx],
                        old_log_probs=batch.log_probs.flatten(0, 1)[idx],
                        advantages=adv.flatten(0, 1)[idx],
                        returns=ret.flatten(0, 1)[idx],
                        mask=batch.mask.flatten(0, 1)[idx],
                    )
                if not self._ppo_step(ppo_loss(nets.policy, None, mb, cfg.ppo), stats):
                    break
            if self.stopped:
                break
        return _summarize_losses(stats)

    def _ppo_step(self, terms: PPOTerms, stats: dict[str, list[float]]) -> bool:
        """One optimizer step on ``terms.total``; its terms go into ``stats`` as ``losses/<term>``.

        False when the run must stop (too many non-finite updates in a row).
        """
        applied = apply_update(
            self.ppo_opt, terms.total, self.ppo_params, self.cfg.ppo.max_grad_norm
        )
        self._update_ok(applied)
        if self.stopped:
            return False
        for key in _PPO_TERMS:
            stats.setdefault(f"losses/{key}", []).append(float(getattr(terms, key).detach()))
        return True

    def maml_update(self, batch: TrialBatch) -> dict[str, float]:
        """The MAML outer loop: PPO on every episode of the trials, through the inner steps.

        For each epoch and each minibatch of whole trials (the inner loss needs a task's whole
        episode): start from the meta-parameters, evaluate the policy on episode 0, adapt on the
        batch the agent adapted on after episode 0 (``agent.inner_batches``; with the graph
        unless ``maml.first_order``), evaluate episode 1 with the adapted parameters, and so on.
        The clipped PPO loss over all episodes (old log-probs: what the agent acted with), plus
        the value loss, is back-propagated into the policy's meta-parameters, the Meta-SGD step
        sizes and (``encoder.rl_gradients``) the encoder. The critic is not adapted.
        """
        cfg, nets = self.cfg, self.networks
        maml = nets.maml
        assert maml is not None
        adv, ret = self.advantages(batch)
        n = batch.rewards.shape[1] // cfg.maml.rollouts_per_task  # tasks
        recompute = cfg.encoder.rl_gradients and cfg.encoder.use_context
        trials = batch.trial_tensors(self.agent) if recompute else None
        stats: dict[str, list[float]] = {}
        stats.update(self._inner_loss_stats(maml, self.agent.inner_batches))
        nets.inner_reward_scale.fill_(self.scaler.reward_scale)
        for _ in range(cfg.ppo.epochs):
            perm = torch.randperm(n, generator=self.learn_gen).to(self.device)
            for idx in perm.chunk(min(cfg.ppo.minibatches, n)):
                if not self._ppo_step(self.maml_loss(batch, adv, ret, idx, trials), stats):
                    break
            if self.stopped:
                break
        out_stats = _summarize_losses(stats)
        for name, size in maml.step_sizes().items():
            value = size.detach().mean() if isinstance(size, torch.Tensor) else size
            out_stats[f"maml/step_size/{name}"] = float(value)
        return out_stats

    def maml_loss(
        self,
        batch: TrialBatch,
        adv: torch.Tensor,
        ret: torch.Tensor,
        idx: torch.Tensor,
        trials: TrialTensors | None = None,
    ) -> PPOTerms:
        """The outer (meta) loss of trials ``idx`` of ``batch``, differentiable end to end.

        ``idx`` are tasks: with ``maml.rollouts_per_task`` m, task i's trials are the
        sub-environments ``i * m`` to ``i * m + m - 1``. ``adv``/``ret`` from :meth:`advantages`;
        the inner batches are those the agent adapted on while collecting ``batch``
        (``agent.inner_batches``, one row per task). ``trials`` (the batch's
        :meth:`~meta_rl.training.rollout.TrialBatch.trial_tensors`) recomputes the beliefs with the
        encoder's graph (``encoder.rl_gradients``); None uses the recorded ones.
        """
        cfg, nets = self.cfg, self.networks
        maml, inner_loss = nets.maml, self.agent.inner_loss
        if maml is None or inner_loss is None:
            raise ValueError("maml.enabled: the MAML outer loss needs maml.enabled=true")
        inner = self.agent.inner_batches
        episodes = cfg.env.episodes_per_trial
        steps = batch.rewards.shape[0] // episodes
        model = torch.func.vmap(functional_model(nets.policy))
        m = cfg.maml.rollouts_per_task
        task_idx = idx
        idx = (task_idx.unsqueeze(1) * m + torch.arange(m, device=idx.device)).flatten()
        if trials is not None:
            feats = self._sub_beliefs(trials, idx).transpose(0, 1)
        else:
            feats = batch.beliefs[:, idx].transpose(0, 1)
        obs = batch.obs[:, idx].transpose(0, 1)
        params = maml.init_params(len(task_idx))
        outs = []
        for k in range(episodes):
            sl = slice(k * steps, (k + 1) * steps)
            outs.append(model(expand_rollouts(params, m), obs[:, sl], feats[:, sl]))
            if k < episodes - 1 and k in inner:
                params = maml.adapt(params, inner_loss, _select(inner[k], task_idx))
        out = PolicyOutput(*(torch.cat(parts, dim=1) for parts in zip(*outs, strict=True)))
        mb = PPOBatch(
            obs=obs,
            belief=feats,
            actions=batch.raw_actions[:, idx].transpose(0, 1),
            old_log_probs=batch.log_probs[:, idx].transpose(0, 1),
            advantages=adv[:, idx].transpose(0, 1),
            returns=ret[:, idx].transpose(0, 1),
            mask=batch.mask[:, idx].transpose(0, 1),
        )
        policy_mask = None
        if cfg.maml.outer_episodes == "adapted":
            # Episode 0 acts with the meta-parameters: only the later ones (adapted) count.
            policy_mask = torch.ones_like(mb.mask, dtype=torch.bool)
            policy_mask[:, :steps] = False
        return ppo_loss_from_output(out, mb, cfg.ppo, policy_mask=policy_mask)

    def _inner_loss_stats(self, maml: MetaSGD, inner: dict[int, Any]) -> dict[str, list[float]]:
        """The inner loss on the first adapted episode before and after adapting on it."""
        loss_fn = self.agent.inner_loss
        if 0 not in inner or loss_fn is None:
            return {}
        with torch.no_grad():
            params = maml.init_params(
                self.cfg.env.tasks_per_batch // self.cfg.maml.rollouts_per_task
            )
            pre = batched_loss(loss_fn, params, inner[0])
            post = batched_loss(loss_fn, maml.adapt(params, loss_fn, inner[0]), inner[0])
        return {
            "maml/inner_loss_pre": [float(pre.mean())],
            "maml/inner_loss_post": [float(post.mean())],
        }

    def elbo_update(self, batch: TrialBatch) -> dict[str, float]:
        cfg, nets = self.cfg.task_model, self.networks
        trials = batch.trial_tensors(self.agent)
        stats: dict[str, list[float]] = {}
        for _ in range(cfg.updates_per_iteration):
            terms = elbo_loss(nets.encoder, nets.decoder, trials, cfg, self.learn_gen)
            applied = apply_update(self.elbo_opt, terms.total, self.elbo_params, cfg.max_grad_norm)
            self._update_ok(applied)
            if self.stopped:
                break
            for key in ("total", "reward_loss", "state_loss", "kl"):
                stats.setdefault(key, []).append(float(getattr(terms, key).detach()))
        return {f"losses/elbo_{k}": float(np.mean(v)) for k, v in stats.items()}

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
            action_low=self.action_low,
            action_high=self.action_high,
            device=self.device,
            generator=torch.Generator().manual_seed(self.eval_seed),
        )

    def collect(self) -> TrialBatch:
        """Steps 1-2: one trial per freshly sampled train task (the agent adapts if MAML)."""
        cfg = self.cfg
        m = cfg.maml.rollouts_per_task
        tasks = repeat_per_rollout(
            self.venv.task_distribution.sample(cfg.env.tasks_per_batch // m, "train", self.np_rng),
            m,
        )
        seed = int(self.np_rng.integers(2**31 - 1))
        self.networks.eval()
        return collect_trials(
            self.venv,
            self.agent,
            tasks,
            episodes=cfg.env.episodes_per_trial,
            episode_steps=self.episode_steps,
            seed=seed,
        )

    def iteration(self) -> dict[str, float]:
        """One meta-training iteration (steps 1-6 of the module docstring) and its metrics."""
        cfg = self.cfg
        t0 = time.perf_counter()
        batch = self.collect()
        t1 = time.perf_counter()
        self.networks.train()
        if self.networks.maml is not None:
            metrics = self.maml_update(batch)
        else:
            metrics = self.ppo_update(batch)
        if not self.stopped:
            metrics.update(self.elbo_update(batch))
        self.networks.policy.obs_norm.update(batch.obs[batch.mask])
        self.networks.reward_norm.update(batch.rewards[batch.mask].unsqueeze(-1))
        t2 = time.perf_counter()
        self.counters.iteration += 1
        self.counters.env_steps += batch.env_steps
        n_updates = metrics.get("losses/updates", 0.0) + cfg.task_model.updates_per_iteration
        for k in range(batch.episode_returns.shape[0]):
            metrics[f"train/return_ep{k + 1}"] = float(batch.episode_returns[k].mean())
            metrics[f"train/success_ep{k + 1}"] = float(batch.episode_success[k].mean())
        metrics["train/return"] = float(batch.episode_returns.mean())
        metrics["train/success"] = float(batch.episode_success.mean())
        metrics["losses/skipped_updates"] = float(self.counters.skipped_updates)
        metrics["time/env_steps_per_s"] = batch.env_steps / max(t1 - t0, 1e-9)
        metrics["time/updates_per_s"] = n_updates / max(t2 - t1, 1e-9)
        metrics["time/iteration_s"] = t2 - t0
        return metrics

    def close(self) -> None:
        self.venv.close()
        self.eval_venv.close()


def _select(tree: Any, idx: torch.Tensor) -> Any:
    """Rows ``idx`` (tasks) of every tensor of a batch (tensors in tuples / NamedTuples)."""
    return map_batch(tree, lambda _path, t: t[idx])


def _drop_metrics_after(run_dir: Path, iteration: int) -> None:
    """Forget metrics logged after the checkpoint a run resumes from (they will be redone)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip() and json.loads(ln)["iteration"] <= iteration]
    if len(kept) != len(lines):
        write_atomic(path, "".join(kept).encode())


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
    """
    ckpt: Path | None = None
    if resume is not None:
        found = locate(resume, prefer="latest")
        run_dir, ckpt = found.run_dir, found.file
    elif run_dir is not None:
        check_fresh_run_dir(run_dir)
    trainer = Trainer(cfg, None, ckpt)
    c = trainer.counters
    try:
        if ckpt is not None:
            assert run_dir is not None
            # A kill during a save leaves a temporary file behind: clear it up.
            remove_orphaned_temp_files(run_dir / "checkpoints")
            remove_orphaned_temp_files(run_dir)
            record_resume(run_dir, cfg, c.iteration)
            _drop_metrics_after(run_dir, c.iteration)
        else:
            if run_dir is None:
                run_dir = create_run_dir(cfg.runs_dir, cfg.experiment, cfg.train.seed)
            else:
                prepare_run_dir(run_dir)
            save_config(run_dir, cfg)
        trainer.attach(run_dir)
    except BaseException:
        trainer.close()
        raise
    logger = RunLogger(
        run_dir,
        cfg.logging,
        run_name=run_dir.name,
        resolved_config=to_dict(cfg),
        total_iterations=cfg.train.iterations,
        start_iteration=c.iteration,
    )
    budget = cfg.train.total_env_steps
    try:
        while c.iteration < cfg.train.iterations and (budget is None or c.env_steps < budget):
            metrics = trainer.iteration()
            c = trainer.counters
            if trainer.stopped:
                metrics["train/stopped_nonfinite"] = 1.0
                logger.log(c.iteration, c.env_steps, metrics)
                break
            is_last = c.iteration >= cfg.train.iterations or (
                budget is not None and c.env_steps >= budget
            )
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
    finally:
        logger.close()
        trainer.close()
    return run_dir
