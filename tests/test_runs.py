"""Run directories are never mixed: refusals, nothing written by failed starts, resumes recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from helpers.configs import toy_config
from meta_rl.checkpoint import CheckpointError
from meta_rl.cli import main
from meta_rl.logging import read_metrics
from meta_rl.runs import RESUMES_FILE, check_fresh_run_dir, prepare_run_dir
from meta_rl.training.trainer import train

torch.set_num_threads(1)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_fresh_run_into_a_used_run_dir_is_refused(tmp_path: Path) -> None:
    run = train(toy_config(tmp_path, "train.iterations=2"), run_dir=tmp_path / "run")
    before = _snapshot(run)
    with pytest.raises(ValueError, match=r"is not empty .*metarl train --resume .*new --run-dir"):
        train(toy_config(tmp_path, "train.iterations=2", "ppo.lr=0.01"), run_dir=run)
    assert _snapshot(run) == before  # metrics, config, checkpoints untouched
    # From the command line: exit 2, one line.
    assert main(["train", "--run-dir", str(run), "env.id=toy/PointGoal-v0"]) == 2
    assert _snapshot(run) == before
    # An empty or missing directory is fine; a file is not.
    (tmp_path / "empty").mkdir()
    check_fresh_run_dir(tmp_path / "empty")
    assert sorted(p.name for p in prepare_run_dir(tmp_path / "new").iterdir()) == [
        "checkpoints",
        "eval",
        "plots",
        "videos",
    ]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"is a file"):
        check_fresh_run_dir(tmp_path / "file")


def test_a_failed_start_writes_nothing_and_a_corrected_rerun_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for bad in ("env.id=toy/Nope-v0", "env.episode_steps=21"):  # unknown id; over the limit
        with pytest.raises(ValueError):
            train(toy_config(tmp_path, bad), run_dir=run)
        with pytest.raises(ValueError):
            train(toy_config(tmp_path, bad))
        assert not run.exists() and not (tmp_path / "runs").exists()
    train(toy_config(tmp_path, "train.iterations=2"), run_dir=run)
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["iterations"] == 2
    train(toy_config(tmp_path, "train.iterations=3"), resume=run)
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["iterations"] == 3
    assert "train.iterations" in (run / RESUMES_FILE).read_text()


def test_a_refused_resume_names_the_keys_that_differ(tmp_path: Path) -> None:
    run = train(toy_config(tmp_path, "train.iterations=2"), run_dir=tmp_path / "run")
    config_before = (run / "config.yaml").read_bytes()
    with pytest.raises(CheckpointError) as exc:
        train(toy_config(tmp_path, "train.iterations=3", "ppo.lr=0.5", "train.seed=4"), resume=run)
    message = str(exc.value)
    assert "differing in: ppo.lr 0.0003 -> 0.5, train.seed 0 -> 4" in message
    assert "only train.iterations, train.total_env_steps" in message
    assert "\n" not in message
    # Nothing of the refused resume was recorded.
    assert (run / "config.yaml").read_bytes() == config_before
    assert not (run / RESUMES_FILE).exists()
