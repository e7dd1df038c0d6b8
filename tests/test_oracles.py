"""Scripted oracles solve every variant on both splits: every object can be reached, pushed,
picked and placed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.oracles import evaluate_oracle, make_oracle
from envs.scene import obs_slices
from envs.tasks import TaskDistribution

torch.set_num_threads(1)

CASES = [
    ("metarl/Reach-v0", "reach", 20),
    ("metarl/Push-v0", "push", 20),
    ("metarl/PickPlace-v0", "pick_place", 20),
]


@pytest.mark.parametrize(("env_id", "variant", "n"), CASES)
@pytest.mark.parametrize("split", ["train", "test"])
def test_oracle_success_rate(env_id: str, variant: str, n: int, split: str) -> None:
    # Test tasks come from their own seed stream.
    rng = np.random.default_rng({"train": 100, "test": 200}[split])
    tasks = TaskDistribution(variant).sample(n, split, rng)
    success = evaluate_oracle(env_id, tasks, num_threads=2)
    assert success.mean() >= 0.9, [t for t, ok in zip(tasks, success, strict=True) if not ok]


def test_pick_place_oracle_covers_every_shape() -> None:
    from envs.tasks import SHAPES, Task

    tasks = [
        Task(shape, size, mass, 1.0, (0.06, -0.06), 0.2, (-0.04, 0.08, size + 0.15))
        for shape in SHAPES
        for size, mass in ((0.016, 0.4), (0.032, 0.02))
    ]
    success = evaluate_oracle("metarl/PickPlace-v0", tasks, num_threads=2)
    assert success.all(), [t for t, ok in zip(tasks, success, strict=True) if not ok]


def test_random_policy_rarely_succeeds() -> None:
    """The success criterion is not trivially met (so the oracle results mean something)."""
    import envs

    env = envs.make_batched("metarl/PickPlace-v0", 16, num_threads=2)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    success = np.zeros(16, dtype=bool)
    for _ in range(env.max_episode_steps):
        *_, info = env.step(rng.uniform(-1, 1, (16, 4)))
        success |= info["success"] > 0
    env.close()
    assert success.mean() <= 0.1


def test_oracle_needs_the_goal() -> None:
    with pytest.raises(ValueError, match=r"reveal_task=True"):
        make_oracle("metarl/Reach-v0", obs_slices(False))
    with pytest.raises(ValueError, match=r"env_id: got 'x'; allowed: metarl/Reach-v0"):
        make_oracle("x", obs_slices(True))


def test_oracle_solves_side_goal_push() -> None:
    """Every side-goal push task (the ablations' benchmark) is solvable on unseen objects."""
    tasks = TaskDistribution("push", side_goals=0.1).sample(24, "test", np.random.default_rng(2))
    assert evaluate_oracle("metarl/Push-v0", tasks).all()
