"""The collection-overlap benchmark (meta_rl.training.collection_overlap): its figures, grouped
against one-env trials, and the command (scripts/bench_collection_overlap.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meta_rl.experiment import load_experiment
from meta_rl.training.collection_overlap import measure_collection

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "env.tasks_per_batch=4",
    "env.episode_steps=6",
    "env.episodes_per_trial=2",
    "policy.hidden=[16,16]",
    "encoder.hidden_size=8",
]


def test_groups_on_threads_collect_the_same_trials_as_one_env() -> None:
    cfg = load_experiment(ROOT / "configs/pick_place.yaml", TINY)
    result = measure_collection(cfg, rounds=1, groups=2)
    # Each group's agent draws the whole batch's noise and keeps its rows: the same trials up
    # to the rounding of smaller matrix products.
    assert result["grouped_max_diff"] < 1e-3
    assert result["setup"]["env_steps_per_trial"] == 4 * 2 * 6
    for key in ("physics_uniform", "physics_replay", "collect", "agent_alone", "collect_grouped"):
        assert result["steps_per_s"][key] > 0
    ratios = result["ratios"]
    assert ratios["collect/physics_uniform"] == pytest.approx(
        result["steps_per_s"]["collect"] / result["steps_per_s"]["physics_uniform"]
    )


def test_groups_must_divide_the_meta_batch() -> None:
    cfg = load_experiment(ROOT / "configs/pick_place.yaml", TINY)
    with pytest.raises(ValueError, match="--groups: got 3"):
        measure_collection(cfg, rounds=1, groups=3)


def test_at_least_one_round_is_timed() -> None:
    cfg = load_experiment(ROOT / "configs/pick_place.yaml", TINY)
    with pytest.raises(ValueError, match=r"rounds: got 0; allowed: >= 1"):
        measure_collection(cfg, rounds=0, groups=2)


def test_the_command_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "overlap"
    cmd = [sys.executable, "scripts/bench_collection_overlap.py", "--rounds", "1", "--learner"]
    cmd += ["--out", str(out), *TINY]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    result = json.loads((out / "collection_overlap.json").read_text())
    assert result["grouped_max_diff"] < 1e-3
    assert set(result["learner"]["s_per_iteration"]) == {"1", "2"}
