"""The fingerprint of pyproject.toml's dependency ranges that each lock in requirements/ records.

``bash scripts/lock.sh`` writes it into the locks' headers; ``tests/test_lock.py`` runs this script
and compares, so a changed range without a refreshed lock fails the tests.

Usage: ``python scripts/lock_hash.py [pyproject.toml]`` prints the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path


def dependencies_sha256(pyproject: Path) -> str:
    """SHA-256 of the sorted runtime and optional dependency specifiers and requires-python."""
    project = tomllib.loads(pyproject.read_text())["project"]
    spec = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {
            k: sorted(v) for k, v in sorted(project.get("optional-dependencies", {}).items())
        },
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "pyproject.toml"
    print(dependencies_sha256(path))
