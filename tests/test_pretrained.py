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


def _forty_test_tasks(episodes: int) -> EvalConfig:
    """40 held-out tasks (test split, task seed 1234), deterministic actions."""
    return EvalConfig(
        split="test",
        num_tasks=40,
        num_episodes=episodes,
        task_seed=1234,
        zero_shot=False,
        num_videos=0,
        num_bootstrap=200,
        wandb_mode="disabled",
        progress_bar=False,
    )


def test_there_is_a_shipped_pick_place_agent() -> None:
    assert {"pick_place", "pick_place_revealed"} <= {p.name for p in SHIPPED}


@pytest.mark.parametrize("agent", SHIPPED, ids=[p.name for p in SHIPPED])
def test_each_shipped_agent_has_its_checkpoint_config_and_command(agent: Path) -> None:
    file = locate(agent).file
    assert file.stat().st_size <= 20 * 2**20  # a few MB, at most 20
    payload = load_checkpoint(file)
    readme = (agent / "README.md").read_text()
    assert "metarl train" in readme and f"{payload['meta']['env_steps']:,}" in readme
    assert (agent / "config.yaml").is_file()


def test_the_revealed_pick_place_agent_still_places_unseen_objects(tmp_path: Path) -> None:
    """Its README reports 0.97 on 200 test tasks; 40 of them (0.93 when it was shipped) must
    stay above 0.8, or the env or the agent code changed under it."""
    cfg = _forty_test_tasks(episodes=1)
    agent = ROOT / "pretrained" / "pick_place_revealed"
    report = evaluate_checkpoint(agent, cfg, out_dir=tmp_path, wandb_root=tmp_path)
    assert report.methods[0].curves["success"][0].mean >= 0.8


def test_the_shipped_meta_agent_still_finds_hidden_goals_on_unseen_objects(tmp_path: Path) -> None:
    """Its README reports 0.94 / 0.98 / 0.98 on 200 test tasks; on 40 of them (0.925 / 0.95 /
    0.975 when it was shipped) episode 3 must stay above 0.8 and not below episode 1, or the
    env, the skill or the agent code changed under it."""
    cfg = _forty_test_tasks(episodes=3)
    report = evaluate_checkpoint(ROOT / "pretrained" / "pick_place", cfg, out_dir=tmp_path)
    success = [c.mean for c in report.methods[0].curves["success"]]
    assert success[2] >= 0.8 and success[2] >= success[0], success


def test_the_particle_student_finds_hidden_goals_on_the_raw_arm(tmp_path: Path) -> None:
    """``pretrained/pick_place_particles``: its README reports 0.83 in every episode on 200 test
    tasks (zero-shot 0.14 / 0.14 / 0.11). On 40 of them (0.85 / 0.86 / 0.85, zero-shot 0.05 /
    0.11 / 0.13, paired -0.80 / -0.75 / -0.72 when it was shipped) every episode must stay
    above 0.7 and above its zero-shot control by 0.4 in the paired difference, or the env, the
    teacher's policy, the reward model or the particle posterior changed under it."""
    cfg = _forty_test_tasks(episodes=3).replace(zero_shot=True)
    report = evaluate_checkpoint(
        ROOT / "pretrained" / "pick_place_particles", cfg, out_dir=tmp_path
    )
    agent, control = report.methods[0], report.methods[1]
    success = [c.mean for c in agent.curves["success"]]
    assert min(success) >= 0.7, success
    paired = [d.mean for d in control.vs_reference["success"]]
    assert max(paired) <= -0.4, paired
