"""Run directories: ``runs/<experiment>__<seed>__<timestamp>/`` with the resolved config.

A run directory holds one run only: a fresh run into a directory that already holds files is
refused (:func:`check_fresh_run_dir`), and every resume is recorded in ``resumes.jsonl`` with
the config keys it changed (the budget), which ``config.yaml`` then shows.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from meta_rl.config import save_config_yaml, to_dict

__all__ = [
    "RESUMES_FILE",
    "RUN_SUBDIRS",
    "check_fresh_run_dir",
    "create_run_dir",
    "prepare_run_dir",
    "record_resume",
    "remove_orphaned_temp_files",
    "save_config",
    "write_atomic",
]

RESUMES_FILE = "resumes.jsonl"

RUN_SUBDIRS = ("checkpoints", "videos", "plots", "eval")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# Temporary files of write_atomic (tempfile.mkstemp: ".<name>.<8 random chars>.tmp").
_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def create_run_dir(root: str | Path, experiment: str, seed: int) -> Path:
    """Create a fresh run directory (never reusing an existing one) with its standard folders."""
    name = _SAFE.sub("-", experiment).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}__{seed}__{stamp}"
    run_dir = base
    n = 1
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            break
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    for sub in RUN_SUBDIRS:
        (run_dir / sub).mkdir()
    return run_dir


def check_fresh_run_dir(run_dir: str | Path, *, resumable: bool = True) -> None:
    """Refuse (``ValueError``) a directory for a fresh run that already holds files; the
    message offers ``metarl train --resume`` when the run is ``resumable``."""
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--run-dir {str(path)!r} is a file; pass a directory for the new run")
    if path.is_dir() and any(path.iterdir()):
        held = ", ".join(sorted(p.name for p in path.iterdir())[:4])
        resume = (
            f"Continue that run with `metarl train --resume {path}`, or pass"
            if resumable
            else "Pass"
        )
        raise ValueError(
            f"--run-dir {str(path)!r} is not empty (it holds {held}): a fresh run would mix "
            f"with it. {resume} a new --run-dir (or none: a new folder under runs_dir)"
        )


def prepare_run_dir(run_dir: str | Path, *, resumable: bool = True) -> Path:
    """Create the (empty or missing) directory of a fresh run with its standard folders."""
    path = Path(run_dir)
    check_fresh_run_dir(path, resumable=resumable)
    path.mkdir(parents=True, exist_ok=True)
    for sub in RUN_SUBDIRS:
        (path / sub).mkdir(exist_ok=True)
    return path


def record_resume(
    run_dir: str | Path, cfg: Any, iteration: int, extra: dict[str, Any] | None = None
) -> dict[str, list[Any]]:
    """Record a resume at ``iteration``: rewrite ``config.yaml`` with ``cfg`` (the resumed run's
    resolved config, e.g. a longer budget) and append ``{"iteration", "time", "changes"}`` to
    ``resumes.jsonl``; ``changes`` maps each changed dotted key to ``[old, new]``. ``extra``
    adds keys to the line (a distributed run's ``world_size`` ``[old, new]`` and a warning)."""
    from meta_rl.experiment import config_changes

    path = Path(run_dir) / "config.yaml"
    new = to_dict(cfg)
    old = yaml.safe_load(path.read_text()) if path.is_file() else {}
    changes = {k: [a, b] for k, a, b in config_changes(old or {}, new)}
    if changes or not path.is_file():
        write_atomic(path, yaml.safe_dump(new, sort_keys=False).encode())
    line = {
        "iteration": iteration,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "changes": changes,
        **(extra or {}),
    }
    with (Path(run_dir) / RESUMES_FILE).open("a") as f:
        f.write(json.dumps(line, default=str) + "\n")
    return changes


def save_config(run_dir: str | Path, cfg: Any) -> Path:
    """Write the resolved config into the run directory as ``config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    save_config_yaml(cfg, path)
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_orphaned_temp_files(directory: Path) -> list[Path]:
    """Delete the temporary files that :func:`write_atomic` left in ``directory`` when its
    process was killed mid-write (never under a final name); returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = [p for p in directory.iterdir() if _TEMP.match(p.name) and p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed
