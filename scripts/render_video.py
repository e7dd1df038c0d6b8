"""Film one episode of an agent on one task: ``python scripts/render_video.py --checkpoint RUN``.

The same as ``metarl video`` (see docs/evaluation.md).
"""

from __future__ import annotations

import sys

from meta_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["video", *sys.argv[1:]]))
