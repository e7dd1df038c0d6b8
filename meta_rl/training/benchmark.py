"""Meta-training speed benchmarks: throughput and held-out learning curves per task variant,
and the cost of the MAML outer update.

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
:func:`bench_meta_update` times, side by side on the same collected trials, the outer update
without the inner loop and with it (second and first order), and prints the ratios. The
ablations (training the agent's variants and comparing them) are
:mod:`meta_rl.evaluation.ablations`."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meta_rl.experiment import ExperimentConfig, load_experiment
from meta_rl.logging import read_metrics
from meta_rl.training.trainer import Trainer, train

__all__ = [
    "VARIANT_CONFIGS",
    "bench_meta_update",
    "bench_train",
    "exit_with_parent",
    "plot_curves",
    "short_run_config",
    "summarize_run",
    "timed_train",
]

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
    from matplotlib.ticker import FuncFormatter

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
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Meta-training on held-out (test split) tasks")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def short_run_config(
    path: Path,
    experiment: str,
    iterations: int,
    eval_every: int,
    out_dir: Path,
    overrides: Sequence[str],
) -> ExperimentConfig:
    """A benchmark run's config: ``path`` with a short budget, no W&B, runs under ``out_dir``."""
    return load_experiment(
        path,
        [
            f"train.iterations={iterations}",
            f"train.eval_every={eval_every}",
            f"train.checkpoint_every={iterations}",
            "logging.wandb_mode=disabled",
            f"runs_dir={out_dir / 'runs'}",
            f"experiment={experiment}",
            *overrides,
        ],
    )


def exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Worker initializer: end this process once ``parent_pid`` is no longer its parent.

    A killed parent (``kill``, not Ctrl-C, which reaches the whole process group) would
    otherwise leave its training workers running on, competing for the cores. Checkpoints are
    written atomically, so a worker ended mid-run can be resumed with ``metarl train --resume``.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def timed_train(cfg: ExperimentConfig) -> tuple[Path, float]:
    """Train ``cfg``: its run directory and the wall-clock seconds it took."""
    start = time.perf_counter()
    run_dir = train(cfg)
    return run_dir, time.perf_counter() - start


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
        cfg = short_run_config(
            Path(config_dir) / VARIANT_CONFIGS[name],
            f"bench-{name}",
            iterations,
            eval_every,
            out_dir,
            overrides,
        )
        results[name] = summarize_run(*timed_train(cfg))
    summary = {"variants": results, "iterations": iterations, "overrides": list(overrides)}
    (out_dir / "bench_train.json").write_text(json.dumps(summary, indent=2))
    plot_curves(results, out_dir / "bench_train.png")
    return summary


def bench_meta_update(
    cfg: ExperimentConfig, run_dir: Path, *, repeats: int = 10
) -> dict[str, float]:
    """Seconds per outer update (loss + backward) without and with the inner loop, same data.

    ``cfg`` must enable MAML. One trainer collects one meta-batch of trials; the outer loss of
    all its trials is then timed, interleaved ``repeats`` times, (a) with no inner step (the
    plain PPO objective on the same episodes), (b) with the inner steps of ``cfg.maml`` (second
    order unless ``maml.first_order``) and (c) first order; medians and ratios are returned.
    Nothing is applied to the parameters.
    """
    if not cfg.maml.enabled:
        raise ValueError("maml.enabled: bench_meta_update needs maml.enabled=true")
    variants = {
        "plain": cfg,
        "maml": cfg,
        "maml_first_order": cfg.replace(maml=cfg.maml.replace(first_order=True)),
    }
    trainers = {name: Trainer(c, Path(run_dir) / name, None) for name, c in variants.items()}
    try:
        batch = trainers["maml"].collect()
        # The same trials; the plain objective replays no inner step.
        batches = {name: batch for name in trainers}
        batches["plain"] = dataclasses.replace(batch, inner_batches={})
        adv, ret = trainers["maml"].advantages(batch)
        idx = torch.arange(batch.rewards.shape[1], device=adv.device)
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(repeats + 1):  # the first round warms up
            for name, trainer in trainers.items():
                trainer.networks.train()
                start = time.perf_counter()
                terms = trainer.maml_loss(batches[name], adv, ret, idx)
                trainer.state.ppo_opt.zero_grad(set_to_none=True)
                terms.total.backward()
                if adv.is_cuda:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    finally:
        for trainer in trainers.values():
            trainer.close()
    med = {name: float(np.median(t[1:])) for name, t in times.items()}
    return {
        "plain_s": med["plain"],
        "maml_s": med["maml"],
        "maml_first_order_s": med["maml_first_order"],
        "ratio_maml_to_plain": med["maml"] / med["plain"],
        "ratio_first_order_to_plain": med["maml_first_order"] / med["plain"],
        "samples": float(batch.rewards.numel()),
    }
