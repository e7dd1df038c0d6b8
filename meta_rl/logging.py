"""Run logging: JSONL metrics always, Weights & Biases (offline by default), a tqdm bar.

Metric keys are namespaced: ``train/`` (returns and success on training tasks), ``adapt/``
(held-out tasks: per-episode returns and success, task-model error), ``losses/``, ``time/``
(throughput). Every call of :meth:`RunLogger.log` appends one JSON line to
``<run_dir>/metrics.jsonl`` holding ``iteration``, ``env_steps`` and the metrics. W&B files go
into ``<run_dir>/wandb/``; the resolved config is its run config and checkpoints are logged as
artifacts.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from meta_rl.experiment import LoggingConfig

__all__ = ["RunLogger", "read_metrics"]


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/inf
    return v


class RunLogger:
    """Writes metrics of a run to JSONL, W&B and a progress bar."""

    def __init__(
        self,
        run_dir: Path,
        cfg: LoggingConfig,
        *,
        run_name: str,
        resolved_config: dict[str, Any],
        total_iterations: int,
        start_iteration: int = 0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self._file = self.metrics_path.open("a")
        self._wandb: Any = None
        if cfg.wandb_mode != "disabled":
            import wandb

            wandb_dir = self.run_dir / "wandb"
            wandb_dir.mkdir(exist_ok=True)
            self._wandb = wandb.init(
                project=cfg.wandb_project,
                name=run_name,
                id=_wandb_id(run_name),
                dir=str(self.run_dir),
                mode=cfg.wandb_mode,
                config=resolved_config,
                resume="allow",
                reinit="create_new",
            )
        self._bar: tqdm[Any] | None = None
        if cfg.progress_bar:
            self._bar = tqdm(
                total=total_iterations, initial=start_iteration, desc="meta-train", unit="it"
            )

    def log(self, iteration: int, env_steps: int, metrics: dict[str, float]) -> None:
        """Append one record (JSONL and W&B)."""
        record = {"iteration": iteration, "env_steps": env_steps}
        record.update({k: _plain(float(v)) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._wandb is not None:
            self._wandb.log({"env_steps": env_steps, **metrics}, step=iteration)

    def progress(self, iteration: int, postfix: dict[str, float]) -> None:
        """Advance the bar to ``iteration`` (done iterations) with e.g. the success rate."""
        if self._bar is None:
            return
        self._bar.update(iteration - self._bar.n)
        self._bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()}, refresh=False)

    def log_checkpoint(self, path: Path, aliases: list[str]) -> None:
        """Log a checkpoint file as a W&B artifact (when W&B is on and artifacts are wanted)."""
        if self._wandb is None or not self.cfg.wandb_artifacts:
            return
        import wandb

        artifact = wandb.Artifact(name=f"{self._wandb.id}-checkpoint", type="model")
        artifact.add_file(str(path))
        self._wandb.log_artifact(artifact, aliases=aliases)

    def close(self) -> None:
        self._file.close()
        if self._bar is not None:
            self._bar.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _wandb_id(run_name: str) -> str:
    # A resumed run continues the same W&B run: the id derives from the run dir name.
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in run_name)
    return safe[-120:] or str(os.getpid())


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of ``<run_dir>/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
