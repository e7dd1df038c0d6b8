"""``metarl video``: film one episode of a checkpoint's agent on one task."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="Run directory or checkpoint file of the agent."
    )
    parser.add_argument(
        "--task-index",
        type=int,
        default=0,
        help="Which sampled task (the same numbering as eval.json; default 0).",
    )
    parser.add_argument(
        "--split",
        choices=("train", "test", "edge"),
        default=None,
        help="Task split (default: test).",
    )
    parser.add_argument(
        "--episode",
        type=int,
        default=1,
        help="Episode k of the trial to film; episodes before it run unfilmed (default 1).",
    )
    parser.add_argument(
        "--zero-shot", action="store_true", help="Film the agent with its context encoder off."
    )
    parser.add_argument("--out", default=None, help="MP4 path (default: <run_dir>/videos/).")
    parser.add_argument(
        "--config", default=None, help="Evaluation YAML: task seed, fps, camera, device."
    )
    parser.add_argument("overrides", nargs="*", help="Config overrides key=value.")


def run(args: argparse.Namespace) -> int:
    from meta_rl.config import load_config
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import render_checkpoint_video

    overrides = list(args.overrides)
    if args.split is not None:
        overrides.append(f"split={args.split}")
    cfg = load_config(EvalConfig, args.config, overrides)
    path, success = render_checkpoint_video(
        args.checkpoint,
        cfg,
        task_index=args.task_index,
        episode=args.episode,
        out=args.out,
        zero_shot=args.zero_shot,
    )
    print(f"wrote {path} (success: {'yes' if success else 'no'})")
    return 0
