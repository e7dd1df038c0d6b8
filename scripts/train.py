"""Meta-train: ``python scripts/train.py --config configs/default.yaml [key=value ...]``.

The same as ``metarl train`` (``--resume RUN_DIR`` continues a killed run).
"""

from __future__ import annotations

import sys

from meta_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *sys.argv[1:]]))
