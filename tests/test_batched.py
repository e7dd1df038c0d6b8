"""The batched simulator: equal to N single envs step for step, autoreset, tasks, errors."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import envs
from envs.batched import BatchedArmEnv
from envs.tasks import Task

torch.set_num_threads(1)


def _singles_step(
    singles: list[Any], actions: np.ndarray, pending: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Step N single envs with next-step autoreset, as a SyncVectorEnv would."""
    obs: list[np.ndarray] = []
    rewards: list[float] = []
    truncs: list[bool] = []
    infos: list[dict[str, Any]] = []
    for i, env in enumerate(singles):
        info: dict[str, Any] = {}
        if pending[i]:
            o, _ = env.reset()
            r, tr = 0.0, False
        else:
            o, r, _, tr, info = env.step(actions[i])
        obs.append(o)
        rewards.append(float(r))
        truncs.append(bool(tr))
        infos.append(info)
    return np.array(obs), np.array(rewards), np.array(truncs), infos


@pytest.mark.parametrize(
    ("env_id", "steps", "kwargs"),
    [
        ("metarl/Reach-v0", 110, {}),  # two autoresets
        ("metarl/PickPlace-v0", 60, {"reveal_task": True}),
        ("metarl/Push-v0", 40, {"reward_type": "sparse"}),
        ("metarl/Push-v0", 40, {"side_goals": 0.1, "push_target": "either_side"}),
        ("metarl/Push-v0", 40, {"side_goals": 0.12, "push_target": "inward"}),
    ],
)
def test_batched_equals_single_envs(env_id: str, steps: int, kwargs: dict) -> None:
    n = 4
    batched = envs.make_batched(env_id, n, num_threads=2, **kwargs)
    singles: list[Any] = [gym.make(env_id, **kwargs) for _ in range(n)]
    pinned = Task("t_block", 0.03, 0.3, 0.5, (0.05, 0.05), 0.2, (0.0, -0.05, 0.15))
    batched.set_tasks([None, pinned, None, pinned])
    singles[1].unwrapped.set_task(pinned)
    singles[3].unwrapped.set_task(pinned)
    obs, _ = batched.reset(seed=11)
    single_obs = np.array([env.reset(seed=11 + i)[0] for i, env in enumerate(singles)])
    np.testing.assert_allclose(obs, single_obs, rtol=0, atol=0)
    rng = np.random.default_rng(0)
    pending = np.zeros(n, dtype=bool)
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
        obs, reward, terminated, truncated, info = batched.step(actions)
        s_obs, s_reward, s_trunc, s_infos = _singles_step(singles, actions, pending)
        np.testing.assert_allclose(obs, s_obs, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(reward, s_reward, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(truncated, s_trunc)
        assert not terminated.any()
        for i, s_info in enumerate(s_infos):
            for key, value in s_info.items():
                assert info[f"_{key}"][i]
                np.testing.assert_allclose(info[key][i], value, rtol=1e-12, atol=1e-12)
        pending = s_trunc
    assert batched.tasks[1] == pinned and batched.tasks[3] == pinned
    assert all(t == e.unwrapped.task for t, e in zip(batched.tasks, singles, strict=True))
    batched.close()


def test_vector_api_and_info_keys() -> None:
    env = envs.make_batched("metarl/PickPlace-v0", 3)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.observation_space.shape == (3, 29) and env.action_space.shape == (3, 4)
    assert env.task_distribution.variant == "pick_place"
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert reward.shape == terminated.shape == truncated.shape == (3,)
    single = gym.make("metarl/PickPlace-v0")
    single.reset(seed=0)
    _, _, _, _, single_info = single.step(np.zeros(4, dtype=np.float32))
    assert {k for k in info if not k.startswith("_")} == set(single_info)
    for key in single_info:
        assert info[key].shape == (3,) and info["_" + key].all()
    env.close()


def test_fixed_length_and_next_step_autoreset() -> None:
    env = envs.make_batched("metarl/Reach-v0", 2, max_episode_steps=5)
    env.reset(seed=0)
    first = list(env.tasks)
    for _ in range(4):
        *_, truncated, _ = env.step(np.zeros((2, 4)))
        assert not truncated.any()
    *_, truncated, _ = env.step(np.zeros((2, 4)))
    assert truncated.all()
    obs, reward, _, truncated, info = env.step(np.ones((2, 4)))  # the reset step
    assert not truncated.any() and (reward == 0).all() and not info["_success"].any()
    np.testing.assert_array_equal(obs[:, env.obs_slices["prev_action"]], 0)
    assert env.tasks != first  # unpinned: fresh tasks drawn
    env.close()


def test_thread_count_does_not_change_results() -> None:
    results = []
    for threads in (0, 1, 3):
        env = envs.make_batched("metarl/Push-v0", 5, num_threads=threads)
        obs, _ = env.reset(seed=4)
        rng = np.random.default_rng(1)
        for _ in range(20):
            obs, *_ = env.step(rng.uniform(-1, 1, (5, 4)))
        results.append(obs)
        env.close()
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_physics_error_in_one_sub_env() -> None:
    env = envs.make_batched("metarl/PickPlace-v0", 3)
    env.reset(seed=0)
    qvel = env.qvel_slice
    env.state[1, qvel] = 1e12
    obs, reward, _, truncated, info = env.step(np.zeros((3, 4)))
    np.testing.assert_array_equal(truncated, [False, True, False])
    np.testing.assert_array_equal(info["physics_error"], [False, True, False])
    assert np.isfinite(obs).all() and np.isfinite(reward).all() and reward[1] == 0
    obs, _, _, truncated, info = env.step(np.zeros((3, 4)))  # sub-env 1 is reset, not stepped
    np.testing.assert_array_equal(info["_success"], [True, False, True])
    assert not truncated.any() and np.isfinite(obs).all()
    _, _, _, truncated, info = env.step(np.zeros((3, 4)))
    assert not info["physics_error"].any() and not truncated.any()
    assert np.abs(env.state[:, qvel]).max() < 10
    env.close()


def test_bad_inputs() -> None:
    env = envs.make_batched("metarl/Reach-v0", 2)
    with pytest.raises(RuntimeError, match=r"call envs\.reset\(\) first"):
        env.step(np.zeros((2, 4)))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected shape \(2, 4\); got shape \(4,\)"):
        env.step(np.zeros(4))
    with pytest.raises(ValueError, match=r"expected finite values of shape \(2, 4\)"):
        env.step(np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match=r"tasks: got 3 tasks; expected one per sub-env \(2\)"):
        env.set_tasks([None, None, None])
    with pytest.raises(ValueError, match=r"env_id: got 'metarl/Fly-v0'; allowed: metarl/Reach-v0"):
        envs.make_batched("metarl/Fly-v0", 2)
    with pytest.raises(ValueError, match=r"num_envs: got 0; allowed: an integer >= 1"):
        envs.make_batched("metarl/Reach-v0", 0)
    env.close()


def test_render_one_frame_per_sub_env() -> None:
    env = envs.make_batched("metarl/PickPlace-v0", 2, render_mode="rgb_array", width=64, height=48)
    assert isinstance(env, BatchedArmEnv)
    env.set_tasks(
        [
            Task("box", 0.03, 0.1, 1.0, (0.05, -0.1), 0.0, (0.0, 0.0, 0.2)),
            Task("sphere", 0.03, 0.1, 1.0, (0.05, 0.1), 0.0, (0.0, 0.0, 0.2)),
        ]
    )
    env.reset(seed=0)
    frames = env.render()
    assert frames is not None and len(frames) == 2
    assert frames[0].shape == (48, 64, 3) and not np.array_equal(frames[0], frames[1])
    env.close()


def test_goal_sector_reaches_single_and_batched_envs() -> None:
    single = gym.make("metarl/Push-v0", goal_sector=30)
    batched = envs.make_batched("metarl/Push-v0", 4, goal_sector=30)
    single.reset(seed=0)
    batched.reset(seed=0)
    tasks = [single.unwrapped.task, *batched.tasks]  # type: ignore[attr-defined]
    for task in tasks:
        dx, dy = task.goal[0] - task.object_xy[0], task.goal[1] - task.object_xy[1]
        assert abs(np.degrees(np.arctan2(dy, dx))) <= 30.0
    with pytest.raises(ValueError, match="goal_sector"):
        gym.make("metarl/Reach-v0", goal_sector=30)
    batched.close()
