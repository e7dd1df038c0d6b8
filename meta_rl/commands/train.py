"""``metarl train``: meta-train an agent across tasks, or ``--resume RUN_DIR`` a killed run."""

from __future__ import annotations

import argparse
from pathlib import Path

from meta_rl.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="Experiment YAML (e.g. configs/default.yaml)."
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="Continue this run from its last checkpoint with its own config.yaml.",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="Use this run directory for a fresh run (missing or empty; one that holds a run is "
        "refused: --resume it instead). When torchrun --max-restarts starts the job again after "
        "a failure, the run continues from its last checkpoint there.",
    )
    parser.add_argument(
        "--help-config", action="store_true", help="List every config key and exit."
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Config overrides section.key=value (e.g. train.iterations=50 train.seed=1).",
    )


def _has_checkpoint(run_dir: Path) -> bool:
    from meta_rl.checkpoint import CheckpointNotFound, locate

    try:
        locate(run_dir, prefer="latest")
    except CheckpointNotFound:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from meta_rl.config import config_help
    from meta_rl.experiment import ExperimentConfig, load_experiment

    if args.help_config:
        print("\n".join(config_help(ExperimentConfig)))
        return 0
    from meta_rl.training.distributed import launched_rank, restarted_by_torchrun
    from meta_rl.training.trainer import train

    if args.resume is not None:
        run_dir = Path(args.resume)
        if args.config is not None:
            raise UsageError("--resume uses the run's config.yaml; drop --config")
        if args.run_dir is not None:
            raise UsageError("--resume continues the run in its own directory; drop --run-dir")
        config_path = (run_dir.parent.parent if run_dir.is_file() else run_dir) / "config.yaml"
        if not config_path.is_file():
            raise UsageError(
                f"--resume {str(run_dir)!r}: no run there ({str(config_path)!r} is missing); pass "
                "a run directory (runs/<run>) or one of its checkpoint files"
            )
        cfg = load_experiment(config_path, args.overrides)
        out = train(cfg, resume=run_dir)
    else:
        cfg = load_experiment(args.config, args.overrides)
        fresh = Path(args.run_dir) if args.run_dir else None
        if fresh is not None and restarted_by_torchrun() and _has_checkpoint(fresh):
            # torchrun --max-restarts started the job again after a failure: continue the run
            # (train() checks that it is this config's).
            out = train(cfg, resume=fresh)
        else:
            out = train(cfg, run_dir=fresh)

    if launched_rank() == 0:  # under torchrun, rank 0 alone
        print(f"run dir: {out}")
    return 0
