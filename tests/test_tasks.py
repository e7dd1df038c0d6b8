"""Tasks: validation, splits, sampling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from envs.tasks import (
    FRICTION_LIMITS,
    MASS_LIMITS,
    SHAPE_GEOMETRY,
    SHAPES,
    SIZE_LIMITS,
    SPLITS,
    VARIANTS,
    Task,
    TaskDistribution,
)


def make_task(**changes: object) -> Task:
    base = dict(
        shape="box",
        size=0.024,
        mass=0.1,
        friction=1.0,
        object_xy=(0.0, 0.05),
        object_yaw=0.1,
        goal=(0.05, -0.05, 0.12),
    )
    base.update(changes)
    return Task(**base)  # type: ignore[arg-type]


def test_task_is_frozen_and_plain() -> None:
    task = make_task(object_xy=np.array([0.01, 0.02]), size=np.float32(0.02))
    assert type(task.size) is float
    assert task.object_xy == pytest.approx((0.01, 0.02))
    assert all(type(v) is float for v in task.object_xy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.mass = 2.0  # type: ignore[misc]
    assert make_task() == make_task()
    assert hash(make_task()) == hash(make_task())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"mass": -0.1}, r"Task\.mass: got -0\.1; allowed: a number in \[0\.005, 2\.0\] kg"),
        ({"size": 0.0}, r"Task\.size: got 0\.0; allowed: a number in \[0\.01, 0\.04\] m"),
        ({"shape": "torus"}, r"Task\.shape: got 'torus'; allowed: box, cylinder"),
        ({"friction": float("nan")}, r"Task\.friction: got nan"),
        ({"goal": (0.0, 0.0)}, r"Task\.goal: .*a sequence of 3 numbers"),
        (
            {"goal": (0.0, 0.0, 2.0)},
            r"Task\.goal\[2\]: got 2\.0; allowed: a number in \[0\.0, 0\.35\]",
        ),
        ({"object_xy": (0.5, 0.0)}, r"Task\.object_xy\[0\]: got 0\.5"),
        ({"mass": "heavy"}, r"Task\.mass: got 'heavy'"),
        ({"size": True}, r"Task\.size: got True"),
    ],
)
def test_invalid_task_names_field_and_range(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_task(**changes)


def _in(value: float, intervals: tuple[tuple[float, float], ...]) -> bool:
    return any(lo <= value <= hi for lo, hi in intervals)


def test_splits_are_disjoint_and_hold_out_shapes() -> None:
    train, test = SPLITS["train"], SPLITS["test"]
    assert {"ellipsoid", "t_block"} <= set(test.shapes) - set(train.shapes)
    assert set(train.shapes) | set(test.shapes) == set(SHAPES)
    for field in ("size", "mass", "friction"):
        for lo, hi in getattr(test, field):
            for tlo, thi in getattr(train, field):
                assert hi < tlo or lo > thi, f"{field}: test {lo, hi} overlaps train {tlo, thi}"


def test_edge_objects_have_one_property_beyond_the_test_ranges() -> None:
    """The edge split (issue 28): each object has exactly one of size, mass and friction in one
    of its edge bins, beyond every train and test value and inside the physical limits, the
    others as the test split draws them; every bin comes up, about equally often."""
    edge, test = SPLITS["edge"], SPLITS["test"]
    tasks = TaskDistribution("pick_place").sample(700, "edge", np.random.default_rng(0))
    counts = dict.fromkeys(edge.edge_bins, 0)
    for t in tasks:
        beyond = [
            (f, (lo, hi))
            for f, (lo, hi) in edge.edge_bins
            if lo <= getattr(t, f) <= hi and not _in(getattr(t, f), getattr(test, f))
        ]
        assert len(beyond) == 1, t
        counts[beyond[0]] += 1
        for f in {"size", "mass", "friction"} - {beyond[0][0]}:
            assert _in(getattr(t, f), getattr(test, f))
    assert min(counts.values()) > 70  # 100 expected per bin
    limits = {"size": SIZE_LIMITS, "mass": MASS_LIMITS, "friction": FRICTION_LIMITS}
    for factor, (lo, hi) in edge.edge_bins:
        for spec in (SPLITS["train"], test):  # at most touching a range's end
            assert all(hi <= a or lo >= b for a, b in getattr(spec, factor)), factor
        assert limits[factor][0] <= lo < hi <= limits[factor][1]
    # Train and test draws are as before the edge split existed (it draws after them).
    first = TaskDistribution("pick_place").sample(1, "test", np.random.default_rng(5))[0]
    assert (first.shape, round(first.size, 6), round(first.mass, 6)) == (
        "ellipsoid",
        0.03011,
        0.26755,
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_samples_respect_their_split(variant: str) -> None:
    dist = TaskDistribution(variant)
    rng = np.random.default_rng(0)
    train = dist.sample(200, "train", rng)
    test = dist.sample(200, "test", rng)
    for split, tasks in (("train", train), ("test", test)):
        spec = SPLITS[split]
        for t in tasks:
            assert t.shape in spec.shapes
            assert _in(t.size, spec.size) and _in(t.mass, spec.mass)
            assert _in(t.friction, spec.friction)
    # No test object could have come from training.
    for t in test:
        assert not (_in(t.size, SPLITS["train"].size) or _in(t.mass, SPLITS["train"].mass))
    assert {t.shape for t in test} == set(SHAPES)
    assert {"ellipsoid", "t_block"}.isdisjoint({t.shape for t in train})


def test_goals_per_variant() -> None:
    rng = np.random.default_rng(1)
    for t in TaskDistribution("push").sample(50, "train", rng):
        assert t.goal[2] == pytest.approx(t.size)  # on the table
        assert np.hypot(t.goal[0] - t.object_xy[0], t.goal[1] - t.object_xy[1]) >= 0.08
    for t in TaskDistribution("pick_place").sample(50, "test", rng):
        assert t.goal[2] >= t.size + 0.06  # must be lifted
    reach = TaskDistribution("reach").sample(50, "train", rng)
    assert np.ptp([t.goal[2] for t in reach]) > 0.1  # goals spread in height


def test_sampling_is_seeded() -> None:
    dist = TaskDistribution("pick_place")
    a = dist.sample(5, "test", np.random.default_rng(7))
    b = dist.sample(5, "test", np.random.default_rng(7))
    c = dist.sample(5, "test", np.random.default_rng(8))
    assert a == b
    assert a != c


def test_bad_distribution_arguments() -> None:
    with pytest.raises(ValueError, match=r"TaskDistribution\.variant: got 'fly'; allowed: reach"):
        TaskDistribution("fly")
    dist = TaskDistribution()
    with pytest.raises(ValueError, match=r"split: got 'val'; allowed: train, test"):
        dist.sample(1, "val", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"n: got -1; allowed: an integer >= 0"):
        dist.sample(-1, "train", np.random.default_rng(0))


def test_features_layout() -> None:
    task = make_task(shape="t_block", size=0.03, mass=0.3, friction=0.5)
    f = task.features()
    assert f.dtype == np.float32
    np.testing.assert_allclose(f[:3], task.goal, rtol=1e-6)
    np.testing.assert_allclose(f[3:6], SHAPE_GEOMETRY["t_block"], rtol=1e-6)
    np.testing.assert_allclose(f[-3:], [0.03, 0.3, 0.5], rtol=1e-6)
    assert f.shape == (9,)


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_geometry_is_computed_from_the_scene_geoms(shape: str) -> None:
    """Elongation and fill from the geoms that envs/scene.py builds at half-width 1; roundness
    from the geom type (a cylinder of half-height = radius is curved on 2/3 of its surface)."""
    from envs.scene import _GEOM_TYPE, _geom_bounds, _shape_geometry, _solid

    gtype = _GEOM_TYPE[shape]
    geoms = _shape_geometry(shape, 1.0)
    if shape == "capsule":  # built along z, then laid along x: its axis is the long side
        lo_hi = [
            (-_geom_bounds(gtype, size)[::-1], _geom_bounds(gtype, size)[::-1]) for size, _ in geoms
        ]
    else:
        lo_hi = [
            (pos - _geom_bounds(gtype, size), pos + _geom_bounds(gtype, size))
            for size, pos in geoms
        ]
    lo = np.min([a for a, _ in lo_hi], axis=0)
    hi = np.max([b for _, b in lo_hi], axis=0)
    half = (hi - lo) / 2
    volume = sum(_solid(gtype, size)[0] for size, _ in geoms)
    roundness = {"box": 0.0, "cylinder": 2.0 / 3.0}.get(gtype, 1.0)
    expected = (half.max(), roundness, volume / np.prod(2 * half))
    np.testing.assert_allclose(SHAPE_GEOMETRY[shape], expected, rtol=1e-9)


def test_test_shapes_lie_inside_the_training_shapes_range() -> None:
    train = np.array([SHAPE_GEOMETRY[s] for s in SPLITS["train"].shapes])
    for shape in SPLITS["test"].shapes:
        g = np.array(SHAPE_GEOMETRY[shape])
        assert np.all(g >= train.min(0)) and np.all(g <= train.max(0)), shape


@pytest.mark.parametrize("variant", ["push", "pick_place"])
def test_goal_sector_keeps_goals_ahead_of_the_object(variant: str) -> None:
    dist = TaskDistribution(variant, goal_sector=45)
    tasks = dist.sample(300, "test", np.random.default_rng(3))
    dx = np.array([t.goal[0] - t.object_xy[0] for t in tasks])
    dy = np.array([t.goal[1] - t.object_xy[1] for t in tasks])
    angles = np.degrees(np.arctan2(dy, dx))
    assert np.all(np.abs(angles) <= 45.0)
    assert np.all(np.hypot(dx, dy) >= 0.08)
    assert np.ptp(angles) > 60.0  # the sector is covered, not one direction
    # Without a sector, goals lie in every direction (some behind the object).
    free = TaskDistribution(variant).sample(300, "test", np.random.default_rng(3))
    assert any(t.goal[0] < t.object_xy[0] for t in free)


def test_goal_sector_leaves_the_default_draws_unchanged() -> None:
    # The default distribution's draws do not depend on the sector code path.
    a = TaskDistribution("push").sample(20, "train", np.random.default_rng(5))
    b = TaskDistribution("push", goal_sector=180).sample(20, "train", np.random.default_rng(5))
    assert a == b


def test_bad_goal_sector() -> None:
    with pytest.raises(ValueError, match=r"goal_sector: got 0; allowed: None or degrees in"):
        TaskDistribution("push", goal_sector=0)
    with pytest.raises(ValueError, match=r"goal_sector: got 'ahead'; allowed"):
        TaskDistribution("push", goal_sector="ahead")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"goal_sector: got a value for variant 'reach'"):
        TaskDistribution("reach", goal_sector=45)


@pytest.mark.parametrize("variant", ["push", "pick_place"])
def test_side_goals_are_one_hidden_bit(variant: str) -> None:
    dist = TaskDistribution(variant, side_goals=0.1)
    tasks = dist.sample(400, "test", np.random.default_rng(4))
    xy = np.array([t.object_xy for t in tasks])
    goal = np.array([t.goal for t in tasks])
    mirror = np.array([t.mirror_goal() for t in tasks])
    np.testing.assert_allclose(goal[:, 0], xy[:, 0])  # straight to the side
    np.testing.assert_allclose(np.abs(goal[:, 1] - xy[:, 1]), 0.1)
    np.testing.assert_allclose(mirror[:, 1] - xy[:, 1], xy[:, 1] - goal[:, 1])
    np.testing.assert_allclose(mirror[:, [0, 2]], goal[:, [0, 2]])
    assert np.all(np.abs(goal[:, 1]) <= 0.16) and np.all(np.abs(mirror[:, 1]) <= 0.16)
    left = np.mean(goal[:, 1] > xy[:, 1])
    assert 0.4 < left < 0.6  # a fair coin


def test_bad_side_goals() -> None:
    with pytest.raises(ValueError, match=r"side_goals: got 0.3; allowed: a number in \[0.08"):
        TaskDistribution("push", side_goals=0.3)
    with pytest.raises(ValueError, match=r"side_goals: got 0.1 with variant 'push' and goal_sec"):
        TaskDistribution("push", goal_sector=45, side_goals=0.1)
    with pytest.raises(ValueError, match=r"side_goals: .*allowed: push or pick-place"):
        TaskDistribution("reach", side_goals=0.1)
