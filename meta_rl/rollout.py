"""Trial collection: K consecutive episodes per sub-environment, one pinned task each.

The rollout drives a :class:`meta_rl.agent.MetaAgent` through the ``AdaptiveAgent`` protocol
(the same code path evaluation uses) and records what PPO and the ELBO need, time-major
``(T, N, ...)`` with ``T = K * episode_steps``. Every episode lasts exactly ``episode_steps``
(episodes have a fixed length, docs/design.md); an early end (physics error) is followed by
Gymnasium's next-step autoreset, whose step is recorded with ``mask`` false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from meta_rl.agent import MetaAgent
from meta_rl.task_model import TrialTensors
from meta_rl.vector import TaskVectorEnvLike

__all__ = ["TrialBatch", "collect_trials"]


@dataclass(frozen=True)
class TrialBatch:
    """Transitions of N trials, time-major tensors ``(T, N, ...)`` on the learner's device.

    ``obs``/``next_obs`` are raw observations; ``raw_actions`` the sampled (unclipped) actions
    behind ``log_probs``; ``env_actions`` the clipped ones the env received; ``dones`` marks the
    last step of each episode; ``beliefs`` the belief features the policy saw. The per-episode
    summaries ``episode_returns``, ``episode_success`` (success at any step) and
    ``episode_success_final`` (at the last step) are numpy ``(K, N)``.
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


def _info_array(info: dict[str, Any], key: str, n: int, required: bool = False) -> np.ndarray:
    value = info.get(key)
    if value is None and required:
        raise ValueError(
            f"the env's step info has no {key!r}: every step of a task family must report "
            f"info[{key!r}] (float 0/1; docs/design.md, 'Tasks'), else success is never measured"
        )
    if value is None:
        return np.zeros(n, dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    mask = info.get(f"_{key}")
    if mask is not None:
        arr = np.where(np.asarray(mask, dtype=bool), arr, 0.0)
    return arr


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
    """
    n = venv.num_envs
    if len(tasks) != n:
        raise ValueError(f"collect_trials: got {len(tasks)} tasks for {n} sub-environments")
    venv.set_tasks(list(tasks))
    agent.begin_trial(n)
    rec: dict[str, list[Any]] = {
        k: []
        for k in ("obs", "next_obs", "raw", "env", "rew", "done", "mask", "logp", "val", "bel")
    }
    returns = np.zeros((episodes, n))
    success = np.zeros((episodes, n))
    success_final = np.zeros((episodes, n))
    for k in range(episodes):
        obs, _ = venv.reset(seed=seed if k == 0 else None)
        obs = np.asarray(obs, dtype=np.float32)
        pending_reset = np.zeros(n, dtype=bool)
        for t in range(episode_steps):
            out = agent.step(obs, deterministic)
            next_obs, reward, term, trunc, info = venv.step(out.env_action)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            valid = ~pending_reset
            ended = np.asarray(term, dtype=bool) | np.asarray(trunc, dtype=bool)
            last = t == episode_steps - 1
            done = np.ones(n, dtype=bool) if last else ended & valid
            reward = np.where(valid, np.asarray(reward, dtype=np.float32), 0.0).astype(np.float32)
            agent.observe(obs, out.env_action, reward, next_obs, done, mask=valid)
            # On a step where every sub-env autoresets, the info holds only the resets' (empty).
            required = bool(valid.any())
            step_success = _info_array(info, "success", n, required=required) * valid
            success[k] = np.maximum(success[k], step_success)
            if last:
                success_final[k] = step_success
            returns[k] += reward
            for key, val in (
                ("obs", obs),
                ("next_obs", next_obs),
                ("env", out.env_action),
                ("rew", reward),
                ("done", done),
                ("mask", valid),
            ):
                rec[key].append(val)
            rec["raw"].append(out.raw_action)
            rec["logp"].append(out.log_prob)
            rec["val"].append(out.value)
            rec["bel"].append(out.belief)
            pending_reset = ended & valid & (not last)
            obs = next_obs
        agent.end_episode()

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
        episode_returns=returns,
        episode_success=success,
        episode_success_final=success_final,
    )
