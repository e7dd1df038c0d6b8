"""Trial collection: K consecutive episodes per sub-environment, one pinned task each.

The rollout drives a :class:`~meta_rl.agent.meta_agent.MetaAgent` through
:func:`meta_rl.trial.run_trial` (the loop evaluation uses too) and records what PPO and the
ELBO need, time-major ``(T, N, ...)`` with ``T = K * episode_steps``. Every episode lasts
exactly ``episode_steps`` (episodes have a fixed length, docs/design.md); an early end (physics
error) is followed by Gymnasium's next-step autoreset, whose step is recorded with ``mask`` false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from meta_rl.agent.meta_agent import MetaAgent, StepOutput
from meta_rl.agent.task_model import TrialTensors
from meta_rl.task_envs.vector import TaskVectorEnvLike
from meta_rl.trial import Step, run_trial

__all__ = ["TrialBatch", "collect_trials"]


@dataclass(frozen=True)
class TrialBatch:
    """Transitions of N trials, time-major tensors ``(T, N, ...)`` on the learner's device.

    ``obs``/``next_obs`` are raw observations; ``raw_actions`` the sampled (unclipped) actions
    behind ``log_probs``; ``env_actions`` the clipped ones the env received; ``dones`` marks the
    last step of each episode; ``beliefs`` the belief features the policy saw. The per-episode
    summaries ``episode_returns``, ``episode_success`` (success at any step) and
    ``episode_success_final`` (at the last step) are numpy ``(K, N)``. ``task_features``
    ``(N, F)``: the true features of each sub-environment's task, which the trainer adds after
    the rollout when a privileged loss needs them (:mod:`meta_rl.training.privileged`); the
    agent never saw them. ``info_gain`` ``(T, N)``: the unweighted information-gain reward of
    each step, which the trainer adds with ``privileged.info_gain_weight`` (else None).
    """

    obs: torch.Tensor
    next_obs: torch.Tensor
    raw_actions: torch.Tensor
    env_actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    mask: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    beliefs: torch.Tensor
    episode_returns: np.ndarray
    episode_success: np.ndarray
    episode_success_final: np.ndarray
    task_features: torch.Tensor | None = None
    info_gain: torch.Tensor | None = None
    inner_batches: dict[int, Any] = field(default_factory=dict)
    """MAML: episode k -> the batch the policy adapted on after it (one row per task), as the
    agent adapted while collecting; the outer loss replays those steps. Empty without MAML."""

    @property
    def env_steps(self) -> int:
        return int(self.rewards.numel())

    def trial_tensors(self, agent: MetaAgent) -> TrialTensors:
        """The transitions as the encoder and task model read them (normalised)."""
        nets = agent.networks
        with torch.no_grad():
            obs, next_obs = nets.normalize(self.obs), nets.normalize(self.next_obs)
            reward = nets.normalize_reward(self.rewards)
        return TrialTensors(
            obs=obs,
            action=self.env_actions,
            reward=reward,
            next_obs=next_obs,
            done=self.dones,
            mask=self.mask,
        )


class _Recorder:
    """Acts through ``agent.step`` and keeps what PPO and the ELBO need, step by step."""

    def __init__(self, agent: MetaAgent) -> None:
        self.agent = agent
        self.out: StepOutput | None = None
        self.rec: dict[str, list[Any]] = {
            k: []
            for k in ("obs", "next_obs", "raw", "env", "rew", "done", "mask", "logp", "val", "bel")
        }

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        self.out = self.agent.step(obs, deterministic)
        return self.out.env_action

    def on_step(self, step: Step) -> None:
        out, rec = self.out, self.rec
        assert out is not None
        for key, val in (
            ("obs", step.obs),
            ("next_obs", step.next_obs),
            ("env", out.env_action),
            ("rew", step.reward),
            ("done", step.done),
            ("mask", step.mask),
            ("raw", out.raw_action),
            ("logp", out.log_prob),
            ("val", out.value),
            ("bel", out.belief),
        ):
            rec[key].append(val)


def collect_trials(
    venv: TaskVectorEnvLike,
    agent: MetaAgent,
    tasks: Sequence[Any],
    *,
    episodes: int,
    episode_steps: int,
    seed: int,
    deterministic: bool = False,
) -> TrialBatch:
    """Run one trial of ``episodes`` episodes on each of ``tasks`` (one per sub-environment).

    ``seed`` seeds the first reset, so a trial's start depends only on it (resumable runs).
    The loop is :func:`meta_rl.trial.run_trial` with ``fixed_length``.
    """
    n = venv.num_envs
    if len(tasks) != n:
        raise ValueError(f"collect_trials: got {len(tasks)} tasks for {n} sub-environments")
    venv.set_tasks(list(tasks))
    recorder = _Recorder(agent)
    outcome = run_trial(
        venv,
        agent,
        episodes=episodes,
        deterministic=deterministic,
        seed=seed,
        episode_steps=episode_steps,
        fixed_length=True,
        act=recorder.act,
        on_step=recorder.on_step,
    )
    rec = recorder.rec
    device = agent.device

    def stack(key: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.stack(rec[key]), dtype=dtype, device=device)

    return TrialBatch(
        obs=stack("obs"),
        next_obs=stack("next_obs"),
        raw_actions=torch.stack(rec["raw"]),
        env_actions=stack("env"),
        rewards=stack("rew"),
        dones=stack("done"),
        mask=stack("mask", torch.bool),
        log_probs=torch.stack(rec["logp"]),
        values=torch.stack(rec["val"]),
        beliefs=torch.stack(rec["bel"]),
        episode_returns=outcome.returns.T.copy(),
        episode_success=outcome.success.T.copy(),
        episode_success_final=outcome.success_final.T.copy(),
        inner_batches=dict(agent.inner_batches),
    )
