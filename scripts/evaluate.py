"""Evaluate a checkpoint and its baselines: ``python scripts/evaluate.py --checkpoint RUN``.

The same as ``metarl evaluate`` (see docs/evaluation.md).
"""

from __future__ import annotations

import sys

from meta_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["evaluate", *sys.argv[1:]]))
