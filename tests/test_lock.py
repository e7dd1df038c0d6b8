"""The dependency locks in requirements/ agree with pyproject.toml.

``bash scripts/lock.sh`` writes the locks from pyproject.toml's ranges; the README's two commands
install from them. These tests fail when a range changed without a refreshed lock, or when a lock
pins a version outside pyproject.toml's range.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ("cpu.lock", "cuda.lock", "mujoco33.lock")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _pins(path: Path) -> dict[str, list[tuple[Version, Marker | None]]]:
    pins: dict[str, list[tuple[Version, Marker | None]]] = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            marker = Marker(m.group(3)) if m.group(3) else None
            pins.setdefault(canonicalize_name(m.group(1)), []).append((Version(m.group(2)), marker))
    return pins


@functools.cache
def _lock_hash() -> str:
    """The fingerprint of today's pyproject.toml, computed as ``bash scripts/lock.sh`` computes
    the one it records: by running ``scripts/lock_hash.py`` (build tooling, standard library
    only, so the lock refresh needs no installed toolkit)."""
    done = subprocess.run(
        [sys.executable, "scripts/lock_hash.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(r) for r in [*project["dependencies"], *extras.get("dev", [])]]


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_was_made_from_the_current_pyproject(lock: str) -> None:
    text = (ROOT / "requirements" / lock).read_text()
    recorded = re.search(r"pyproject-dependencies-sha256: ([0-9a-f]{64})", text)
    assert recorded, f"requirements/{lock} has no pyproject fingerprint: run bash scripts/lock.sh"
    assert recorded.group(1) == _lock_hash(), (
        f"pyproject.toml's dependencies changed since requirements/{lock} was made: "
        "run bash scripts/lock.sh"
    )


@pytest.mark.parametrize("lock", LOCKS)
def test_every_dependency_is_pinned_within_its_range(lock: str) -> None:
    pins = _pins(ROOT / "requirements" / lock)
    torch_pins = _pins(ROOT / "requirements" / "torch-cpu.txt")
    if lock != "cuda.lock":
        assert "torch" not in pins, "the CPU locks leave torch to requirements/torch-cpu.txt"
        pins = {**pins, **torch_pins}
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements/{lock}"
        for version, _ in pins[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements/{lock} pins {req.name}=={version}, outside pyproject's {req}"
            )


def test_every_pin_is_hashed_and_exact() -> None:
    for lock in LOCKS:
        text = (ROOT / "requirements" / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[-1])
        for block in blocks:
            if block.strip() and not block.startswith("#"):
                assert "==" in block.splitlines()[0], f"{lock}: not exact: {block.splitlines()[0]}"
                assert "--hash=sha256:" in block, f"{lock}: no hash: {block.splitlines()[0]}"


def test_the_stacks_share_every_version_but_torch_and_mujoco() -> None:
    """The CUDA stack and the MuJoCo-3.3 stack differ from the CPU stack only where they must."""
    cpu = _pins(ROOT / "requirements" / "cpu.lock")
    for lock, allowed in (("cuda.lock", "torch"), ("mujoco33.lock", "mujoco")):
        other = _pins(ROOT / "requirements" / lock)
        shared = set(cpu) & set(other)
        differ = sorted(n for n in shared - {allowed} if cpu[n] != other[n])
        assert differ == [], f"{lock} differs from cpu.lock in {differ} (allowed: {allowed} only)"
    assert str(_pins(ROOT / "requirements" / "mujoco33.lock")["mujoco"][0][0]).startswith("3.3.")


def test_torch_pins_agree_across_stacks() -> None:
    (cpu,) = _pins(ROOT / "requirements" / "torch-cpu.txt")["torch"]
    (cuda,) = _pins(ROOT / "requirements" / "cuda.lock")["torch"]
    assert cpu[0].local == "cpu" and cpu[0].public == cuda[0].public


def test_setup_refuses_an_unknown_stack() -> None:
    result = subprocess.run(
        ["bash", "-c", "source scripts/_setup_env.sh && METARL_STACK=gpu install_toolkit ."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "METARL_STACK: got 'gpu'; allowed: cpu, cuda, mujoco33" in result.stderr
