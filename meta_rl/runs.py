"""Run directories: ``runs/<experiment>__<seed>__<timestamp>/`` with the resolved config."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from meta_rl.config import save_config_yaml

__all__ = ["RUN_SUBDIRS", "create_run_dir", "save_config"]

RUN_SUBDIRS = ("checkpoints", "videos", "plots", "eval")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


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


def save_config(run_dir: str | Path, cfg: Any) -> Path:
    """Write the resolved config into the run directory as ``config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    save_config_yaml(cfg, path)
    return path
