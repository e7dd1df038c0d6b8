"""Checkpoints: atomic, integrity-checked files; keep the last N and the best.

File format (version :data:`FORMAT_VERSION`)::

    b"METARL-CKPT\\n" + sha256 hex digest of the body + b"\\n" + body (torch.save of a dict)

The body holds ``meta`` (format version, config hash, env id, observation/action shapes,
iteration, env steps), the resolved ``config``, the action bounds, the ``networks`` state dict
and the ``trainer`` state (optimisers, generator states, normalisers, counters). Writes go to a
temporary file in the same directory, are fsync'ed and moved into place with ``os.replace``,
so a killed run never leaves a half-written checkpoint under the final name (the next save or
resume removes the temporary file such a kill leaves behind). Loading refuses,
with a :class:`CheckpointError` that says why, a file that is truncated or corrupt, of another
format version, or (for resuming) made with another config, env id or spaces.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from meta_rl.config import ConfigError, from_dict
from meta_rl.experiment import ExperimentConfig
from meta_rl.runs import remove_orphaned_temp_files, write_atomic

__all__ = [
    "FORMAT_VERSION",
    "AgentState",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointNotFound",
    "Located",
    "agent_state_from_checkpoint",
    "agent_state_from_payload",
    "check_compatible",
    "load_checkpoint",
    "locate",
    "save_checkpoint",
]

FORMAT_VERSION = 1
_MAGIC = b"METARL-CKPT\n"
_NAME = re.compile(r"^ckpt_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, of another format, config or environment."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No checkpoint where one was asked for (:func:`locate`)."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise ``payload`` (plain types and tensors) with its digest, atomically."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    write_atomic(Path(path), _MAGIC + digest + b"\n" + body)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint file; raise :class:`CheckpointError` when it is unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: {e}") from e
    head = len(_MAGIC)
    if not data.startswith(_MAGIC) or len(data) < head + 65:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a meta_rl checkpoint (bad header): corrupt or "
            "written by something else"
        )
    digest, body = data[head : head + 64], data[head + 65 :]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt (checksum mismatch: truncated or modified); "
            "resume from an older checkpoint in the same folder"
        )
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be decoded: {e}") from e
    if not isinstance(payload, dict) or "meta" not in payload:
        raise CheckpointError(f"checkpoint {str(path)!r} has no 'meta' section")
    version = payload["meta"].get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}; this code reads "
            f"version {FORMAT_VERSION} only"
        )
    return payload


def check_compatible(
    payload: dict[str, Any],
    *,
    config_hash: str,
    env_id: str,
    obs_shape: tuple[int, ...],
    action_shape: tuple[int, ...],
    path: Path | str = "checkpoint",
    config: dict[str, Any] | None = None,
) -> None:
    """Refuse a checkpoint of another config, env id or observation/action shapes.

    With ``config`` (this run's resolved config) a config mismatch names the keys that differ,
    with the checkpoint's value and this run's.
    """
    meta = payload["meta"]
    problems = []
    if meta.get("env_id") != env_id:
        problems.append(f"env id {meta.get('env_id')!r} (this run: {env_id!r})")
    if tuple(meta.get("obs_shape", ())) != tuple(obs_shape):
        problems.append(
            f"observation shape {tuple(meta.get('obs_shape', ()))} (this run: {obs_shape})"
        )
    if tuple(meta.get("action_shape", ())) != tuple(action_shape):
        problems.append(
            f"action shape {tuple(meta.get('action_shape', ()))} (this run: {action_shape})"
        )
    if meta.get("config_hash") != config_hash:
        problems.append(
            f"config hash {meta.get('config_hash')!r} (this run: {config_hash!r})"
            + _changed_keys(payload.get("config"), config)
        )
    if problems:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match this run: it has "
            + "; ".join(problems)
            + ". Resume with the run's own config.yaml (metarl train --resume RUN_DIR); only "
            "train.iterations, train.total_env_steps, train.max_minutes, train.device, "
            "train.torch_threads, logging.* and the names may change on resume"
        )


def _changed_keys(old: Any, new: dict[str, Any] | None) -> str:
    """``", differing in: ppo.lr 0.0003 -> 0.5"`` (checkpoint's value -> this run's)."""
    if not isinstance(old, dict) or new is None:
        return ""
    from meta_rl.experiment import config_changes, hashed_config

    changes = config_changes(hashed_config(old), hashed_config(new))
    if not changes:
        return ""
    return ", differing in: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes)


class CheckpointManager:
    """``ckpt_<iteration>.pt`` files in one folder: keeps the last ``keep_last`` and ``best.pt``."""

    def __init__(self, directory: Path, keep_last: int = 1, *, create: bool = True) -> None:
        self.directory = Path(directory)
        self.keep_last = keep_last
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)

    def checkpoints(self) -> list[Path]:
        """Numbered checkpoints, oldest first."""
        found = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        ckpts = self.checkpoints()
        return ckpts[-1] if ckpts else None

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def save(self, iteration: int, payload: dict[str, Any], is_best: bool = False) -> Path:
        """Write ``ckpt_<iteration>.pt`` (and ``best.pt`` when ``is_best``), prune old ones."""
        path = self.directory / f"ckpt_{iteration:08d}.pt"
        remove_orphaned_temp_files(self.directory)  # from a save that a kill interrupted
        save_checkpoint(path, payload)
        if is_best:
            save_checkpoint(self.best_path, payload)
        for old in self.checkpoints()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path


@dataclass(frozen=True)
class Located:
    """A checkpoint file and the run directory it belongs to (the parent of ``checkpoints/``)."""

    file: Path
    run_dir: Path


SEARCH_PATH_VARIABLE = "METARL_PATH"
"""The environment variable of extra folders (``os.pathsep``-separated) in which a relative
checkpoint path is also looked for (:func:`search_path`)."""

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds the ``meta_rl`` package: in a source checkout, the project root, where
``pretrained/`` ships."""


def search_path() -> list[Path]:
    """Where a relative checkpoint path that does not exist from the working directory is
    looked for, in order: each folder of ``$METARL_PATH``, then the project root (so
    ``pretrained/...``, and a teacher or skill a shipped config names, is found from any
    working directory; from an installed wheel, point ``METARL_PATH`` at a checkout)."""
    extra = os.environ.get(SEARCH_PATH_VARIABLE, "")
    return [Path(d) for d in extra.split(os.pathsep) if d] + [PROJECT_ROOT]


def locate(path: str | Path, *, prefer: Literal["best", "latest"] = "best") -> Located:
    """The one place that finds a checkpoint: ``path`` is a checkpoint file, a run directory or
    its ``checkpoints/`` folder; in a folder, ``prefer="best"`` takes ``best.pt`` when there is
    one (evaluation), else the last ``ckpt_*.pt``; ``"latest"`` takes the last (resume). A
    relative ``path`` that does not exist from the working directory is looked for in the
    folders of :func:`search_path`, in order.

    Raises :class:`CheckpointNotFound` (a ``CheckpointError`` and a ``FileNotFoundError``) that
    says what was looked for.
    """
    p = Path(path)
    if not p.exists() and not p.is_absolute():
        p = next((base / p for base in search_path() if (base / p).exists()), p)
    if not p.exists():
        places = ", ".join(str(base) for base in search_path())
        raise CheckpointNotFound(
            f"checkpoint {str(p)!r} does not exist: it is not a run directory nor a checkpoint "
            f"file here nor under {places} (${SEARCH_PATH_VARIABLE} adds folders); pass a run "
            "directory (runs/<run>) or a checkpoint file (runs/<run>/checkpoints/best.pt)"
        )
    if p.is_file():
        file = p
    else:
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        manager = CheckpointManager(folder, create=False)
        latest = manager.latest()
        if prefer == "best" and manager.best_path.is_file():
            file = manager.best_path
        elif latest is not None:
            file = latest
        else:
            looked = "best.pt and ckpt_*.pt" if prefer == "best" else "ckpt_*.pt"
            raise CheckpointNotFound(
                f"no checkpoint in {str(p)!r} (looked for {looked} in it and in its "
                "checkpoints/ folder): pass a run that saved a checkpoint "
                "(train.checkpoint_every), or a checkpoint file"
            )
    parent = file.parent
    return Located(file, parent.parent if parent.name == "checkpoints" else parent)


@dataclass(frozen=True)
class AgentState:
    """What :class:`meta_rl.agent.meta_agent.MetaAgent` needs from a checkpoint."""

    config: ExperimentConfig
    obs_dim: int
    action_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    networks: dict[str, torch.Tensor]
    meta: dict[str, Any]
    task_dim: int | None = None
    """The width of the true task features, in runs whose training read them (a student's
    policy reads as many predicted ones)."""


def agent_state_from_checkpoint(path: Path) -> AgentState:
    """Load the agent part of a checkpoint (file or run dir, best else last)."""
    file = locate(path).file
    return agent_state_from_payload(load_checkpoint(file), file)


def agent_state_from_payload(payload: dict[str, Any], file: Path) -> AgentState:
    """The agent part of a loaded checkpoint ``payload`` (read from ``file``)."""
    try:
        config = from_dict(ExperimentConfig, payload["config"])
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {str(file)!r} holds an invalid config: {e}") from e
    meta = payload["meta"]
    return AgentState(
        config=config,
        obs_dim=int(np.prod(meta["obs_shape"])),
        action_dim=int(np.prod(meta["action_shape"])),
        action_low=np.asarray(payload["action_low"], dtype=np.float32),
        action_high=np.asarray(payload["action_high"], dtype=np.float32),
        networks=payload["networks"],
        meta=meta,
        task_dim=None if meta.get("task_dim") is None else int(meta["task_dim"]),
    )
