"""Push: slide the object over the table to a hidden goal."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import numpy as np

from envs import rewards as rw
from envs.base import ArmEnv
from envs.scene import Readings

__all__ = ["PUSH_TARGETS", "PushEnv"]

PushTarget = Literal["goal", "either_side", "inward"]
PUSH_TARGETS: tuple[str, ...] = get_args(PushTarget)


class PushEnv(ArmEnv):
    """Push (``metarl/Push-v0``): move the object over the table to a hidden goal.

    ## Description
    The scene, action and observation of :class:`envs.reach.ReachEnv` (see its tables). The
    goal lies on the table (at the object's resting height), at least 8 cm from the object's
    start; it is hidden from the observation unless ``reveal_task=True``. Object shape, size,
    mass and friction vary with the task; friction against the table changes how it slides.

    ## Rewards
    Dense (default), the sum of

    * ``reward_reach = reach_weight * (1 - tanh(reach_scale * |ee_pos - object_pos|))``
    * ``reward_push = push_weight * (1 - tanh(10 * |object_xy - target_xy|))``, the target
      the goal (``push_target="goal"``) or, with ``push_target="either_side"``, the goal or its
      mirror image through the object's start, whichever is nearer the object, or with
      ``push_target="inward"`` whichever of the two is nearer the table's centre line (y = 0)
    * ``reward_success = success_weight * success`` (paid on every step the object is at goal)

    in [0, reach_weight + push_weight + success_weight] = [0, 7] by default. The reach term is
    as heavy as the push term and reaches far (``reach_scale`` 5/m: 0.28 at the start, 18 cm
    above the object, against 0.05 with 10/m): without it a random policy touches the object
    in about 5% of episodes and PPO never finds the push term. The success term makes
    finishing worth more than anything else: without it, hovering at the object (reach term
    near 1 on every step) paid about as much as pushing it to the goal, and agents trained
    longer learnt to hover (measured in ``docs/envs.md``).
    With ``side_goals`` (the goal left or right of the object, the side a hidden coin flip) the
    "either_side" and "inward" targets say nothing about the side: only the success term tells
    it, and only once the object gets there, so an agent that guessed wrong learns the side in
    its first episode and can use it in the next. "inward" (the meta-RL benchmark of
    ``configs/ablations``) points to the inner side, which is the goal in half the tasks; as
    objects start on both sides of the centre line, it rewards pushes both ways. With
    "either_side" agents settled on one side and never learnt the other push; with "inward"
    one 100-step run learnt both and one 50-step run did not (measured in ``docs/envs.md``
    and ``docs/maml.md``).
    Sparse: ``reward_success = success``.
    ``info["success"] = 1.0`` when the object's centre is within 0.05 m of the goal in the
    horizontal plane.

    ## Starting State, Episode End
    As in Reach, with truncation after 100 steps (1.5 s).

    ## Arguments
    The shared ones (see Reach) and ``reach_weight`` (1.0), ``push_weight`` (1.0),
    ``success_weight`` (5.0), ``reach_scale`` (5.0, 1/m), ``push_target`` ("goal",
    "either_side" or "inward"), ``goal_sector`` (None: goals in any direction from the
    object; degrees: within that angle of +x, away from the arm), ``side_goals`` (None;
    metres: the goal that far left or right of the object's start).

    ## Version History
    * v0: initial version (reach term: weight 1.0 and scale 5/m, was 0.2 and 10/m before the
      first release; success term added, weight 5; ``push_target`` and ``side_goals`` added).
    """

    variant: ClassVar[str] = "push"

    def __init__(
        self,
        *,
        reach_weight: float = 1.0,
        push_weight: float = 1.0,
        success_weight: float = 5.0,
        reach_scale: float = 5.0,
        push_target: PushTarget = "goal",
        **kwargs: Any,
    ) -> None:
        if not reach_scale > 0:
            raise ValueError(f"reach_scale: got {reach_scale!r}; allowed: a number > 0 (1/m)")
        if push_target not in PUSH_TARGETS:
            raise ValueError(
                f"push_target: got {push_target!r}; allowed: {', '.join(PUSH_TARGETS)}"
            )
        super().__init__(**kwargs)
        self.reach_weight = float(reach_weight)
        self.push_weight = float(push_weight)
        self.success_weight = float(success_weight)
        self.reach_scale = float(reach_scale)
        self.push_target = push_target

    def dense_terms(
        self, r: Readings, goal: np.ndarray, size: np.ndarray, mirror: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        d_xy = rw.distance(r.object_pos[:, :2], goal[:, :2])
        success = rw.within(d_xy)
        d_target = d_xy
        if self.push_target != "goal":
            d_mirror = rw.distance(r.object_pos[:, :2], mirror[:, :2])
            if self.push_target == "either_side":
                d_target = np.minimum(d_xy, d_mirror)
            else:  # inward: the one nearer the centre line
                goal_inward = np.abs(goal[:, 1]) <= np.abs(mirror[:, 1])
                d_target = np.where(goal_inward, d_xy, d_mirror)
        terms = {
            "reach": self.reach_weight
            * rw.closeness(rw.distance(r.ee_pos, r.object_pos), self.reach_scale),
            "push": self.push_weight * rw.closeness(d_target),
            "success": self.success_weight * success,
        }
        return terms, success
