"""``metarl bench-train``: meta-training throughput and held-out learning curves per variant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "Benchmark meta-training throughput and learning curves."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/bench_train", help="Output folder (JSON, PNG).")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["reach", "push", "pick_place"],
        help="Task variants to run (configs/<variant>.yaml each).",
    )
    parser.add_argument("--iterations", type=int, default=30, help="Iterations per variant.")
    parser.add_argument("--eval-every", type=int, default=5, help="Held-out evaluation period.")
    parser.add_argument("--config-dir", default="configs", help="Folder of the variant YAMLs.")
    parser.add_argument(
        "overrides", nargs="*", help="Overrides for every variant (e.g. env.tasks_per_batch=8)."
    )


def run(args: argparse.Namespace) -> int:
    from meta_rl.benchmark import bench_train
    from meta_rl.config import ConfigError

    try:
        summary = bench_train(
            Path(args.out),
            variants=args.variants,
            iterations=args.iterations,
            eval_every=args.eval_every,
            config_dir=Path(args.config_dir),
            overrides=args.overrides,
        )
    except (ConfigError, ValueError) as e:
        print(f"metarl bench-train: error: {e}", file=sys.stderr)
        return 2
    for name, res in summary["variants"].items():
        last = res["curve"][-1] if res["curve"] else {}
        print(
            f"{name:>11}: {res['env_steps_per_s']:.0f} env steps/s collecting, "
            f"{res['overall_steps_per_s']:.0f} overall, {res['env_steps']} steps; held-out "
            f"success ep1 {last.get('success_first_episode', float('nan')):.2f} -> "
            f"ep{res['episodes_per_trial']} {last.get('success_last_episode', float('nan')):.2f}"
        )
    print(f"wrote {Path(args.out) / 'bench_train.json'} and bench_train.png")
    return 0
