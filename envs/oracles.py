"""Scripted oracle policies: they see the goal and the object's size (``reveal_task=True``).

Each oracle maps a batch of observations (N, obs_dim), read through the env's named
``obs_slices``, to actions (N, 4); it is stateless, so it also recovers from a dropped object.
Their success rates, asserted in the tests, prove that every task of both splits is solvable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.scene import ACTION_SCALE
from envs.tasks import Task

__all__ = [
    "ORACLES",
    "Oracle",
    "PickPlaceOracle",
    "PushOracle",
    "ReachOracle",
    "evaluate_oracle",
    "make_oracle",
]

_GAIN = 0.5 / ACTION_SCALE  # full speed beyond 3.6 cm from the target
_CARRY_SPEED = 0.5  # the largest action component while carrying
_CONTACT = float(np.tanh(3.0 / 5.0))  # the observed finger_contact of a 3 N press


class Oracle:
    """Base: reads named observation parts; subclasses define ``__call__``."""

    def __init__(self, obs_slices: dict[str, slice]) -> None:
        if "goal_pos" not in obs_slices:
            raise ValueError(
                "obs_slices: the oracle needs the goal: build the env with reveal_task=True"
            )
        self.s = obs_slices

    def part(self, obs: np.ndarray, name: str) -> np.ndarray:
        return obs[:, self.s[name]]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def move(ee: np.ndarray, target: np.ndarray, gripper: np.ndarray) -> np.ndarray:
        """Action moving the grip point toward ``target`` with the gripper command given."""
        xyz = np.clip(_GAIN * (target - ee), -1.0, 1.0)
        return np.concatenate([xyz, gripper[:, None]], axis=1).astype(np.float32)


class ReachOracle(Oracle):
    """Moves the grip point straight to the goal."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(obs)
        return self.move(self.part(obs, "ee_pos"), self.part(obs, "goal_pos"), -np.ones(len(obs)))


class PickPlaceOracle(Oracle):
    """Hovers over the object, descends with the gripper open, closes, then carries the object
    to the goal while both fingers press on it; starts over if it lost the object."""

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(obs)
        ee, obj, goal = (self.part(obs, k) for k in ("ee_pos", "object_pos", "goal_pos"))
        size = self.part(obs, "size")[:, 0]
        contact = self.part(obs, "finger_contact")
        opening = self.part(obs, "gripper_opening")[:, 0]
        # Held: the closed fingers are stopped by the object between them and press on it (one
        # pad's reading may flicker for a step on round objects).
        near = np.linalg.norm(obj - ee, axis=1) < 0.025
        pressed = (contact.max(axis=1) > _CONTACT) & (contact.min(axis=1) > 0.05)
        holding = near & (opening < 2 * size + 0.006) & (pressed | (contact.max(axis=1) > 0.9))
        xy_err = np.linalg.norm(ee[:, :2] - obj[:, :2], axis=1)
        at_object = (xy_err < 0.01) & (np.abs(ee[:, 2] - np.maximum(obj[:, 2], 0.02)) < 0.01)
        above = obj.copy()
        above[:, 2] = obj[:, 2] + size + 0.05
        grasp_point = obj.copy()
        grasp_point[:, 2] = np.maximum(obj[:, 2], 0.02)
        approach = np.where((xy_err < 0.012)[:, None], grasp_point, above)
        target = np.where(holding[:, None], self.carry_target(goal), approach)
        close = holding | at_object
        action = self.move(ee, target, np.where(close, 1.0, -1.0))
        # Carry at most at half speed: a light object can slip out of a grasp that accelerates
        # at full speed (a 20 g L-block with MuJoCo 3.3).
        action[holding, :3] = np.clip(action[holding, :3], -_CARRY_SPEED, _CARRY_SPEED)
        return action

    def carry_target(self, goal: np.ndarray) -> np.ndarray:
        """Where the grip point takes the held object."""
        return goal


class PushOracle(PickPlaceOracle):
    """Grasps the object and drags it over the table (lifted 1 cm) to the goal: a sure way to
    show that every push task is solvable, not a model of pushing with the fingertips."""

    def carry_target(self, goal: np.ndarray) -> np.ndarray:
        target = goal.copy()
        target[:, 2] += 0.01
        return target


ORACLES: dict[str, type[Oracle]] = {
    "metarl/Reach-v0": ReachOracle,
    "metarl/Push-v0": PushOracle,
    "metarl/PickPlace-v0": PickPlaceOracle,
}


def make_oracle(env_id: str, obs_slices: dict[str, slice]) -> Oracle:
    """The oracle of ``env_id`` for observations laid out as ``obs_slices``."""
    if env_id not in ORACLES:
        raise ValueError(f"env_id: got {env_id!r}; allowed: {', '.join(ORACLES)}")
    return ORACLES[env_id](obs_slices)


def evaluate_oracle(
    env_id: str, tasks: Sequence[Task], *, num_threads: int | None = None
) -> np.ndarray:
    """Success (any step of the episode) of the oracle on each task: one batched episode."""
    from envs.batched import make_batched

    env = make_batched(env_id, len(tasks), num_threads=num_threads, reveal_task=True)
    try:
        env.set_tasks(tasks)
        obs, _ = env.reset(seed=0)
        oracle = make_oracle(env_id, env.obs_slices)
        success = np.zeros(len(tasks), dtype=bool)
        for _ in range(env.max_episode_steps):
            obs, _, _, _, info = env.step(oracle(obs))
            success |= info["success"] > 0
        return success
    finally:
        env.close()
