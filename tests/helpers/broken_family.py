"""A task family with every gap ``metarl check-env`` names; importing this module registers it.

``checker/Broken-v0`` follows the task protocol on paper, but ignores its tasks and its seeds,
reports no ``info["success"]`` and cannot render; its registered time limit is 20 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

BROKEN_ID = "checker/Broken-v0"


@dataclass(frozen=True)
class _Task:
    goal: float


class _Dist:
    def sample(self, n: int, split: str, rng: np.random.Generator) -> list[_Task]:
        return [_Task(float(g)) for g in rng.uniform(-1, 1, size=n)]


class BrokenEnv(gym.Env[np.ndarray, np.ndarray]):
    """Follows the protocol on paper, but ignores its tasks and its seeds, reports no success
    and cannot render."""

    def __init__(self, split: str = "train") -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.task_distribution = _Dist()
        self._x = 0.0

    def set_task(self, task: Any) -> None:
        pass  # the task is never applied

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._x = 0.0  # the seed is ignored
        return np.array([self._x], dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._x += float(action[0])
        return np.array([self._x], dtype=np.float32), -abs(self._x), False, False, {}


if BROKEN_ID not in gym.registry:
    gym.register(BROKEN_ID, entry_point=BrokenEnv, max_episode_steps=20)  # type: ignore[arg-type]
