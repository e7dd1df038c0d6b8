"""The MuJoCo pick-and-place task family: ``import envs`` registers the Gymnasium ids.

``metarl/Reach-v0``, ``metarl/Push-v0`` and ``metarl/PickPlace-v0`` (string entry points);
``gymnasium.make_vec`` on them builds the batched simulator (:func:`envs.make_batched`) unless
another ``vectorization_mode`` is asked for.
"""

from __future__ import annotations

import os

# Headless machines: render offscreen through EGL unless the user chose a backend (this must be
# set before mujoco is first imported).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from envs.tasks import SHAPES, SPLITS, Task, TaskDistribution

if TYPE_CHECKING:
    from envs.batched import BatchedArmEnv

__all__ = ["ENV_IDS", "SHAPES", "SPLITS", "Task", "TaskDistribution", "make_batched"]

ENV_IDS: dict[str, tuple[str, int]] = {
    "metarl/Reach-v0": ("envs.reach:ReachEnv", 50),
    "metarl/Push-v0": ("envs.push:PushEnv", 100),
    "metarl/PickPlace-v0": ("envs.pick_place:PickPlaceEnv", 150),
}
"""Registered id -> (entry point, max_episode_steps)."""

for _env_id, (_entry, _steps) in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point=_entry,
            vector_entry_point="envs.batched:vector_entry_point_" + _entry.split(":")[1],
            max_episode_steps=_steps,
        )


def make_batched(
    env_id: str, num_envs: int, *, num_threads: int | None = None, **env_kwargs: Any
) -> BatchedArmEnv:
    """The batched simulator of ``env_id`` with ``num_envs`` sub-envs (see envs.batched)."""
    from envs.batched import make_batched as _make

    return _make(env_id, num_envs, num_threads=num_threads, **env_kwargs)
