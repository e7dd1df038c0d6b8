"""Weights & Biases dashboards of an evaluation, in the training run's project.

Logged keys: ``eval/success@k`` and ``eval/return@k`` for the agent (``eval/<method>/...`` for
the other methods, with ``_ci_low``/``_ci_high`` and ``_iqm`` companions), the adaptation curve
as an image (``eval/adaptation_curve``) and as a W&B line plot (``eval/adaptation_curve_plot``),
a table of every method x episode (``eval/curves``) and the videos (``eval/video/...``). The run
is offline by default and lives in ``<run_dir>/wandb``; ``wandb sync <run_dir>/wandb/offline-run-*``
uploads it later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from meta_rl.evaluation.report import EvalReport, MethodResult

__all__ = ["VALID_MODES", "log_evaluation", "metric_dict", "resolve_mode"]

VALID_MODES = ("offline", "online", "disabled")


def resolve_mode(configured: str) -> str:
    """The W&B mode: ``WANDB_MODE`` from the environment when set, else the configured one."""
    mode = os.environ.get("WANDB_MODE", "").strip() or configured
    if mode == "dryrun":  # W&B's old name of offline
        mode = "offline"
    if mode not in VALID_MODES:
        raise ValueError(f"wandb_mode: got {mode!r}; allowed: {', '.join(VALID_MODES)}")
    return mode


def _prefix(method: MethodResult) -> str:
    return "eval" if method.kind == "agent" else f"eval/{method.name}"


def metric_dict(report: EvalReport) -> dict[str, float]:
    """Scalar metrics per method and episode index k (1-based): ``eval/success@k`` and friends."""
    out: dict[str, float] = {}
    for m in report.methods:
        p = _prefix(m)
        for metric in ("success", "return"):
            for k, s in enumerate(m.curves[metric], start=1):
                out[f"{p}/{metric}@{k}"] = s.mean
                out[f"{p}/{metric}@{k}_ci_low"] = s.ci_low
                out[f"{p}/{metric}@{k}_ci_high"] = s.ci_high
                out[f"{p}/{metric}@{k}_iqm"] = s.iqm
    return out


def log_evaluation(
    report: EvalReport,
    *,
    run_dir: str | Path,
    project: str,
    mode: str,
    plots: Mapping[str, Path],
    videos: Sequence[tuple[str, Path]],
    name: str | None = None,
) -> Path | None:
    """Log ``report`` to a W&B run in ``<run_dir>/wandb``; returns the run's folder (None when
    disabled). ``plots`` maps a metric to its PNG; ``videos`` holds ``(caption, mp4)`` pairs."""
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    import wandb

    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        dir=str(root),
        mode=mode,  # type: ignore[arg-type]
        job_type="eval",
        group=root.name,
        name=name or f"{root.name}-eval",
        config={"eval": report.to_dict()["protocol"], "env_id": report.env_id},
        reinit="create_new",
    )
    try:
        scalars = metric_dict(report)
        run.log(scalars)
        run.summary.update(scalars)

        ks = list(range(1, report.methods[0].results.num_episodes + 1))
        table = wandb.Table(
            columns=["method", "episode", "success", "success_ci_low", "success_ci_high", "return"]
        )
        for m in report.methods:
            for k, (s, r) in enumerate(zip(m.curves["success"], m.curves["return"], strict=True)):
                table.add_data(m.name, k + 1, s.mean, s.ci_low, s.ci_high, r.mean)
        media: dict[str, Any] = {"eval/curves": table}
        media["eval/adaptation_curve_plot"] = wandb.plot.line_series(
            xs=ks,
            ys=[[s.mean for s in m.curves["success"]] for m in report.methods],
            keys=[m.name for m in report.methods],
            title="Success rate per episode of the trial",
            xname="episode k",
        )
        for metric, png in plots.items():
            key = "eval/adaptation_curve" if metric == "success" else f"eval/{metric}_curve"
            media[key] = wandb.Image(str(png), caption=f"{metric} against episode k")
        for i, (caption, mp4) in enumerate(videos):
            media[f"eval/video/{i}"] = wandb.Video(str(mp4), caption=caption, format="mp4")
        run.log(media)
        run_folder = Path(run.dir).parent
    finally:
        run.finish()
    return run_folder
