"""Videos: labelled frames, side-by-side clips, MP4s that read back, on the toy and a MuJoCo env."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from helpers.agents import StillAgent
from meta_rl.evaluation.toy import ToyTask, register_toy_env
from meta_rl.evaluation.video import (
    describe_object,
    describe_task,
    label_frame,
    record_trial,
    render_adaptation_video,
    render_episode_video,
    side_by_side,
    write_mp4,
)

torch.set_num_threads(1)
TOY = register_toy_env()


class GoTo:
    """Walks to ``target`` from episode ``from_episode`` on (stands still before)."""

    def __init__(self, target: float, from_episode: int) -> None:
        self.target, self.from_episode = target, from_episode

    def begin_trial(self, num_envs: int) -> None:
        assert num_envs == 1
        self.k = 1

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        assert obs.shape == (1, 1)
        if self.k < self.from_episode:
            return np.zeros((1, 1), dtype=np.float32)
        return np.clip((self.target - obs[:, :1]) / 0.25, -1, 1).astype(np.float32)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
    ) -> None:
        assert reward.shape == (1,) and done.shape == (1,)

    def end_episode(self) -> None:
        self.k += 1


def _read(path: Path) -> list[np.ndarray]:
    with imageio.get_reader(path, format="FFMPEG") as reader:  # type: ignore[attr-defined]
        return [np.asarray(f) for f in reader.iter_data()]  # type: ignore[attr-defined]


def test_label_frame_adds_a_banner_with_text() -> None:
    frame = np.full((64, 300, 3), 200, dtype=np.uint8)
    out = label_frame(frame, ["episode 1/5   success: no", "object: mug"])
    assert out.shape[1] == 300 and out.shape[0] > 64
    banner = out[: out.shape[0] - 64]
    assert (banner > 128).any()  # white text on the dark banner
    np.testing.assert_array_equal(out[-64:], frame)
    small = label_frame(np.zeros((10, 20, 3), dtype=np.uint8), ["x"])
    assert small.shape[1] >= 256  # small frames are upscaled so text stays readable


def test_side_by_side_holds_the_last_frame_of_the_shorter_clip() -> None:
    a = [np.full((4, 6, 3), i, dtype=np.uint8) for i in range(3)]
    b = [np.full((5, 6, 3), 100, dtype=np.uint8)]
    out = side_by_side(a, b)
    assert len(out) == 3
    assert out[2].shape == (5, 6 + 8 + 6, 3)
    assert out[2][0, 0, 0] == 2 and out[2][0, -1, 0] == 100
    with pytest.raises(ValueError, match=r"at least one frame"):
        side_by_side(a, [])


def test_write_mp4_round_trips_odd_sizes(tmp_path: Path) -> None:
    frames = [np.full((33, 47, 3), 20 * i, dtype=np.uint8) for i in range(6)]
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=5)
    back = _read(path)
    assert len(back) == 6
    assert back[0].shape == (34, 48, 3)  # padded to even sizes for yuv420p
    assert back[5][:33, :47].mean() == pytest.approx(100, abs=4)
    with pytest.raises(ValueError, match=r"no frames"):
        write_mp4([], tmp_path / "empty.mp4")


def test_describe_task_finds_the_object() -> None:
    assert describe_task(ToyTask(goal=0.7, object_name="mug")) == "mug"
    from envs.tasks import TaskDistribution

    task = TaskDistribution("pick_place").sample(1, "test", np.random.default_rng(0))[0]
    assert describe_task(task) == task.shape
    assert describe_object(task).startswith(task.shape + ", ")
    assert "friction" in describe_object(task)


def test_record_trial_films_the_chosen_episodes() -> None:
    env = __import__("gymnasium").make(TOY, render_mode="rgb_array", split="test")
    try:
        clips = record_trial(
            GoTo(0.8, from_episode=3),
            env,
            ToyTask(goal=0.8, object_name="mug"),
            num_episodes=3,
            record=[1, 3],
            deterministic=True,
            seed=0,
        )
    finally:
        env.close()
    assert [c.episode for c in clips] == [1, 3]
    assert [len(c.frames) for c in clips] == [11, 11]  # the reset frame and 10 steps
    assert not clips[0].success and clips[1].success
    assert clips[1].success_so_far[0] is False


def test_adaptation_video_shows_episode_1_beside_episode_k(tmp_path: Path) -> None:
    path, success = render_adaptation_video(
        GoTo(-0.7, from_episode=2),
        TOY,
        ToyTask(goal=-0.7, object_name="bottle"),
        tmp_path / "adapt.mp4",
        num_episodes=2,
        env_kwargs={"split": "test"},
        fps=10,
    )
    assert success == [False, True]
    frames = _read(path)
    assert len(frames) == 11
    assert frames[0].shape[1] >= 2 * 256
    assert all(f.std() > 5 for f in frames)
    # The clips differ: the left point stays still while the right one moves to the goal.
    left, right = (
        frames[-1][:, : frames[-1].shape[1] // 2],
        frames[-1][:, frames[-1].shape[1] // 2 :],
    )
    assert np.abs(left.astype(int)[:, : right.shape[1]] - right.astype(int)).mean() > 1


def test_episode_video_of_a_mujoco_arm_is_not_blank(tmp_path: Path) -> None:
    import envs  # noqa: F401  (registers the ids)
    from envs.tasks import TaskDistribution

    task = TaskDistribution("reach").sample(1, "test", np.random.default_rng(0))[0]

    class Random(StillAgent):
        def begin_trial(self, num_envs: int) -> None:
            self.rng = np.random.default_rng(0)

        def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
            return self.rng.uniform(-1, 1, size=(obs.shape[0], 4)).astype(np.float32)

    path, _ = render_episode_video(
        Random(),
        "metarl/Reach-v0",
        task,
        tmp_path / "reach.mp4",
        episode=1,
        num_episodes=5,
        env_kwargs={"split": "test"},
        fps=20,
        size=(160, 120),
    )
    frames = _read(path)
    assert len(frames) == 51  # the reset frame and 50 steps
    assert all(f.std() > 10 for f in frames)
    assert frames[0].shape[1] >= 256
