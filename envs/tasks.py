"""Tasks of the pick-and-place family: the object (shape, size, mass, friction), its initial pose
and the goal; the train/test distributions over them.

A :class:`Task` is a frozen dataclass of plain values, validated on construction. A
:class:`TaskDistribution` samples tasks for one variant (``"reach"``, ``"push"`` or
``"pick_place"``) from a split: the test split holds objects never seen in training (shape classes
held out of training, and sizes, masses and frictions outside the training ranges).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GOAL_BOUNDS",
    "OBJECT_XY_BOUNDS",
    "SHAPES",
    "SHAPE_GEOMETRY",
    "SPLITS",
    "VARIANTS",
    "SplitSpec",
    "Task",
    "TaskDistribution",
]

SHAPES: tuple[str, ...] = (
    "box",
    "cylinder",
    "sphere",
    "capsule",
    "ellipsoid",
    "l_block",
    "t_block",
)
"""Object shape classes; ``Task.shape`` is one of them."""

SHAPE_GEOMETRY: dict[str, tuple[float, float, float]] = {
    "box": (1.0, 0.0, 1.0),
    "cylinder": (1.0, 2.0 / 3.0, math.pi / 4.0),
    "sphere": (1.0, 1.0, math.pi / 6.0),
    "capsule": (2.2, 1.0, (2.4 * math.pi + 4.0 / 3.0 * math.pi) / 17.6),
    "ellipsoid": (1.4, 1.0, math.pi / 6.0),
    "l_block": (1.25, 0.0, 0.7),
    "t_block": (1.5, 0.0, 2.0 / 3.0),
}
"""Each shape as three numbers (the shape part of :meth:`Task.features`, the revealed and
privileged task information): elongation (the body's largest bounding-box half-extent over
``size``), roundness (the curved share of its surface) and fill (its volume over its bounding
box's), computed from the geoms of ``envs/scene.py`` (``tests/test_tasks.py`` checks them).

Not a one-hot: the test split's shapes (ellipsoid, t-block) never occur in training, so a
one-hot gives them an input that was constant zero during training (a running normaliser then
sends it to its clip, 10 standard deviations); here each test shape lies inside the training
shapes' range in every number (ellipsoid: elongated like the box-to-capsule range, round and
filled like the sphere; t-block: like the l-block)."""

VARIANTS: tuple[str, ...] = ("reach", "push", "pick_place")

# Physically supported ranges (validation): every object of these ranges fits the gripper.
SIZE_LIMITS = (0.01, 0.04)
MASS_LIMITS = (0.005, 2.0)
FRICTION_LIMITS = (0.05, 3.0)
OBJECT_XY_BOUNDS = ((-0.2, 0.2), (-0.25, 0.25))
"""Allowed initial (x, y) of the object, metres (table frame: the table top is z = 0)."""
GOAL_BOUNDS = ((-0.2, 0.2), (-0.25, 0.25), (0.0, 0.35))
"""Allowed goal positions, metres: the reach of the gripper above the table."""

# Sampling regions (inside the bounds above).
_OBJECT_XY_REGION = ((-0.08, 0.1), (-0.12, 0.12))
_OBJECT_YAW_RANGE = (-0.25, 0.25)
_REACH_GOAL_REGION = ((-0.12, 0.14), (-0.18, 0.18), (0.04, 0.28))
_PLACE_GOAL_XY_REGION = ((-0.08, 0.1), (-0.12, 0.12))
_PLACE_GOAL_HEIGHT = (0.06, 0.22)  # above the object's resting height, up to an absolute 0.22 + s
_MIN_GOAL_DISTANCE = 0.08  # push / pick-place goals lie this far (xy) from the object's start
_SIDE_GOAL_LIMITS = (0.08, 0.15)  # allowed side_goals distances, metres
_SIDE_GOAL_Y = 0.16  # |y| of both side goals (the goal and its mirror image) stays within this
_GOAL_TRIES = 64  # goal draws per object pose before the pose is redrawn


@dataclass(frozen=True)
class Task:
    """One task: the object and where it starts, and the goal.

    Fields:
        shape: object shape class, one of :data:`SHAPES`.
        size: half-width of the object across the gripper's closing axis, metres (every shape is
            ``2 * size`` wide there and rests with its centre at height ``size``), in [0.01, 0.04].
        mass: object mass, kg, in [0.005, 2].
        friction: sliding friction coefficient of the object's surface, in [0.05, 3].
        object_xy: initial (x, y) of the object on the table, metres, within
            :data:`OBJECT_XY_BOUNDS`.
        object_yaw: initial rotation of the object about the vertical, radians, in [-pi, pi].
        goal: target position, metres, within :data:`GOAL_BOUNDS` (for reach: of the gripper;
            for push and pick-place: of the object's centre).
    """

    shape: str
    size: float
    mass: float
    friction: float
    object_xy: tuple[float, float]
    object_yaw: float
    goal: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"Task.shape: got {self.shape!r}; allowed: {', '.join(SHAPES)}")
        _check_range("Task.size", self.size, SIZE_LIMITS, "m")
        _check_range("Task.mass", self.mass, MASS_LIMITS, "kg")
        _check_range("Task.friction", self.friction, FRICTION_LIMITS, "")
        _check_range("Task.object_yaw", self.object_yaw, (-math.pi, math.pi), "rad")
        xy = _as_floats("Task.object_xy", self.object_xy, 2)
        for i, (v, b) in enumerate(zip(xy, OBJECT_XY_BOUNDS, strict=True)):
            _check_range(f"Task.object_xy[{i}]", v, b, "m")
        goal = _as_floats("Task.goal", self.goal, 3)
        for i, (v, b) in enumerate(zip(goal, GOAL_BOUNDS, strict=True)):
            _check_range(f"Task.goal[{i}]", v, b, "m")
        # Normalise to plain Python floats (numpy scalars would break equality and YAML dumps).
        object.__setattr__(self, "size", float(self.size))
        object.__setattr__(self, "mass", float(self.mass))
        object.__setattr__(self, "friction", float(self.friction))
        object.__setattr__(self, "object_yaw", float(self.object_yaw))
        object.__setattr__(self, "object_xy", xy)
        object.__setattr__(self, "goal", goal)

    @property
    def shape_index(self) -> int:
        """Position of ``shape`` in :data:`SHAPES`."""
        return SHAPES.index(self.shape)

    def mirror_goal(self) -> tuple[float, float, float]:
        """The goal reflected through the object's start in the horizontal plane (same height):
        the other candidate of a ``side_goals`` task."""
        (x, y), (gx, gy, gz) = self.object_xy, self.goal
        return (2.0 * x - gx, 2.0 * y - gy, gz)

    def features(self) -> np.ndarray:
        """Goal (3), shape geometry (3, :data:`SHAPE_GEOMETRY`), size, mass, friction as 9
        float32 (the revealed-task observation and the privileged task features)."""
        return np.concatenate(
            [self.goal, SHAPE_GEOMETRY[self.shape], [self.size, self.mass, self.friction]]
        ).astype(np.float32)


def _check_range(name: str, value: object, bounds: tuple[float, float], unit: str) -> None:
    lo, hi = bounds
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if not ok or not (lo <= float(value) <= hi):  # type: ignore[arg-type]
        raise ValueError(
            f"{name}: got {value!r}; allowed: a number in [{lo}, {hi}] {unit}".rstrip()
        )


def _as_floats(name: str, value: object, n: int) -> tuple[float, ...]:
    if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != n:
        raise ValueError(f"{name}: got {value!r}; allowed: a sequence of {n} numbers")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class SplitSpec:
    """The objects of one split: shape classes and unions of [lo, hi] intervals to draw from.

    ``edge_bins`` (empty for train and test): ``(factor, (lo, hi))`` bins, one of which, drawn
    with equal chances, then replaces that factor's draw by a uniform draw from the bin: one
    property at a time pushed beyond the other splits, the rest as drawn above.
    """

    shapes: tuple[str, ...]
    size: tuple[tuple[float, float], ...]
    mass: tuple[tuple[float, float], ...]
    friction: tuple[tuple[float, float], ...]
    edge_bins: tuple[tuple[str, tuple[float, float]], ...] = ()


SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec(
        shapes=("box", "cylinder", "sphere", "capsule", "l_block"),
        size=((0.020, 0.028),),
        mass=((0.05, 0.25),),
        friction=((0.6, 1.2),),
    ),
    # Never-seen objects: two held-out shape classes, and every property outside training's range.
    "test": SplitSpec(
        shapes=SHAPES,
        size=((0.016, 0.0199), (0.0281, 0.032)),
        mass=((0.02, 0.049), (0.26, 0.4)),
        friction=((0.35, 0.59), (1.21, 1.6)),
    ),
    # Objects far outside anything seen: one property beyond the test ranges (inside the
    # physical limits), the others as the test split's.
    "edge": SplitSpec(
        shapes=SHAPES,
        size=((0.016, 0.0199), (0.0281, 0.032)),
        mass=((0.02, 0.049), (0.26, 0.4)),
        friction=((0.35, 0.59), (1.21, 1.6)),
        edge_bins=(
            ("size", (0.011, 0.015)),
            ("size", (0.033, 0.038)),
            ("mass", (0.005, 0.015)),
            ("mass", (0.4, 0.8)),
            ("mass", (0.8, 2.0)),
            ("friction", (0.08, 0.25)),
            ("friction", (2.0, 3.0)),
        ),
    ),
}
"""The train and test splits (disjoint in size, mass and friction; ``ellipsoid`` and
``t_block`` only in test), and the edge split (issue 28): each object has one property in a bin
beyond the test ranges (half-width 11-15 or 33-38 mm, mass 5-15 g, 0.4-0.8 or 0.8-2 kg,
friction 0.08-0.25 or 2-3), the bin drawn with equal chances, the rest as in test."""


def _uniform_union(rng: np.random.Generator, intervals: Sequence[tuple[float, float]]) -> float:
    """A uniform draw from a union of disjoint intervals (interval chosen by its length)."""
    lengths = np.array([hi - lo for lo, hi in intervals])
    i = int(rng.choice(len(intervals), p=lengths / lengths.sum()))
    lo, hi = intervals[i]
    return float(rng.uniform(lo, hi))


class TaskDistribution:
    """Samples :class:`Task` objects for one variant from the train, test or edge split.

    The object's properties come from :data:`SPLITS`; its initial pose and the goal from the
    variant's workspace regions: reach goals are points in the gripper's reach above the table,
    push goals lie on the table and pick-place goals 6 to 22 cm above the object's resting
    height, both at least 8 cm (xy) from the object's start.

    ``goal_sector`` (degrees, push and pick-place only) keeps those goals within that angle of
    +x (away from the arm) as seen from the object's start, as in Meta-World's push and
    pick-place, whose goals lie beyond the object: ``90`` puts every goal ahead of the object,
    ``45`` within a quarter turn. The object's pose and the goal are then drawn together (a pose
    with no room for such a goal is redrawn). ``None`` (default): any direction.

    ``side_goals`` (metres, push and pick-place only, exclusive with ``goal_sector``) puts the
    goal exactly that far to the left or to the right (+-y) of the object's start, the side a
    fair coin: a one-bit task, like HalfCheetah-Dir's two directions. The other side's point,
    the goal's mirror image through the object's start (:meth:`Task.mirror_goal`), is where a
    wrong guess ends; the object's start is drawn so that both lie within 16 cm of the centre
    line.
    """

    def __init__(
        self,
        variant: str = "pick_place",
        *,
        goal_sector: float | None = None,
        side_goals: float | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(
                f"TaskDistribution.variant: got {variant!r}; allowed: {', '.join(VARIANTS)}"
            )
        if goal_sector is not None:
            if variant == "reach":
                raise ValueError(
                    "goal_sector: got a value for variant 'reach'; allowed: None (reach goals "
                    "do not depend on the object)"
                )
            ok = isinstance(goal_sector, (int, float)) and not isinstance(goal_sector, bool)
            if not ok or not 0.0 < float(goal_sector) <= 180.0:
                raise ValueError(
                    f"goal_sector: got {goal_sector!r}; allowed: None or degrees in (0, 180]"
                )
        if side_goals is not None:
            if variant == "reach" or goal_sector is not None:
                raise ValueError(
                    f"side_goals: got {side_goals!r} with variant {variant!r} and goal_sector "
                    f"{goal_sector!r}; allowed: push or pick-place, without goal_sector"
                )
            _check_range("side_goals", side_goals, _SIDE_GOAL_LIMITS, "m")
        self.variant = variant
        self.goal_sector = None if goal_sector is None else float(goal_sector)
        self.side_goals = None if side_goals is None else float(side_goals)
        self.splits = SPLITS

    def sample(self, n: int, split: str, rng: np.random.Generator) -> list[Task]:
        """``n`` tasks from ``split`` ("train", "test" or "edge"), every draw from ``rng``."""
        if split not in self.splits:
            raise ValueError(f"split: got {split!r}; allowed: {', '.join(self.splits)}")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n: got {n!r}; allowed: an integer >= 0")
        return [self._sample_one(self.splits[split], rng) for _ in range(n)]

    def _sample_one(self, spec: SplitSpec, rng: np.random.Generator) -> Task:
        shape = spec.shapes[int(rng.integers(len(spec.shapes)))]
        size = _uniform_union(rng, spec.size)
        mass = _uniform_union(rng, spec.mass)
        friction = _uniform_union(rng, spec.friction)
        if spec.edge_bins:
            factor, (lo, hi) = spec.edge_bins[int(rng.integers(len(spec.edge_bins)))]
            value = float(rng.uniform(lo, hi))
            size = value if factor == "size" else size
            mass = value if factor == "mass" else mass
            friction = value if factor == "friction" else friction
        (x0, x1), (y0, y1) = _OBJECT_XY_REGION
        while True:  # an object pose that leaves room for a goal (always, without a sector)
            xy = (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)))
            yaw = float(rng.uniform(*_OBJECT_YAW_RANGE))
            goal = self._sample_goal(xy, size, rng)
            if goal is not None:
                return Task(shape, size, mass, friction, xy, yaw, goal)

    def _goal_allowed(self, xy: tuple[float, float], gx: float, gy: float) -> bool:
        dx, dy = gx - xy[0], gy - xy[1]
        if math.hypot(dx, dy) < _MIN_GOAL_DISTANCE:
            return False
        return self.goal_sector is None or abs(math.degrees(math.atan2(dy, dx))) <= self.goal_sector

    def _sample_goal(
        self, xy: tuple[float, float], size: float, rng: np.random.Generator
    ) -> tuple[float, float, float] | None:
        """The goal for an object starting at ``xy``; None when rejection finds none."""
        if self.variant == "reach":
            (x0, x1), (y0, y1), (z0, z1) = _REACH_GOAL_REGION
            return (
                float(rng.uniform(x0, x1)),
                float(rng.uniform(y0, y1)),
                float(rng.uniform(z0, z1)),
            )
        if self.side_goals is not None:
            side = 1.0 if rng.random() < 0.5 else -1.0
            if abs(xy[1]) + self.side_goals > _SIDE_GOAL_Y:
                return None  # no room for the goal on both sides: redraw the pose
            gx, gy = xy[0], xy[1] + side * self.side_goals
            return self._with_height(gx, gy, size, rng)
        (x0, x1), (y0, y1) = _PLACE_GOAL_XY_REGION
        for _ in range(_GOAL_TRIES):  # rejection: away from the start, inside the sector
            gx, gy = float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))
            if self._goal_allowed(xy, gx, gy):
                break
        else:
            return None
        return self._with_height(gx, gy, size, rng)

    def _with_height(
        self, gx: float, gy: float, size: float, rng: np.random.Generator
    ) -> tuple[float, float, float]:
        if self.variant == "push":
            return (gx, gy, size)
        lo, hi = _PLACE_GOAL_HEIGHT
        return (gx, gy, size + float(rng.uniform(lo, hi)))

    def __repr__(self) -> str:
        sector = "" if self.goal_sector is None else f", goal_sector={self.goal_sector:g}"
        sides = "" if self.side_goals is None else f", side_goals={self.side_goals:g}"
        return f"TaskDistribution(variant={self.variant!r}{sector}{sides})"
