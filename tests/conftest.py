"""Test-wide settings: headless rendering, offline W&B, one torch thread, gpu marker, and the
learning proofs' seeds and margins."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (scripts/test.sh runs ``-n auto``) each worker gets its share of the
    cores for torch, so that N workers do not each start a thread per core and oversubscribe."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    for item in items:
        if "learning_seed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.learning)

    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Under `--dist loadgroup` each test is a unit that idle workers pull in this order:
        # the minutes-long tests first, so that they start on different workers at once.
        items.sort(key=lambda item: "slow" not in item.keywords)

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# Learning proofs take the `learning_seed` fixture and call `margins(...)`: each asserts its
# effects above their thresholds for one fixed training seed (deterministic for a fixed stack).
# `python scripts/learning_margins.py` reruns them over several seeds (METARL_LEARNING_SEEDS, e.g.
# "0,1,2,3,4") and collects every effect/threshold ratio (METARL_MARGINS_OUT) into
# docs/learning_margins.md: each effect must be at least twice its threshold in every seed.
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "learning_seed" in metafunc.fixturenames:
        seeds = [int(s) for s in os.environ.get("METARL_LEARNING_SEEDS", "0").split(",")]
        metafunc.parametrize("learning_seed", seeds)


Margins = Callable[[str, int, dict[str, tuple[float, float]]], None]


@pytest.fixture
def margins() -> Margins:
    """``margins(test, seed, {statistic: (effect, threshold)})`` records the ratios, then
    asserts ``effect > threshold`` for each (threshold > 0)."""

    def check(test: str, seed: int, effects: dict[str, tuple[float, float]]) -> None:
        out = os.environ.get("METARL_MARGINS_OUT")
        if out:
            rows = [
                {"test": test, "seed": seed, "statistic": k, "effect": e, "threshold": t}
                for k, (e, t) in effects.items()
            ]
            with open(out, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        for name, (effect, threshold) in effects.items():
            assert threshold > 0, name
            assert effect > threshold, (
                f"{test} seed {seed}: {name} = {effect:.4g} <= {threshold:.4g}"
            )

    return check
