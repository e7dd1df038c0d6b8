"""Pick-place: grasp the object, lift it and hold it at a hidden goal in the air."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from envs import rewards as rw
from envs.base import ArmEnv
from envs.scene import Readings

__all__ = ["LIFT_HEIGHT", "PickPlaceEnv"]

LIFT_HEIGHT = 0.04
"""Metres above its resting height at which the lift term saturates."""


class PickPlaceEnv(ArmEnv):
    """Pick-place (``metarl/PickPlace-v0``): grasp the object and bring it to a goal in the air.

    ## Description
    The scene, action and observation of :class:`envs.reach.ReachEnv` (see its tables). The goal
    lies 6 to 22 cm above the object's resting height and at least 8 cm (horizontally) from its
    start, so the object must be lifted; it is hidden unless ``reveal_task=True``. The object's
    shape (box, cylinder, sphere, capsule, ellipsoid, L block, T block), size, mass and friction
    vary with the task (``envs.tasks``); every shape is ``2 * size`` wide across the gripper.

    ## Rewards
    Dense (default): staged, the sum of

    * ``reward_reach = reach_weight * (1 - tanh(10 * |ee_pos - object_pos|))``
    * ``reward_grasp = grasp_weight * grasped``, grasped = both finger pads press with > 0.5 N
    * ``reward_lift = lift_weight * grasped * clip((object_z - size) / 0.04, 0, 1)``
    * ``reward_place = place_weight * (1 - tanh(place_scale * |object_pos - goal|))``

    in [0, 1] with the default weights. With the default ``place_scale`` (10/m) the place term
    is 0.14 at 10 cm from the goal and flat beyond about 25 cm (0.008 at 25 cm, 0.003 at 30 cm):
    with the goal hidden, the reward then tells the distance to it only near it. A smaller
    ``place_scale`` (e.g. 3/m: 0.43 at 10 cm, 0.22 at 25 cm, 0.10 at 40 cm) makes the distance
    readable across the workspace, so that a few readings locate the goal, at the cost of a
    flatter peak and of paying an object left on the table about as much as grasping and
    lifting it (a revealed-goal run with 3/m learnt nothing in 9.3M env steps;
    docs/notes/2026-12-02-pick-place.md). Sparse: ``reward_success = success``.
    ``info["success"] = 1.0`` when the object's centre is within 0.05 m of the goal.

    ## Starting State, Episode End
    As in Reach, with truncation after 150 steps (2.25 s).

    ## Arguments
    The shared ones (see Reach) and ``reach_weight`` (0.1), ``grasp_weight`` (0.15),
    ``lift_weight`` (0.15), ``place_weight`` (0.6), ``place_scale`` (10.0, 1/m).

    ## Version History
    * v0: initial version; ``place_scale`` added (default: the first release's 10/m).
    """

    variant: ClassVar[str] = "pick_place"

    def __init__(
        self,
        *,
        reach_weight: float = 0.1,
        grasp_weight: float = 0.15,
        lift_weight: float = 0.15,
        place_weight: float = 0.6,
        place_scale: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if not place_scale > 0:
            raise ValueError(f"place_scale: got {place_scale!r}; allowed: a number > 0 (1/m)")
        super().__init__(**kwargs)
        self.reach_weight = float(reach_weight)
        self.grasp_weight = float(grasp_weight)
        self.lift_weight = float(lift_weight)
        self.place_weight = float(place_weight)
        self.place_scale = float(place_scale)

    def dense_terms(
        self, r: Readings, goal: np.ndarray, size: np.ndarray, mirror: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        obj = r.object_pos
        held = rw.grasped(r.touch)
        height = np.minimum(np.maximum((obj[:, 2] - size) * (1.0 / LIFT_HEIGHT), 0.0), 1.0)
        d_goal = rw.distance(obj, goal)
        terms = {
            "reach": self.reach_weight * rw.closeness(rw.distance(r.ee_pos, obj)),
            "grasp": self.grasp_weight * held,
            "lift": (self.lift_weight * held) * height,
            "place": self.place_weight * rw.closeness(d_goal, self.place_scale),
        }
        return terms, rw.within(d_goal)
