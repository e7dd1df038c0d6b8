"""An example task family of your own: Gymnasium's Pendulum with hidden gravity, mass and length.

Everything a family needs to be meta-trained and evaluated by ``metarl`` (docs/byo_family.md):
a frozen ``Task`` dataclass of plain values, a task distribution with ``sample(n, split, rng)``
and disjoint train/test splits, an env whose ``set_task`` pins a task for later resets, a step
``info["success"]``, a registered id with a time limit, and (optional) ``rgb_array`` frames.

It is built the way you would wrap another library's env:
:class:`meta_rl.task_envs.family.TaskWrapper` around Gymnasium's ``PendulumEnv``, writing only
:meth:`HiddenPendulumEnv.apply_task`. Gymnasium draws the pendulum with pygame; this family
draws its own frames with numpy, so videos work without pygame.

Use it from the repository root (the current directory is on the import path)::

    metarl check-env byo/HiddenPendulum-v0 --module examples.hidden_pendulum
    metarl train --config configs/byo_pendulum.yaml
    metarl evaluate --checkpoint runs/<run> num_tasks=8 num_seeds=3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from meta_rl.task_envs.family import TaskWrapper

__all__ = ["ENV_ID", "HiddenPendulumEnv", "PendulumTask", "PendulumTaskDistribution"]

ENV_ID = "byo/HiddenPendulum-v0"


@dataclass(frozen=True)
class PendulumTask:
    """The hidden physics of one task."""

    gravity: float
    """Gravitational acceleration (m/s^2)."""
    mass: float
    """Mass of the bob (kg)."""
    length: float
    """Length of the rod (m)."""

    def features(self) -> np.ndarray:
        """The task as numbers (``reveal_task``, privileged training signals, imitation)."""
        return np.array([self.gravity, self.mass, self.length], dtype=np.float32)


class PendulumTaskDistribution:
    """Uniform tasks; the splits differ in gravity, so the test tasks are really unseen.

    ``train``: gravity in [6, 11); ``test``: gravity in [11, 14]. Mass in [0.6, 1.4] and length
    in [0.7, 1.3] for both.
    """

    GRAVITY = {"train": (6.0, 11.0), "test": (11.0, 14.0)}  # noqa: RUF012

    def sample(self, n: int, split: str, rng: np.random.Generator) -> list[PendulumTask]:
        if split not in self.GRAVITY:
            raise ValueError(f"split: got {split!r}; allowed: {', '.join(self.GRAVITY)}")
        lo, hi = self.GRAVITY[split]
        g = rng.uniform(lo, hi, size=n)
        m = rng.uniform(0.6, 1.4, size=n)
        length = rng.uniform(0.7, 1.3, size=n)
        return [
            PendulumTask(round(float(a), 3), round(float(b), 3), round(float(c), 3))
            for a, b, c in zip(g, m, length, strict=True)
        ]


class HiddenPendulumEnv(TaskWrapper[np.ndarray, np.ndarray]):
    """Swing a pendulum up and hold it, not knowing its gravity, mass or length.

    Observation ``[cos(theta), sin(theta), theta_dot]``, action a torque in ``[-2, 2]`` and the
    reward are Gymnasium's Pendulum-v1. ``info["success"]`` is 1.0 while the pendulum is within
    0.3 rad of upright. Episodes last 200 steps (the registered time limit); resets draw the
    start from the reset seed.

    Arguments: ``split`` (tasks drawn at unpinned resets), ``reveal_task`` (append the task's
    ``features()``, gravity, mass and length, to the observation), ``render_mode`` (None or
    ``"rgb_array"``), ``width`` and ``height`` of the frames. There is no camera, so
    ``camera_name`` is not accepted: leave the evaluation's ``camera_name`` null.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012

    def __init__(
        self,
        split: str = "train",
        render_mode: str | None = None,
        width: int = 160,
        height: int = 160,
        reveal_task: bool = False,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode: got {render_mode!r}; allowed: None, 'rgb_array'")
        # Gymnasium's own render (pygame) is never called: render() below draws the frames.
        super().__init__(
            PendulumEnv(render_mode=render_mode),
            PendulumTaskDistribution(),
            split=split,
            reveal_task=reveal_task,
        )
        self.width, self.height = int(width), int(height)

    def apply_task(self, task: PendulumTask) -> None:
        inner: Any = self.env.unwrapped
        inner.g, inner.m, inner.l = task.gravity, task.mass, task.length

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        theta = float(np.arctan2(obs[1], obs[0]))
        info = {**info, "success": float(abs(theta) < 0.3)}
        return obs, float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """A white frame with the rod (longer for a longer pendulum) and the bob, by numpy."""
        if self.render_mode != "rgb_array":
            return None
        h, w = self.height, self.width
        img = np.full((h, w, 3), 255, dtype=np.uint8)
        theta = float(self.env.unwrapped.state[0])  # type: ignore[attr-defined]
        length = self.task.length if self.task is not None else 1.0
        cx, cy, r = w / 2, h / 2, 0.3 * min(h, w) * length
        yy, xx = np.mgrid[0:h, 0:w]
        for t in np.linspace(0.0, 1.0, 40):  # the rod: disks along it
            x, y = cx + t * r * np.sin(theta), cy - t * r * np.cos(theta)
            img[(xx - x) ** 2 + (yy - y) ** 2 <= 4] = (200, 60, 60)
        bob = (xx - (cx + r * np.sin(theta))) ** 2 + (yy - (cy - r * np.cos(theta))) ** 2
        img[bob <= 36] = (60, 60, 200)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= 9] = (0, 0, 0)
        return img


if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID, entry_point="examples.hidden_pendulum:HiddenPendulumEnv", max_episode_steps=200
    )
