"""The mutation check (scripts/mutation_check.py, issue 30) keeps planting its bugs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_mutation_check_still_plants_every_bug() -> None:
    """scripts/mutation_check.py (run it to see which test catches each planted bug) refers to
    source text that must still exist, once, or its mutants would silently stop applying."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mutation_check.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "5 mutants apply"
