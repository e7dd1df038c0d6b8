"""Meta-training throughput of 1 process against N processes (torchrun) on the same meta-batch.

Runs ``metarl train`` three times on the same config and total tasks per meta-batch: one process
with one thread, one process with N threads (``train.torch_threads``, ``env.num_threads``), and N
processes of one thread each under ``torchrun --standalone``; prints a Markdown table of the
wall time and the medians (over the iterations after the first) of the collection throughput
(``time/env_steps_per_s``, summed over the processes) and of the whole iteration's (env steps
of all processes / the slowest process's iteration time). docs/distributed.md has the figures.

    python scripts/bench_distributed.py --nproc 2 [config overrides]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = (
    "env.tasks_per_batch=128",
    "env.episode_steps=50",
    "env.episodes_per_trial=2",
    "env.eval_tasks=2",
    "train.iterations=40",
    "train.eval_every=1000",
    "train.checkpoint_every=1000",
)


def run(name: str, nproc: int, threads: int, args: argparse.Namespace, out: Path) -> str:
    launcher = ["-m", "meta_rl"]
    if nproc > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        launcher += ["-m", "meta_rl"]
    runs = out / name
    cmd = [sys.executable, *launcher, "train", "--config", args.config, f"runs_dir={runs}"]
    cmd += [*DEFAULTS, f"train.torch_threads={threads}", f"env.num_threads={threads}"]
    cmd += args.overrides
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (metrics,) = runs.glob("*/metrics.jsonl")
    rec = [json.loads(line) for line in metrics.read_text().splitlines()][1:]
    collect = statistics.median(r["time/env_steps_per_s"] for r in rec)
    whole = statistics.median(
        (r["env_steps"] - p["env_steps"]) / r["time/iteration_s"]
        for p, r in itertools.pairwise(rec)
    )
    return f"| {name} | {wall:.1f} | {collect:,.0f} | {whole:,.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2, help="Processes of the torchrun run.")
    parser.add_argument("--config", default="configs/smoke.yaml", help="Experiment YAML.")
    parser.add_argument("overrides", nargs="*", help="Config overrides after the defaults.")
    args = parser.parse_args()
    n = args.nproc
    rows = ["| run | wall s | collection env steps/s | whole iteration env steps/s |"]
    rows.append("| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows.append(run("1 process, 1 thread", 1, 1, args, out))
        rows.append(run(f"1 process, {n} threads", 1, n, args, out))
        rows.append(run(f"{n} processes, 1 thread each", n, 1, args, out))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
