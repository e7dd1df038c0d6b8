"""Checkpoint files: atomic writes, keep-last-N and best, corrupt or mismatched ones refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from meta_rl.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointManager,
    Located,
    check_compatible,
    load_checkpoint,
    locate,
    save_checkpoint,
)
from meta_rl.experiment import ExperimentConfig, config_hash
from meta_rl.runs import remove_orphaned_temp_files, write_atomic


def _payload(iteration: int = 1, **meta: object) -> dict[str, object]:
    base = {
        "format_version": FORMAT_VERSION,
        "config_hash": "abc",
        "env_id": "toy/PointGoal-v0",
        "obs_shape": [2],
        "action_shape": [2],
        "iteration": iteration,
    }
    base.update(meta)
    return {"meta": base, "weights": torch.arange(4.0) + iteration}


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(3))
    loaded = load_checkpoint(path)
    assert loaded["meta"]["iteration"] == 3
    assert torch.equal(loaded["weights"], torch.arange(4.0) + 3)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_atomic_write_keeps_the_old_file_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.pt"
    write_atomic(path, b"old")

    def boom(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], r"corrupt \(checksum mismatch"),
        (lambda b: b[:-10] + bytes(10), r"corrupt \(checksum mismatch"),
        (lambda b: b"garbage" + b, r"bad header"),
        (lambda b: b"", r"bad header"),
    ],
)
def test_corrupt_checkpoint_is_refused(
    tmp_path: Path, damage: Callable[[bytes], bytes], message: str
) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=r"format version 2; this code reads version 1"):
        load_checkpoint(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cannot be read"):
        load_checkpoint(tmp_path / "nope.pt")


def test_mismatched_config_env_or_spaces_are_refused() -> None:
    payload = _payload()
    ok = {
        "config_hash": "abc",
        "env_id": "toy/PointGoal-v0",
        "obs_shape": (2,),
        "action_shape": (2,),
    }
    check_compatible(payload, **ok)  # type: ignore[arg-type]
    for key, value, message in (
        ("config_hash", "def", r"config hash 'abc' \(this run: 'def'\)"),
        ("env_id", "metarl/Reach-v0", r"env id 'toy/PointGoal-v0'"),
        ("obs_shape", (3,), r"observation shape \(2,\)"),
        ("action_shape", (4,), r"action shape \(2,\)"),
    ):
        with pytest.raises(CheckpointError, match=message):
            check_compatible(payload, **{**ok, key: value})  # type: ignore[arg-type]


def test_config_hash_ignores_budget_and_logging_only() -> None:
    cfg = ExperimentConfig()
    same = cfg.replace(
        train=cfg.train.replace(iterations=7, device="cpu"),
        logging=cfg.logging.replace(wandb_mode="disabled"),
        experiment="other",
    )
    assert config_hash(same) == config_hash(cfg)
    assert config_hash(cfg.replace(train=cfg.train.replace(seed=1))) != config_hash(cfg)
    assert config_hash(cfg.replace(ppo=cfg.ppo.replace(lr=1e-3))) != config_hash(cfg)


def test_manager_keeps_last_n_and_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    for it in range(1, 6):
        manager.save(it, _payload(it), is_best=it == 2)
    assert [p.name for p in manager.checkpoints()] == ["ckpt_00000004.pt", "ckpt_00000005.pt"]
    assert manager.latest() == tmp_path / "checkpoints" / "ckpt_00000005.pt"
    assert load_checkpoint(manager.best_path)["meta"]["iteration"] == 2
    # A run dir resolves to its best checkpoint, then to its last one.
    assert locate(tmp_path) == Located(manager.best_path, tmp_path)
    assert locate(tmp_path, prefer="latest").file == manager.latest()
    assert locate(tmp_path / "checkpoints").run_dir == tmp_path
    assert locate(manager.best_path).run_dir == tmp_path
    manager.best_path.unlink()
    assert locate(tmp_path).file == manager.latest()
    with pytest.raises(CheckpointError, match=r"does not exist: it is not a run directory"):
        locate(tmp_path / "missing")
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in"):
        locate(tmp_path / "empty", prefer="latest")


def test_orphaned_temp_files_are_removed_at_the_next_save(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "checkpoints", keep_last=2)
    orphan = manager.directory / ".ckpt_00000002.pt.k3j_9x2a.tmp"
    orphan.write_bytes(b"")
    other = manager.directory / "notes.tmp"  # not one of ours: kept
    other.write_text("x")
    assert remove_orphaned_temp_files(tmp_path / "missing") == []
    manager.save(3, _payload(3))
    assert not orphan.exists() and other.exists()


_HANG_ON_SECOND_SAVE = """
import os, sys, time
import helpers.toy_family
real_replace = os.replace
def replace(src, dst):
    if str(dst).endswith("ckpt_00000002.pt"):
        time.sleep(300)  # killed here: the temp file is written, not yet moved into place
    return real_replace(src, dst)
os.replace = replace
from meta_rl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_during_a_save_leaves_no_temp_file_after_resume(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers.configs import toy_config
    from helpers.paths import ROOT
    from meta_rl.cli import main
    from meta_rl.logging import read_metrics

    run = tmp_path / "run"
    overrides = ["train.iterations=3", "train.checkpoint_every=1", "train.eval_every=5"]
    config = tmp_path / "toy.yaml"
    from meta_rl.config import save_config_yaml

    save_config_yaml(toy_config(tmp_path, *overrides), config)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    args = ["train", "--config", str(config), "--run-dir", str(run)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _HANG_ON_SECOND_SAVE, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        temps: list[Path] = []
        while not temps and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            temps = list((run / "checkpoints").glob(".ckpt_00000002.pt.*.tmp"))
        assert temps, "the run never reached its second save"
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert [p.name for p in (run / "checkpoints").glob("ckpt_*.pt")] == ["ckpt_00000001.pt"]
    assert main(["train", "--resume", str(run)]) == 0
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    assert "ckpt_00000003.pt" in names
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3]
