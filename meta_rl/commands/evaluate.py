"""``metarl evaluate``: a checkpoint and its baselines on unseen tasks, K episodes per trial."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from meta_rl.errors import UsageError

if TYPE_CHECKING:
    from meta_rl.evaluation.report import EvalReport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", help="Run directory (its best, else last checkpoint) or checkpoint file."
    )
    parser.add_argument(
        "--config",
        default=None,
        help="Evaluation YAML (configs/eval/default.yaml); defaults when left out.",
    )
    parser.add_argument("--out", default=None, help="Output folder (default: <run_dir>/eval).")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="PATH",
        help="SB3 baseline run dir or model.zip to evaluate too (repeatable).",
    )
    parser.add_argument(
        "--help-config", action="store_true", help="List every config key and exit."
    )
    parser.add_argument(
        "overrides", nargs="*", help="Config overrides key=value (e.g. num_tasks=5 num_seeds=2)."
    )


def run(args: argparse.Namespace) -> int:
    from meta_rl.config import config_help, load_config
    from meta_rl.evaluation.config import EvalConfig

    if args.help_config:
        print("\n".join(config_help(EvalConfig)))
        return 0
    if not args.checkpoint:
        raise UsageError("--checkpoint is required")
    from meta_rl.evaluation.runner import evaluate_checkpoint

    cfg = load_config(EvalConfig, args.config, list(args.overrides))
    if args.baseline:
        cfg = cfg.replace(baselines=(*cfg.baselines, *args.baseline))
    report = evaluate_checkpoint(args.checkpoint, cfg, out_dir=args.out)
    out = report.files.get("out_dir", "")
    print_success_curves(report)
    print(f"wrote {out}")
    return 0


def print_success_curves(report: EvalReport) -> None:
    """One console line per method: its success per episode, and the distinct trials when the
    seeds were identical (``metarl evaluate`` and ``metarl run``)."""
    for m in report.methods:
        curve = " ".join(f"{s.mean:.2f}" for s in m.curves["success"])
        trials = f"{m.distinct_trials} distinct trials of {m.results.num_trials}"
        same = (
            f" ({trials}: the seeds were identical)"
            if m.distinct_trials < m.results.num_trials
            else ""
        )
        print(f"{m.name:>16}: success per episode k = {curve}{same}")
