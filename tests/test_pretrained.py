"""The shipped agents in ``pretrained/``: each is a complete, small, loadable run that still does
what its README says on this stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_rl.checkpoint import load_checkpoint, locate
from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.runner import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in (ROOT / "pretrained").iterdir() if p.is_dir())


def _readme_protocol(episodes: int, **controls: bool) -> EvalConfig:
    """The READMEs' protocol: 200 held-out tasks (test split, task seed 1234), deterministic
    actions, one trial per task (configs/eval/pick_place_ladder.yaml)."""
    return EvalConfig(
        split="test",
        num_tasks=200,
        num_seeds=1,
        num_episodes=episodes,
        task_seed=1234,
        zero_shot=False,
        num_videos=0,
        num_bootstrap=1000,
        wandb_mode="disabled",
        progress_bar=False,
    ).replace(**controls)


TOLERANCE = 0.03
"""How far below the lower bound of its README's interval a shipped agent's mean may fall on
the README's own tasks before the test fails (other library versions move a few trials)."""


def test_there_is_a_shipped_pick_place_agent() -> None:
    assert {"pick_place_particles", "pick_place_revealed"} <= {p.name for p in SHIPPED}


@pytest.mark.parametrize("agent", SHIPPED, ids=[p.name for p in SHIPPED])
def test_each_shipped_agent_has_its_checkpoint_config_and_command(agent: Path) -> None:
    file = locate(agent).file
    assert file.stat().st_size <= 20 * 2**20  # a few MB, at most 20
    payload = load_checkpoint(file)
    readme = (agent / "README.md").read_text()
    assert "metarl train" in readme and f"{payload['meta']['env_steps']:,}" in readme
    assert (agent / "config.yaml").is_file()


@pytest.mark.slow
def test_the_revealed_teacher_places_unseen_objects_as_its_readme_says(tmp_path: Path) -> None:
    """README: 0.97 [0.94, 0.99] on the 200 tasks, one episode."""
    cfg = _readme_protocol(episodes=1)
    agent = ROOT / "pretrained" / "pick_place_revealed"
    report = evaluate_checkpoint(agent, cfg, out_dir=tmp_path, wandb_root=tmp_path)
    assert report.methods[0].curves["success"][0].mean >= 0.94 - TOLERANCE


@pytest.mark.slow
def test_the_particle_student_finds_hidden_goals_as_its_readme_says(tmp_path: Path) -> None:
    """``pretrained/pick_place_particles`` on its README's 200 tasks: episode 3 at or above its
    README's lower bound (0.92) minus the tolerance, a gain from episode 1 to 3 whose interval
    is above 0, above its zero-shot control in every episode (paired), and above the same
    agent without refinement in episode 3 (paired): what the README says, or the env, the
    teacher's policy, the reward model or the particle posterior changed under it."""
    cfg = _readme_protocol(episodes=3, zero_shot=True, no_refine=True)
    report = evaluate_checkpoint(
        ROOT / "pretrained" / "pick_place_particles", cfg, out_dir=tmp_path
    )
    by_name = {m.name: m for m in report.methods}
    agent = by_name["meta-agent"]
    success = [c.mean for c in agent.curves["success"]]
    assert success[2] >= 0.92 - TOLERANCE, success
    assert agent.gains["success"].ci_low > 0.0, agent.gains["success"]
    control = by_name["zero-shot"].vs_reference["success"]
    assert max(d.ci_high for d in control) < 0.0, control
    unrefined = by_name["no-refine"].vs_reference["success"]
    assert unrefined[2].ci_high < 0.0, unrefined
