"""Nothing in the learning path names a task family (issue 27): the agent's parts, the trainer
and every update learn from what a family offers through the task protocol (observations,
rewards, ``Task.features()``, the task distribution), never from which family it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEARNING_PATH = sorted(
    [
        *(ROOT / "meta_rl" / "agent").glob("*.py"),
        *(
            ROOT / "meta_rl" / "training" / f"{name}.py"
            for name in (
                "trainer",
                "rollout",
                "ppo",
                "ppo_update",
                "elbo_update",
                "maml_update",
                "imitation",
                "privileged",
                "teacher",
                "state",
                "optim",
            )
        ),
        ROOT / "meta_rl" / "checkpoint.py",
        ROOT / "meta_rl" / "trial.py",
    ]
)
FAMILY = re.compile(
    r"pick[_ ]?place|\bpush\b|\breach\b(?! the)|pendulum|reach1d|metarl/|metarl-toy"
    r"|(?<![\w.])envs\.",
    re.IGNORECASE,
)
"""A family's name or id, or an import of the arm families (``envs.``); "gradients reach the"
is English, not the family."""


@pytest.mark.parametrize("path", LEARNING_PATH, ids=lambda p: p.name)
def test_the_learning_path_names_no_family(path: Path) -> None:
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FAMILY.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_the_check_catches_a_family_name() -> None:
    assert FAMILY.search('if cfg.env.id == "metarl/PickPlace-v0":')
    assert FAMILY.search("from envs.tasks import GOAL_BOUNDS")
    assert FAMILY.search("goal = features[:, :3]  # the pick_place goal")
    assert not FAMILY.search("gradients reach the meta-parameters")
    assert not FAMILY.search("from meta_rl.task_envs.vector import make_task_vector_env")
