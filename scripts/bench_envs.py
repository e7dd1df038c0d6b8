"""Benchmark the envs: ``python scripts/bench_envs.py [--steps N] [--out FILE]``.

The same as ``metarl bench-envs`` (logic in ``envs/benchmark.py``; see docs/envs.md).
"""

from __future__ import annotations

import sys

from meta_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench-envs", *sys.argv[1:]]))
