"""Train SB3 baselines: ``python scripts/train_baselines.py --config configs/baselines/X.yaml``.

The same as ``metarl baselines`` (see docs/evaluation.md).
"""

from __future__ import annotations

import sys

from meta_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["baselines", *sys.argv[1:]]))
