"""A tiny task family for the tests; importing this module registers it.

``toy/PointGoal-v0``: a point in the plane moves by ``0.1 * action`` per step; the task is a
hidden goal on a circle of radius 0.8; the reward is minus the distance to the goal. Train and
test goals come from alternating angular sectors, so the test split is really held out.
A run in a subprocess finds it as ``env.module: helpers.toy_family`` with tests/ on the path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

TOY_ID = "toy/PointGoal-v0"
SECTORS = 8


@dataclass(frozen=True)
class PointTask:
    goal_x: float
    goal_y: float


class PointTaskDistribution:
    def sample(self, n: int, split: str, rng: np.random.Generator) -> list[PointTask]:
        if split not in ("train", "test"):
            raise ValueError(f"split: got {split!r}; allowed: 'train', 'test'")
        sector = rng.integers(0, SECTORS // 2, size=n) * 2 + (split == "test")
        angle = (sector + rng.uniform(0.0, 1.0, size=n)) * (2 * math.pi / SECTORS)
        return [PointTask(0.8 * math.cos(a), 0.8 * math.sin(a)) for a in angle]


class PointGoalEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """2-D point, hidden goal (the task), reward -distance, success within 0.1 of the goal."""

    def __init__(
        self, split: str = "train", nan_reward: bool = False, end_at: int | None = None
    ) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.task_distribution = PointTaskDistribution()
        self.split = split
        self.nan_reward = nan_reward
        self.end_at = end_at  # truncate early at this step (like a physics error)
        self._t = 0
        self._task: PointTask | None = None
        self._goal = np.zeros(2)
        self._pos = np.zeros(2)

    def set_task(self, task: PointTask) -> None:
        self._task = task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        task = self._task or self.task_distribution.sample(1, self.split, self.np_random)[0]
        self._goal = np.array([task.goal_x, task.goal_y])
        self._pos = self.np_random.uniform(-0.05, 0.05, size=2)
        self._t = 0
        return self._pos.astype(np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._pos = np.clip(self._pos + 0.1 * a, -1.0, 1.0)
        dist = float(np.linalg.norm(self._pos - self._goal))
        reward = float("nan") if self.nan_reward else -dist
        self._t += 1
        early = self.end_at is not None and self._t == self.end_at
        info = {"success": float(dist < 0.1), "physics_error": early}
        return self._pos.astype(np.float32), reward, False, early, info


if TOY_ID not in gymnasium.registry:
    gymnasium.register(TOY_ID, entry_point=PointGoalEnv, max_episode_steps=20)  # type: ignore[arg-type]
