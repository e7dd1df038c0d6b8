"""``metarl bench-envs``: time our envs against Meta-World's pick-place-v3 (see envs.benchmark)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from meta_rl.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=20_000, help="Env steps per measurement.")
    parser.add_argument("--repeats", type=int, default=3, help="Best of this many runs.")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1, 8, 64], help="Batched sub-env counts."
    )
    parser.add_argument(
        "--metaworld-venv",
        default=".bench/mw-venv",
        help="Virtualenv for Meta-World (built with pip on first use); 'none' skips it.",
    )
    parser.add_argument(
        "--out", default="outputs/bench_envs.json", help="Where to write the JSON results."
    )


def run(args: argparse.Namespace) -> int:
    from envs.benchmark import format_table, run_benchmark

    if args.steps < 100 or args.repeats < 1 or min(args.sizes) < 1:
        raise UsageError("--steps >= 100, --repeats >= 1 and --sizes >= 1 please")
    venv = None if args.metaworld_venv == "none" else Path(args.metaworld_venv)
    result = run_benchmark(
        steps=args.steps, repeats=args.repeats, sizes=tuple(args.sizes), metaworld_venv=venv
    )
    print(format_table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return 0
