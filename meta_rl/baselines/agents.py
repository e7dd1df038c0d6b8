"""Stable-baselines3 policies as :class:`AdaptiveAgent`\\ s, so one protocol evaluates every method.

* :class:`SB3PolicyAgent`: a trained PPO policy that does not adapt (multi-task or oracle).
* :class:`ScratchPPOAgent`: one fresh PPO per sub-environment that learns only from the trial's
  own episodes: episode k runs the policy after a PPO update on each of episodes 1..k-1.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.logger import Logger

from meta_rl.baselines.config import SB3PPOConfig

__all__ = ["SB3PolicyAgent", "ScratchPPOAgent"]


class SB3PolicyAgent:
    """A trained SB3 model driven through the AdaptiveAgent protocol; it never adapts.

    Stochastic actions (``deterministic=False``) are drawn by SB3 from torch's global generator,
    which :meth:`begin_trial` seeds inside a forked RNG scope (``seed``) so runs are repeatable
    and the caller's global state is left alone.
    """

    def __init__(self, model: BaseAlgorithm, seed: int = 0) -> None:
        self.model = model
        self.seed = seed
        self._generator_state: torch.Tensor | None = None

    def begin_trial(self, num_envs: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._generator_state = torch.get_rng_state()

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        with torch.random.fork_rng(devices=[]):
            if self._generator_state is not None:
                torch.set_rng_state(self._generator_state)
            actions, _ = self.model.predict(np.asarray(obs), deterministic=deterministic)
            self._generator_state = torch.get_rng_state()
        return np.asarray(actions)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
    ) -> None:
        """Nothing to remember: the policy is fixed."""

    def end_episode(self) -> None:
        """Nothing to adapt."""


class _SpacesEnv(gym.Env[np.ndarray, np.ndarray]):
    """Holds the spaces SB3 needs to build a model; never stepped."""

    def __init__(self, observation_space: spaces.Space[Any], action_space: spaces.Space[Any]):
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        raise RuntimeError("_SpacesEnv only carries spaces; it cannot be reset")

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        raise RuntimeError("_SpacesEnv only carries spaces; it cannot be stepped")


class ScratchPPOAgent:
    """SB3 PPO from scratch on each task with the trial's K-episode budget.

    :meth:`begin_trial` builds one fresh PPO per sub-environment (initialised from
    ``seed + i``). During an episode each model samples its actions (it must explore, so
    ``deterministic`` is ignored) with its own ``torch.Generator``; :meth:`end_episode` runs one
    PPO update per model on the episode just collected (GAE, bootstrapping the value of the
    last state since episodes end by truncation). Episode k is thus acted by the policy after
    learning from episodes 1..k-1. SB3's minibatch shuffling uses numpy's global generator; it
    runs in a scope seeded from ``seed`` and restored afterwards.
    """

    def __init__(
        self,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        cfg: SB3PPOConfig | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(
                f"action_space: got {type(action_space).__name__}; ScratchPPOAgent needs a Box"
            )
        self.observation_space = observation_space
        self.action_space = action_space
        self.cfg = cfg or SB3PPOConfig()
        self.seed = seed
        self.device = device
        self.models: list[PPO] = []
        self._generators: list[torch.Generator] = []
        self._episode: list[list[tuple[np.ndarray, np.ndarray, float, float, float]]] = []
        self._pending: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        self._last_obs: list[np.ndarray | None] = []
        self._ended: np.ndarray = np.zeros(0, dtype=bool)
        self._updates = 0

    @property
    def num_updates(self) -> int:
        """PPO updates made so far in this trial (one per model per episode)."""
        return self._updates

    def _new_model(self, seed: int) -> PPO:
        c = self.cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = PPO(
                "MlpPolicy",
                _SpacesEnv(self.observation_space, self.action_space),
                learning_rate=c.learning_rate,
                n_steps=c.batch_size,
                batch_size=c.batch_size,
                n_epochs=c.n_epochs,
                gamma=c.gamma,
                gae_lambda=c.gae_lambda,
                clip_range=c.clip_range,
                ent_coef=c.ent_coef,
                vf_coef=c.vf_coef,
                max_grad_norm=c.max_grad_norm,
                policy_kwargs=c.policy_kwargs(),
                device=self.device,
                verbose=0,
            )
        model.set_logger(Logger(folder=None, output_formats=[]))
        return model

    def begin_trial(self, num_envs: int) -> None:
        self.models = [self._new_model(self.seed + i) for i in range(num_envs)]
        self._generators = [torch.Generator().manual_seed(self.seed + i) for i in range(num_envs)]
        self._episode = [[] for _ in range(num_envs)]
        self._last_obs = [None] * num_envs
        self._ended = np.zeros(num_envs, dtype=bool)
        self._updates = 0

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape[0] != len(self.models):
            raise ValueError(
                f"obs: got {obs.shape[0]} rows for {len(self.models)} models; call begin_trial"
            )
        low, high = self.action_space.low, self.action_space.high
        actions = []
        self._pending = []
        for i, model in enumerate(self.models):
            policy = model.policy
            with torch.no_grad():
                obs_t, _ = policy.obs_to_tensor(obs[i : i + 1])
                dist = policy.get_distribution(obs_t).distribution
                assert isinstance(dist, torch.distributions.Normal)
                noise = torch.randn(dist.mean.shape, generator=self._generators[i])
                raw = dist.mean + dist.stddev * noise.to(dist.mean.device)
                log_prob = float(dist.log_prob(raw).sum())
                value = float(policy.predict_values(obs_t).reshape(-1)[0])
            raw_np = raw.cpu().numpy().reshape(self.action_space.shape)
            self._pending.append((obs[i].copy(), raw_np, value, log_prob))
            actions.append(np.clip(raw_np, low, high))
        return np.stack(actions).astype(self.action_space.dtype)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
    ) -> None:
        if len(self._pending) != len(self.models):
            raise RuntimeError("ScratchPPOAgent.observe without a preceding act")
        for i, (o, a, v, lp) in enumerate(self._pending):
            if self._ended[i]:
                continue
            self._episode[i].append((o, a, float(reward[i]), v, lp))
            self._last_obs[i] = np.asarray(next_obs[i]).copy()
            if bool(done[i]):
                self._ended[i] = True
        self._pending = []

    def end_episode(self) -> None:
        np_state = np.random.get_state()
        try:
            for i, model in enumerate(self.models):
                np.random.seed((self.seed + 7919 * i + 104729 * self._updates) % 2**32)
                self._update(model, self._episode[i], self._last_obs[i])
        finally:
            np.random.set_state(np_state)
        self._updates += 1
        self._episode = [[] for _ in self.models]
        self._ended[:] = False

    def _update(
        self,
        model: PPO,
        steps: list[tuple[np.ndarray, np.ndarray, float, float, float]],
        last_obs: np.ndarray | None,
    ) -> None:
        if len(steps) < 2 or last_obs is None:
            return  # nothing to learn from (an episode cut short at once)
        buffer = RolloutBuffer(
            len(steps),
            self.observation_space,
            self.action_space,
            device=model.device,
            gae_lambda=self.cfg.gae_lambda,
            gamma=self.cfg.gamma,
            n_envs=1,
        )
        for t, (o, a, r, v, lp) in enumerate(steps):
            buffer.add(
                o[None],
                a[None],
                np.asarray([r], dtype=np.float32),
                np.asarray([t == 0]),
                torch.as_tensor([v], dtype=torch.float32),
                torch.as_tensor([lp], dtype=torch.float32),
            )
        with torch.no_grad():
            obs_t, _ = model.policy.obs_to_tensor(last_obs[None])
            last_value = model.policy.predict_values(obs_t).reshape(-1)
        # Episodes end by truncation (docs/design.md): bootstrap from the last state's value.
        buffer.compute_returns_and_advantage(last_values=last_value, dones=np.zeros(1))
        model.rollout_buffer = buffer
        model.n_steps = len(steps)
        model.batch_size = min(self.cfg.batch_size, len(steps))
        model._current_progress_remaining = 1.0
        model.policy.set_training_mode(True)
        model.train()
        model.policy.set_training_mode(False)
