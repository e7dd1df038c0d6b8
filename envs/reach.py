"""Reach: move the gripper to a hidden goal point."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from envs import rewards as rw
from envs.base import ArmEnv
from envs.scene import Readings

__all__ = ["ReachEnv"]


class ReachEnv(ArmEnv):
    """Reach (``metarl/Reach-v0``): move the gripper to a goal point hidden in the air.

    ## Description
    A 6-joint arm with a parallel-jaw gripper stands at the back of a table with an object on
    it (present but irrelevant here). The goal is a point in the gripper's reach above the table,
    different for every task and hidden from the observation unless ``reveal_task=True``; the
    dense reward reveals it. The object's properties vary with the task as in every variant.

    ## Action Space
    ``Box(-1, 1, (4,), float32)``; values outside are clipped, NaN/inf or a wrong shape raise
    ``ValueError``.

    | index | action | effect |
    |---|---|---|
    | 0, 1, 2 | dx, dy, dz | the grip point's mocap target moves by 0.018 m x value (1) |
    | 3 | gripper | finger position target: -1 fully open (9 cm), +1 closed |

    (1) clipped to the box x in [-0.2, 0.2], y in [-0.25, 0.25], z in [0.02, 0.35] m; the hand
    follows the mocap body through a weld constraint (no inverse kinematics in Python).

    ## Observation Space
    ``Box(-inf, inf, (29,), float32)`` (38 with ``reveal_task``); named slices in
    ``env.unwrapped.obs_slices``:

    | name | dim | meaning |
    |---|---|---|
    | ee_pos | 3 | grip point position (m; the table top is z = 0) |
    | gripper_opening | 1 | distance between the finger pads (m) |
    | finger_contact | 2 | tanh(contact force on each pad / 5 N) |
    | object_pos | 3 | object frame position (m) |
    | object_quat | 4 | object orientation (w, x, y, z), w >= 0 |
    | object_rel_pos | 3 | object_pos - ee_pos |
    | ee_vel | 3 | grip point linear velocity (m/s) |
    | object_linvel | 3 | object linear velocity (m/s) |
    | object_angvel | 3 | object angular velocity (rad/s) |
    | prev_action | 4 | the previous (clipped) action, zeros after reset |
    | goal_pos | 3 | only with reveal_task: the goal |
    | shape_geometry | 3 | only with reveal_task: ``envs.tasks.SHAPE_GEOMETRY`` of the shape |
    | size | 1 | only with reveal_task: object half-width (m) |
    | mass | 1 | only with reveal_task: object mass (kg) |
    | friction | 1 | only with reveal_task: object friction coefficient |

    ## Rewards
    Dense (default): ``reward = reward_reach = reach_weight * (1 - tanh(10 * |ee_pos - goal|))``,
    in [0, reach_weight]. Sparse: ``reward = reward_success = success``.
    ``info["success"] = 1.0`` when ``|ee_pos - goal| < 0.05`` m.

    ## Starting State
    The arm at home (grip point at (-0.02, 0, 0.2), pointing down, gripper open), the object at
    rest at the task's initial pose, zero velocities. Nothing else is random: with the same task
    an episode is deterministic. Without a pinned task, each reset draws a task from ``split``
    with the env's seeded ``np_random``.

    ## Episode End
    No termination. Truncation after 50 steps (15 ms each: 0.75 s), or earlier with
    ``info["physics_error"] = True`` when the physics diverges (the observation stays finite;
    the next reset is clean).

    ## Arguments
    ``split`` ("train"), ``reveal_task`` (False), ``reward_type`` ("dense"), ``render_mode``
    (None or "rgb_array"), ``camera_name`` ("front", "side", "top"), ``width``/``height`` (480),
    ``reach_weight`` (1.0).

    ## Version History
    * v0: initial version.
    """

    variant: ClassVar[str] = "reach"

    def __init__(self, *, reach_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reach_weight = float(reach_weight)

    def dense_terms(
        self, r: Readings, goal: np.ndarray, size: np.ndarray, mirror: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        d = rw.distance(r.ee_pos, goal)
        terms = {"reach": self.reach_weight * rw.closeness(d)}
        return terms, rw.within(d)
