"""Task-aware vector envs, on the tiny task family of helpers/toy_family.py (toy/PointGoal-v0)."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest

from helpers.toy_family import SECTORS, TOY_ID, PointTaskDistribution
from meta_rl.task_envs.vector import (
    TaskSyncVectorEnv,
    make_task_vector_env,
    registered_episode_steps,
)


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
