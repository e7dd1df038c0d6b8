"""``metarl run``: the main job. Meta-train on a config, then evaluate on unseen objects.

Training writes the run directory (config, metrics, checkpoints, W&B); evaluation adds
``eval/eval.json``, the adaptation-curve PNG, the markdown table and the videos to it.
Overrides prefixed with ``eval.`` go to the evaluation config, all others to the experiment.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_EVAL_CONFIG = Path("configs/eval/default.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="Experiment YAML (e.g. configs/default.yaml)."
    )
    parser.add_argument(
        "--eval-config",
        default=None,
        help=f"Evaluation YAML (default: {DEFAULT_EVAL_CONFIG} when it exists, else defaults).",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Overrides section.key=value; eval.key=value for the evaluation (eval.num_tasks=5).",
    )


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(experiment overrides, evaluation overrides without their ``eval.`` prefix)."""
    experiment = [o for o in overrides if not o.startswith("eval.")]
    evaluation = [o.removeprefix("eval.") for o in overrides if o.startswith("eval.")]
    return experiment, evaluation


def run(args: argparse.Namespace) -> int:
    from meta_rl.commands.evaluate import print_success_curves
    from meta_rl.config import load_config
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import evaluate_checkpoint
    from meta_rl.experiment import load_experiment
    from meta_rl.training.distributed import launched_rank
    from meta_rl.training.trainer import train

    exp_overrides, eval_overrides = split_overrides(list(args.overrides))
    eval_path = args.eval_config
    if eval_path is None and DEFAULT_EVAL_CONFIG.is_file():
        eval_path = str(DEFAULT_EVAL_CONFIG)
    # Both configs are checked before the (long) training starts.
    cfg = load_experiment(args.config, exp_overrides)
    eval_cfg = load_config(EvalConfig, eval_path, eval_overrides)
    run_dir = train(cfg)
    if launched_rank() != 0:
        return 0  # under torchrun (docs/distributed.md) rank 0 alone evaluates
    report = evaluate_checkpoint(run_dir, eval_cfg)
    print_success_curves(report)
    print(f"run dir: {run_dir}")
    for name, path in sorted(report.files.items()):
        print(f"  {name}: {path}")
    return 0
