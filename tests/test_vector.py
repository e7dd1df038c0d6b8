"""Task-aware vector envs, with a tiny task family written here (also used by other tests).

``toy/PointGoal-v0``: a point in the plane moves by ``0.1 * action`` per step; the task is a
hidden goal on a circle of radius 0.8; the reward is minus the distance to the goal. Train and
test goals come from alternating angular sectors, so the test split is really held out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from meta_rl.task_envs.vector import (
    TaskSyncVectorEnv,
    make_task_vector_env,
    registered_episode_steps,
)

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


def test_toy_env_follows_gymnasium_api() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(gymnasium.make(TOY_ID).unwrapped, skip_render_check=True)


def test_make_task_vector_env_wraps_any_family_and_pins_tasks() -> None:
    venv = make_task_vector_env(TOY_ID, 3, seed=0)
    assert isinstance(venv, TaskSyncVectorEnv)
    assert registered_episode_steps(TOY_ID) == 20
    tasks = venv.task_distribution.sample(3, "test", np.random.default_rng(0))
    venv.set_tasks(tasks)
    venv.reset(seed=1)
    # Moving towards each pinned goal raises each reward: the tasks reached the sub-envs.
    goals = np.array([[t.goal_x, t.goal_y] for t in tasks])
    _, r0, *_ = venv.step(np.zeros((3, 2), dtype=np.float32))
    _, r1, *_ = venv.step((goals / np.linalg.norm(goals, axis=1, keepdims=True)).astype(np.float32))
    assert np.all(r1 > r0)
    venv.close()


def test_our_ids_use_the_batched_simulator_unless_asked_not_to() -> None:
    import envs

    venv = make_task_vector_env("metarl/Reach-v0", 2)
    assert type(venv).__name__ == "BatchedArmEnv"
    venv.close()
    plain = make_task_vector_env("metarl/Reach-v0", 2, batched=False)
    assert isinstance(plain, TaskSyncVectorEnv)
    assert isinstance(plain.task_distribution, envs.TaskDistribution)
    plain.close()


def test_set_tasks_refuses_wrong_count() -> None:
    venv = make_task_vector_env(TOY_ID, 2)
    tasks = venv.task_distribution.sample(3, "train", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"got 3 tasks for 2 envs"):
        venv.set_tasks(tasks)
    venv.close()


def test_env_without_task_protocol_is_refused_with_fix() -> None:
    with pytest.raises(ValueError, match=r"lacks task_distribution, set_task"):
        make_task_vector_env("Pendulum-v1", 1)


def test_train_and_test_splits_are_disjoint() -> None:
    dist = PointTaskDistribution()
    rng = np.random.default_rng(0)

    def sectors(split: str) -> set[int]:
        tasks = dist.sample(200, split, rng)
        angles = [math.atan2(t.goal_y, t.goal_x) % (2 * math.pi) for t in tasks]
        return {int(a // (2 * math.pi / SECTORS)) for a in angles}

    assert sectors("train").isdisjoint(sectors("test"))
