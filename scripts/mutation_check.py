"""Plant realistic bugs one at a time and report which test catches each (issue 30).

Each mutant is one exact text replacement in one source file, applied to a fresh copy of the
working tree (tracked and untracked files that git does not ignore) in a temporary directory;
the tests then run in that copy, stopping at the first failure. A mutant no test fails on is
reported as missed, and the script exits 1.

    python scripts/mutation_check.py             # each mutant against the tests that should see it
    python scripts/mutation_check.py --full      # each mutant against the whole suite
    python scripts/mutation_check.py --only gae-sign  # one mutant
    python scripts/mutation_check.py --check     # only check that every mutant still applies
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One planted bug: ``old`` (found exactly once in ``path``) becomes ``new``."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    """The test files that should catch it (the default selection; --full runs every test)."""


MUTANTS = (
    Mutant(
        "gae-sign",
        "GAE bootstraps with the wrong sign: r - gamma V(s') - V(s)",
        "meta_rl/agent/advantages.py",
        "delta = rewards[t] + gamma * not_term * next_value - values[t]",
        "delta = rewards[t] - gamma * not_term * next_value - values[t]",
        ("tests/test_ppo.py",),
    ),
    Mutant(
        "belief-not-reset",
        "the encoder's state carries over from one trial to the next",
        "meta_rl/agent/meta_agent.py",
        "        self._hidden = enc.initial_state(num_envs, self.device)\n",
        "        fresh = enc.initial_state(num_envs, self.device)\n"
        "        keep = self._hidden is not None and self._hidden.shape == fresh.shape\n"
        "        self._hidden = self._hidden if keep else fresh\n",
        ("tests/test_encoder.py", "tests/test_maml_agent.py", "tests/test_trainer.py"),
    ),
    Mutant(
        "obs-slice-shift",
        "the object's position relative to the gripper is written one column late",
        "envs/scene.py",
        '_REL = _BASE_SLICES["object_rel_pos"]',
        '_REL = slice(_BASE_SLICES["object_rel_pos"].start + 1, '
        '_BASE_SLICES["object_rel_pos"].stop + 1)',
        ("tests/test_envs.py", "tests/test_batched.py", "tests/test_oracles.py"),
    ),
    Mutant(
        "maml-no-meta-gradient",
        "the adapted parameters are cut from the meta-parameters (no outer gradient through "
        "the inner step)",
        "meta_rl/agent/maml.py",
        "adapted = {n: t - self.step_size(n) * grads[n] for n, t in adapted.items()}",
        "adapted = {n: (t - self.step_size(n) * grads[n]).detach() for n, t in adapted.items()}",
        ("tests/test_maml.py",),
    ),
    Mutant(
        "particle-weight-sign",
        "the particle posterior subtracts each reward's log-likelihood instead of adding it",
        "meta_rl/agent/particles.py",
        "logw = self.log_weights + loglik",
        "logw = self.log_weights - loglik",
        ("tests/test_imitation.py",),
    ),
)


def _tree_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def _copy_tree(dest: Path) -> None:
    for rel in _tree_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def _plant(copy: Path, mutant: Mutant) -> None:
    path = copy / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise SystemExit(
            f"{mutant.name}: {mutant.path} holds the original text {text.count(mutant.old)} "
            "times (needs exactly 1): update the mutant to the code"
        )
    path.write_text(text.replace(mutant.old, mutant.new))


def run_mutant(mutant: Mutant, *, full: bool, workers: int, timeout: int) -> tuple[str, str]:
    """``(verdict, detail)``: ``caught`` and the failing test, or ``missed``/``timeout``."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        _plant(copy, mutant)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        env.setdefault("MUJOCO_GL", "egl")
        env.setdefault("WANDB_MODE", "disabled")
        # The copy's package, not the installed one: python -m puts the copy first on sys.path.
        where = subprocess.run(
            [sys.executable, "-c", "import meta_rl, envs; print(meta_rl.__file__, envs.__file__)"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if str(copy) not in where.split()[0] or str(copy) not in where.split()[1]:
            raise SystemExit(f"the copy's package is not the one imported: {where}")
        selection = ["tests"] if full else list(mutant.tests)
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        cmd += ["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]
        try:
            proc = subprocess.run(
                [*cmd, *selection],
                cwd=copy,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return "timeout", f"no verdict within {timeout} s"
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.MULTILINE)
        if proc.returncode == 0:
            return "missed", "every selected test passed"
        if failed:
            return "caught", failed[0]
        tail = proc.stdout.strip().splitlines()[-1:] or proc.stderr.strip().splitlines()[-1:]
        return "caught", f"pytest exit {proc.returncode}: {tail[0] if tail else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="Run the whole suite per mutant.")
    parser.add_argument("--only", nargs="*", default=None, help="Mutant names to run.")
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers.")
    parser.add_argument("--timeout", type=int, default=1800, help="Seconds per mutant.")
    parser.add_argument(
        "--check", action="store_true", help="Only check that each mutant's text is in its file."
    )
    args = parser.parse_args()
    names = {m.name for m in MUTANTS}
    unknown = sorted(set(args.only or []) - names)
    if unknown:
        parser.error(f"--only: got {unknown}; allowed: {sorted(names)}")
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    if args.check:
        for mutant in chosen:
            count = (ROOT / mutant.path).read_text().count(mutant.old)
            if count != 1:
                print(f"{mutant.name}: {mutant.path} holds its text {count} times (needs 1)")
                return 1
        print(f"{len(chosen)} mutants apply")
        return 0
    rows, missed = [], 0
    for mutant in chosen:
        start = time.perf_counter()
        verdict, detail = run_mutant(
            mutant, full=args.full, workers=args.workers, timeout=args.timeout
        )
        missed += verdict != "caught"
        rows.append(
            f"| {mutant.name} | {mutant.what} | {verdict} | `{detail}` | "
            f"{time.perf_counter() - start:.0f} |"
        )
        print(rows[-1], flush=True)
    scope = "the whole suite" if args.full else "each mutant's test files"
    print(f"\nMutation check ({scope}, stopping at the first failure):\n")
    print("| mutant | planted bug | verdict | first failing test | seconds |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
