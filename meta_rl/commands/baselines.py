"""``metarl baselines``: train an SB3 baseline (multi-task, oracle) or record a scratch one."""

from __future__ import annotations

import argparse

from meta_rl.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="Baseline YAML, e.g. configs/baselines/multitask_ppo.yaml (repeatable: one run each).",
    )
    parser.add_argument(
        "--run-dir", default=None, help="Write into this folder (only with a single --config)."
    )
    parser.add_argument(
        "--help-config", action="store_true", help="List every config key and exit."
    )
    parser.add_argument(
        "overrides", nargs="*", help="Config overrides key=value (e.g. total_timesteps=10000)."
    )


def run(args: argparse.Namespace) -> int:
    from meta_rl.baselines.config import BaselineConfig
    from meta_rl.config import config_help, load_config

    if args.help_config:
        print("\n".join(config_help(BaselineConfig)))
        return 0
    if not args.config:
        raise UsageError("--config is required")
    if args.run_dir is not None and len(args.config) > 1:
        raise UsageError("--run-dir needs a single --config")
    from meta_rl.baselines.train import train_baseline

    configs = [load_config(BaselineConfig, p, list(args.overrides)) for p in args.config]
    for cfg in configs:
        run_dir = train_baseline(cfg, run_dir=args.run_dir)
        print(f"{cfg.kind} baseline: {run_dir}")
    return 0
