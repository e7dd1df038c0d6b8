"""Meta-training benchmark: throughput and held-out learning curves for each task variant.

For each variant a short meta-training run is made from ``configs/<variant>.yaml`` (budget and
evaluation frequency overridden), and its ``metrics.jsonl`` gives:

* ``env_steps_per_s``: environment steps per second of trial collection (simulator + policy +
  encoder, no learning), the mean over iterations;
* ``overall_steps_per_s``: environment steps per second of wall-clock time including the PPO and
  ELBO updates and evaluations;
* ``updates_per_s``: gradient updates per second of the learning phase;
* ``curve``: held-out (test split) success and return of the last episode of a trial against
  environment steps.

:func:`bench_train` writes ``bench_train.json`` and ``bench_train.png`` under ``out_dir``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from meta_rl.experiment import load_experiment
from meta_rl.logging import read_metrics
from meta_rl.trainer import train

__all__ = ["VARIANT_CONFIGS", "bench_train", "plot_curves", "summarize_run"]

VARIANT_CONFIGS: dict[str, str] = {
    "reach": "reach.yaml",
    "push": "push.yaml",
    "pick_place": "pick_place.yaml",
}


def summarize_run(run_dir: Path, wall_s: float) -> dict[str, Any]:
    """Throughput and the held-out curve of one finished run."""
    records = read_metrics(run_dir)
    if not records:
        raise ValueError(f"run {str(run_dir)!r} logged no metrics")
    k = max(
        int(key.removeprefix("adapt/return_ep"))
        for r in records
        for key in r
        if key.startswith("adapt/return_ep")
    )
    curve = [
        {
            "env_steps": r["env_steps"],
            "iteration": r["iteration"],
            "success_last_episode": r[f"adapt/success_ep{k}"],
            "success_first_episode": r["adapt/success_ep1"],
            "return_last_episode": r[f"adapt/return_ep{k}"],
            "return_first_episode": r["adapt/return_ep1"],
        }
        for r in records
        if f"adapt/return_ep{k}" in r
    ]
    total_steps = int(records[-1]["env_steps"])
    return {
        "run_dir": str(run_dir),
        "iterations": int(records[-1]["iteration"]),
        "env_steps": total_steps,
        "wall_s": wall_s,
        "env_steps_per_s": float(np.mean([r["time/env_steps_per_s"] for r in records])),
        "updates_per_s": float(np.mean([r["time/updates_per_s"] for r in records])),
        "overall_steps_per_s": total_steps / max(wall_s, 1e-9),
        "episodes_per_trial": k,
        "curve": curve,
    }


def plot_curves(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Held-out success and return of the last episode against env steps, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in results.items():
        steps = [p["env_steps"] for p in res["curve"]]
        k = res["episodes_per_trial"]
        axes[0].plot(
            steps,
            [p["success_last_episode"] for p in res["curve"]],
            "o-",
            label=f"{name} (episode {k})",
        )
        axes[1].plot(
            steps,
            [p["return_last_episode"] for p in res["curve"]],
            "o-",
            label=f"{name} (episode {k})",
        )
        axes[1].plot(
            steps,
            [p["return_first_episode"] for p in res["curve"]],
            "x--",
            label=f"{name} (episode 1)",
            alpha=0.6,
        )
    axes[0].set_ylabel("held-out success rate")
    axes[1].set_ylabel("held-out episode return")
    for ax in axes:
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Meta-training on held-out (test split) tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bench_train(
    out_dir: Path,
    *,
    variants: Sequence[str] = tuple(VARIANT_CONFIGS),
    iterations: int = 30,
    eval_every: int = 5,
    config_dir: Path = Path("configs"),
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Run a short meta-training per variant; write JSON and a PNG plot under ``out_dir``."""
    unknown = [v for v in variants if v not in VARIANT_CONFIGS]
    if unknown:
        raise ValueError(f"variants: got {unknown[0]!r}; allowed: {', '.join(VARIANT_CONFIGS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in variants:
        cfg = load_experiment(
            Path(config_dir) / VARIANT_CONFIGS[name],
            [
                f"train.iterations={iterations}",
                f"train.eval_every={eval_every}",
                f"train.checkpoint_every={iterations}",
                "logging.wandb_mode=disabled",
                f"runs_dir={out_dir / 'runs'}",
                f"experiment=bench-{name}",
                *overrides,
            ],
        )
        start = time.perf_counter()
        run_dir = train(cfg)
        results[name] = summarize_run(run_dir, time.perf_counter() - start)
    summary = {"variants": results, "iterations": iterations, "overrides": list(overrides)}
    (out_dir / "bench_train.json").write_text(json.dumps(summary, indent=2))
    plot_curves(results, out_dir / "bench_train.png")
    return summary
