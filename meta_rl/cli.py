"""The single front door: ``metarl <verb> [options]``.

Each verb lives in ``meta_rl/commands/<verb>.py`` and offers ``add_arguments(parser)`` and
``run(args) -> int``. The verb modules are imported only when their verb is used, so
``metarl --help`` answers at once without importing torch or MuJoCo.

Errors: a verb raises; :func:`main` turns a ``ValueError`` (bad config, checkpoint or argument:
``ConfigError``, ``CheckpointError`` and ``UsageError`` are ones, ``meta_rl.errors``) or a
``FileNotFoundError`` into ``metarl <verb>: error: <message>`` on stderr and exit code 2, with
no traceback; ``JobStopped`` (stopped from outside) into ``metarl <verb>: stopped:
<message>`` and exit code 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from meta_rl.errors import JobStopped, run_exit_hooks

__all__ = ["VERBS", "build_parser", "main"]


#: verb -> (module under meta_rl.commands, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "run": ("run", "The main job: meta-train, then evaluate on unseen objects, plot and film it."),
    "train": ("train", "Meta-train an agent across tasks (or --resume a run)."),
    "evaluate": (
        "evaluate",
        "Few-episode adaptation on unseen objects, with confidence intervals.",
    ),
    "video": ("video", "Render a video of an agent on a task."),
    "check-env": (
        "check_env",
        "Check that a task family (yours too) has what meta-training and evaluation need.",
    ),
    "baselines": ("baselines", "Train the stable-baselines3 baselines from a config."),
    "bench-envs": ("bench_envs", "Benchmark the environments against Meta-World."),
    "bench-train": ("bench_train", "Benchmark meta-training throughput and learning curves."),
}


def _load(verb: str) -> ModuleType:
    module_name, _ = VERBS[verb]
    return importlib.import_module(f"meta_rl.commands.{module_name}")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; with ``verb`` given, that verb's arguments are added in full."""
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Model-based meta-RL for pick-and-place with simulated robot arms.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, (_, help_text) in VERBS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            _load(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen verb; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(verb if verb in VERBS else None)
    args = parser.parse_args(args_list)
    try:
        result: int = _load(args.verb).run(args)
    except (ValueError, FileNotFoundError) as e:
        # One line, whatever the message (a wrapped library error may span several).
        message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        print(f"metarl {args.verb}: error: {message}", file=sys.stderr)
        result = 2
    except JobStopped as e:
        print(f"metarl {args.verb}: stopped: {e}", file=sys.stderr)
        result = 1
    run_exit_hooks(result)  # a torchrun worker leaves past the interpreter's teardown
    return result


if __name__ == "__main__":
    raise SystemExit(main())
