"""Benchmark meta-training: ``python scripts/bench_train.py --out runs/bench_train``.

The same as ``metarl bench-train`` (logic in meta_rl/training/benchmark.py).
"""

from __future__ import annotations

import sys

from meta_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench-train", *sys.argv[1:]]))
