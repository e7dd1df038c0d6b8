"""Held-out success broken down by object shape and size, mass and friction bins."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from envs.tasks import SPLITS, Task, TaskDistribution
from meta_rl.evaluation.breakdown import (
    breakdown_table,
    plot_breakdown,
    success_breakdown,
    task_groups,
    train_ranges,
)
from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.protocol import TrialResults
from meta_rl.evaluation.runner import Method, evaluate_methods


def _task(shape: str, size: float, mass: float, friction: float) -> Task:
    return Task(shape, size, mass, friction, (0.0, 0.0), 0.0, (0.05, 0.1, 0.2))


TASKS = [
    _task("box", 0.017, 0.03, 0.4),  # smaller, lighter, slipperier than training
    _task("ellipsoid", 0.024, 0.1, 1.0),  # within training ranges, held-out shape
    _task("box", 0.030, 0.3, 1.5),  # larger, heavier, grippier
]


def test_train_ranges_of_our_family_and_none_for_others() -> None:
    ranges = train_ranges(TaskDistribution("pick_place"))
    assert ranges == {
        "size": SPLITS["train"].size[0],
        "mass": SPLITS["train"].mass[0],
        "friction": SPLITS["train"].friction[0],
    }
    assert train_ranges(object()) == {}


def test_task_groups_bin_against_the_training_range_or_in_quantiles() -> None:
    groups = task_groups(TASKS, train_ranges(TaskDistribution("pick_place")))
    assert groups["shape"] == ["box", "ellipsoid", "box"]
    assert groups["size"] == [
        "below train (0.017-0.017)",
        "in train (0.024-0.024)",
        "above train (0.03-0.03)",
    ]
    assert [g.split(" (")[0] for g in groups["mass"]] == ["below train", "in train", "above train"]
    quantile = task_groups(TASKS)
    assert [g.split(" (")[0] for g in quantile["friction"]] == ["low", "mid", "high"]
    assert task_groups([object()]) == {}  # tasks without the factors: no breakdown


def test_edge_values_are_binned_beyond_the_test_range() -> None:
    dist = TaskDistribution("pick_place")
    tasks = [dataclasses.replace(TASKS[0], mass=m) for m in (0.01, 0.03, 0.1, 0.3, 1.5)]
    groups = task_groups(tasks, train_ranges(dist), train_ranges(dist, "test"))
    assert [g.split(" (")[0] for g in groups["mass"]] == [
        "below test",
        "below train",
        "in train",
        "above train",
        "above test",
    ]
    # Without the test split's ranges, values beyond them stay below or above train.
    plain = task_groups(tasks, train_ranges(dist))
    assert [g.split(" (")[0] for g in plain["mass"]][::4] == ["below train", "above train"]


def test_success_breakdown_matches_a_hand_count() -> None:
    # 3 tasks x 2 seeds, 2 episodes; trials are ordered seed-major as evaluation orders them.
    success = np.array([[0, 1], [1, 1], [0, 0], [0, 0], [1, 1], [0, 1]], dtype=float)
    results = TrialResults(
        success=success,
        success_final=success,
        returns=success,
        lengths=np.full_like(success, 5),
        task_index=np.array([0, 1, 2, 0, 1, 2]),
        seed_index=np.array([0, 0, 0, 1, 1, 1]),
        physics_errors=0,
    )
    out = success_breakdown(results, {"shape": ["box", "ellipsoid", "box"]})
    box = out["shape"]["box"]  # trials 0, 2, 3, 5
    assert box["tasks"] == 2 and box["trials"] == 4
    assert box["success"] == pytest.approx([0.0, 0.5])
    assert box["gain"] == pytest.approx(0.5)
    ell = out["shape"]["ellipsoid"]  # trials 1, 4
    assert ell["success"] == pytest.approx([1.0, 1.0]) and ell["gain"] == 0.0
    table = breakdown_table({"agent": out})
    assert "| agent | box | 2 | 0.00 | 0.50 | +0.50 |" in table


class ZeroAgent:
    def begin_trial(self, num_envs: int) -> None:
        self.n = num_envs

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        return np.zeros((self.n, 4), dtype=np.float32)

    def observe(self, *args: object) -> None:
        pass

    def end_episode(self) -> None:
        pass


def test_evaluate_writes_the_breakdown_for_every_method(tmp_path: Path) -> None:
    cfg = EvalConfig(
        num_tasks=4,
        num_seeds=1,
        num_episodes=2,
        episode_steps=3,
        num_videos=0,
        num_bootstrap=100,
        progress_bar=False,
        wandb_mode="disabled",
    )
    evaluate_methods(
        [Method("zero", ZeroAgent()), Method("zero-again", ZeroAgent())],
        env_id="metarl/PickPlace-v0",
        cfg=cfg,
        out_dir=tmp_path,
    )
    data = json.loads((tmp_path / "eval.json").read_text())
    for entry in data["methods"].values():
        assert set(entry["breakdown"]) == {"shape", "size", "mass", "friction"}
        for rows in entry["breakdown"].values():
            assert sum(r["tasks"] for r in rows.values()) == 4
            assert all(len(r["success"]) == 2 for r in rows.values())
        # The test split holds no object within the training ranges.
        assert not any(g.startswith("in train") for g in entry["breakdown"]["mass"])
    assert data["files"]["plots"]["by_object"] == "success_by_object.png"
    assert (tmp_path / "success_by_object.png").stat().st_size > 1000
    text = (tmp_path / "eval.md").read_text()
    assert "Success by object" in text and "| zero-again |" in text


def test_plot_breakdown_without_factors_writes_nothing(tmp_path: Path) -> None:
    assert plot_breakdown({"a": {}}, tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()
