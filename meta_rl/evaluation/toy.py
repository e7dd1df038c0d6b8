"""A tiny task family (1-D reaching) that follows the TaskEnv protocol of docs/design.md.

It exists so the evaluation protocol, the baselines and the video pipeline can be checked in
milliseconds without MuJoCo, the way Stable-Baselines3 ships ``IdentityEnv`` for its own tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["TOY_ENV_ID", "ToyReachEnv", "ToyTask", "ToyTaskDistribution", "register_toy_env"]

TOY_ENV_ID = "metarl-toy/Reach1D-v0"


@dataclass(frozen=True)
class ToyTask:
    """A goal position on the line, and a name standing in for the object of the arm tasks."""

    goal: float
    object_name: str

    def features(self) -> np.ndarray:
        """The task as numbers (privileged training signals, imitation): the goal."""
        return np.array([self.goal], dtype=np.float32)


class ToyTaskDistribution:
    """Goals with ``0.2 <= |goal| <= 0.6`` in the train split and ``0.6 < |goal| <= 1`` in test.

    Splits listed in ``empty_splits`` hold no tasks (to exercise the error path).
    """

    SPLITS = ("train", "test")

    def __init__(self, empty_splits: tuple[str, ...] = ()) -> None:
        self.empty_splits = tuple(empty_splits)

    def sample(self, n: int, split: str, rng: np.random.Generator) -> list[ToyTask]:
        if split not in self.SPLITS:
            raise ValueError(f"split: got {split!r}; allowed: {', '.join(self.SPLITS)}")
        if split in self.empty_splits:
            return []
        lo, hi = (0.2, 0.6) if split == "train" else (0.6, 1.0)
        size = rng.uniform(lo, hi, size=n)
        sign = rng.choice(np.array([-1.0, 1.0]), size=n)
        names = ("cube", "ball") if split == "train" else ("mug", "bottle")
        return [
            ToyTask(goal=float(s * g), object_name=names[i % 2])
            for i, (s, g) in enumerate(zip(sign, size, strict=True))
        ]


class ToyReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """Move a point along a line to a hidden goal.

    Observation: ``[x]`` (``[x, goal]`` when ``reveal_task``). Action: a velocity in ``[-1, 1]``,
    ``x <- clip(x + 0.25 * a, -1.5, 1.5)``. Reward: ``-|x - goal|`` (``reward_distance``), or
    ``success - 1`` when ``reward_type="sparse"``. Success: ``|x - goal| < 0.05``. Episodes are
    truncated after ``max_episode_steps`` (10 when registered); the start is ``x ~ U(-0.02, 0.02)``.
    Without a pinned task each reset draws one from the construction ``split``. With
    ``diverge_above`` set, episodes of tasks whose goal exceeds it end after 3 steps with
    ``truncated=True`` and ``info["physics_error"] = True`` (the early-end path of the arm envs).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(
        self,
        split: str = "train",
        reveal_task: bool = False,
        reward_type: str = "dense",
        render_mode: str | None = None,
        empty_splits: tuple[str, ...] = (),
        diverge_above: float | None = None,
    ) -> None:
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type: got {reward_type!r}; allowed: 'dense', 'sparse'")
        self.split = split
        self.reveal_task = reveal_task
        self.reward_type = reward_type
        self.render_mode = render_mode
        self.task_distribution = ToyTaskDistribution(empty_splits)
        self.diverge_above = diverge_above
        self._steps = 0
        dim = 2 if reveal_task else 1
        self.observation_space = spaces.Box(-2.0, 2.0, shape=(dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._pinned: ToyTask | None = None
        self._task: ToyTask | None = None
        self._x = 0.0

    def set_task(self, task: ToyTask) -> None:
        self._pinned = task

    def _obs(self) -> np.ndarray:
        assert self._task is not None
        values = [self._x, self._task.goal] if self.reveal_task else [self._x]
        return np.asarray(values, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self._pinned is not None:
            self._task = self._pinned
        else:
            self._task = self.task_distribution.sample(1, self.split, self.np_random)[0]
        self._x = float(self.np_random.uniform(-0.02, 0.02))
        self._steps = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._task is None:
            raise RuntimeError("call reset() before step()")
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        self._x = float(np.clip(self._x + 0.25 * a, -1.5, 1.5))
        dist = abs(self._x - self._task.goal)
        success = float(dist < 0.05)
        reward = -dist if self.reward_type == "dense" else success - 1.0
        self._steps += 1
        diverged = (
            self.diverge_above is not None
            and self._task.goal > self.diverge_above
            and self._steps >= 3
        )
        info = {"success": success, "reward_distance": reward, "physics_error": diverged}
        return self._obs(), reward, False, diverged, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        img = np.full((48, 96, 3), 235, dtype=np.uint8)
        img[22:26, 4:92] = 120  # the line from -1.5 to 1.5

        def col(x: float) -> int:
            return int(np.clip(round(4 + (x + 1.5) / 3.0 * 87), 4, 91))

        if self._task is not None:
            g = col(self._task.goal)
            img[14:34, max(g - 1, 0) : g + 2] = (40, 160, 40)
        p = col(self._x)
        img[18:30, max(p - 3, 0) : p + 4] = (200, 40, 40)
        return img


def register_toy_env() -> str:
    """Register the toy family (once) and return its id."""
    if TOY_ENV_ID not in gym.registry:
        gym.register(
            id=TOY_ENV_ID, entry_point="meta_rl.evaluation.toy:ToyReachEnv", max_episode_steps=10
        )
    return TOY_ENV_ID


register_toy_env()  # importing the module registers the id, so env.module can name it
