"""The teacher-student stage (``privileged.teacher``, docs/privileged.md): a student starts from a
revealed-task teacher's policy, reads the task features its head predicts from the belief, keeps
the teacher's policy frozen for ``teacher_freeze_iterations``, then fine-tunes it with PPO."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.configs import pick_place_config
from helpers.training import one_iteration
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.checkpoint import load_checkpoint
from meta_rl.config import ConfigError, to_dict
from meta_rl.experiment import ExperimentConfig, hashed_config, load_experiment
from meta_rl.logging import read_metrics
from meta_rl.task_envs.vector import make_task_vector_env
from meta_rl.training import trainer as trainer_module
from meta_rl.training.privileged import task_features
from meta_rl.training.trainer import Trainer, train

torch.set_num_threads(1)
REVEALED = ("env.kwargs.reveal_task=true", "encoder.use_context=false")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny revealed-task teacher on pick-place, trained for 2 iterations."""
    return train(
        pick_place_config(tmp_path_factory.mktemp("teacher"), *REVEALED, "train.iterations=2")
    )


def _student(tmp_path: Path, teacher: Path, *overrides: str) -> ExperimentConfig:
    return pick_place_config(
        tmp_path,
        f"privileged.teacher={teacher}",
        "privileged.task_inference_weight=1.0",
        *overrides,
    )


def test_the_student_acts_as_its_teacher_when_its_head_predicts_the_true_features(
    tmp_path: Path, teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = Trainer(_student(tmp_path, teacher), None)
    try:
        n = 4
        tasks = trainer.venv.task_distribution.sample(n, "train", np.random.default_rng(5))
        feats = task_features(tasks)
        trainer.venv.set_tasks(tasks)
        obs, _ = trainer.venv.reset(seed=11)
        # The teacher's env appends exactly the task features to the student's observation.
        revealed_env = make_task_vector_env("metarl/PickPlace-v0", n, reveal_task=True)
        try:
            revealed_env.set_tasks(tasks)
            revealed, _ = revealed_env.reset(seed=11)
        finally:
            revealed_env.close()
        np.testing.assert_array_equal(revealed, np.concatenate([obs, feats.numpy()], axis=1))

        head = trainer.networks.task_head
        assert head is not None and head.feature_norm is not None
        monkeypatch.setattr(head, "forward", lambda belief: head.targets(feats))
        student = trainer.agent
        ref = MetaAgent.from_checkpoint(teacher, device="cpu")
        student.begin_trial(n)
        ref.begin_trial(n)
        for _ in range(3):  # the student's belief moves; the teacher's stays at the prior
            mine, theirs = student.step(obs, True), ref.step(revealed, True)
            np.testing.assert_allclose(mine.env_action, theirs.env_action, atol=1e-5, rtol=0)
            torch.testing.assert_close(mine.value, theirs.value, atol=1e-5, rtol=0)
            student.observe(obs, mine.env_action, np.ones(n), obs, np.zeros(n))
        assert not torch.allclose(student.belief_features(), ref.belief_features())
    finally:
        trainer.close()


def test_the_policy_stays_the_teachers_during_the_freeze_and_learns_after_it(
    tmp_path: Path, teacher: Path
) -> None:
    trainer = Trainer(_student(tmp_path, teacher, "privileged.teacher_freeze_iterations=2"), None)
    try:
        nets = trainer.networks
        start = {k: v.clone() for k, v in nets.state_dict().items()}
        frozen = [trainer.iteration(), trainer.iteration()]
        after_freeze = {k: v.clone() for k, v in nets.state_dict().items()}
        tuned = trainer.iteration()
        end = nets.state_dict()
    finally:
        trainer.close()
    for k, v in start.items():
        if k.startswith("policy.") or k.startswith("task_head.feature_norm."):
            assert torch.equal(after_freeze[k], v), k  # the teacher's policy, normaliser, targets
    changed = {k for k in start if not torch.equal(start[k], after_freeze[k])}
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("task_head.net.") for k in changed)
    assert any(k.startswith("decoder.") for k in changed)
    assert [m["teacher/policy_frozen"] for m in (*frozen, tuned)] == [1.0, 1.0, 0.0]
    assert all("losses/policy_loss" not in m and "losses/task_inference" in m for m in frozen)
    assert "losses/policy_loss" in tuned
    tuned_keys = {k for k in start if not torch.equal(after_freeze[k], end[k])}
    assert any(k.startswith("policy.actor.") for k in tuned_keys)
    assert "policy.obs_norm.mean" in tuned_keys


def test_a_student_trains_with_the_asymmetric_critic_and_rl_gradients_too(
    tmp_path: Path, teacher: Path
) -> None:
    over = ("privileged.critic=true", "encoder.rl_gradients=true")
    metrics, changed = one_iteration(_student(tmp_path, teacher, *over))
    assert np.isfinite(metrics["losses/value_loss"]) and metrics["losses/updates"] > 0
    for part in ("privileged_critic.", "policy.actor.", "encoder.", "task_head.net."):
        assert any(k.startswith(part) for k in changed), part
    assert not any(k.startswith("task_head.feature_norm.") for k in changed)


def test_no_leak_perturbed_task_features_leave_the_students_actions_and_beliefs_unchanged(
    tmp_path: Path, teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _student(tmp_path, teacher)

    def run() -> tuple[tuple[torch.Tensor, ...], dict[str, float]]:
        trainer = Trainer(cfg, None)
        try:
            batch = trainer.collect()
            assert batch.task_features is not None
            seen = (batch.raw_actions, batch.beliefs, batch.values, batch.task_features)
            return seen, trainer.evaluate()
        finally:
            trainer.close()

    (actions, beliefs, values, feats), ref_eval = run()

    def perturbed(tasks: list[object], device: torch.device | str = "cpu") -> torch.Tensor:
        f = task_features(tasks, device)
        return f + 10.0 * torch.randn(f.shape, generator=torch.Generator().manual_seed(3))

    monkeypatch.setattr(trainer_module, "task_features", perturbed)
    (actions2, beliefs2, values2, feats2), eval2 = run()
    assert not torch.allclose(feats, feats2)  # the perturbation reached the training batch
    # beliefs: what the policy conditioned on, the head's predicted features included
    assert torch.equal(actions, actions2) and torch.equal(beliefs, beliefs2)
    assert torch.equal(values, values2) and eval2 == ref_eval


def test_resume_across_the_freeze_boundary_is_exact_and_does_not_read_the_teacher_again(
    tmp_path: Path, teacher: Path
) -> None:
    copy = tmp_path / "teacher_copy"
    shutil.copytree(teacher, copy)
    over = ("privileged.teacher_freeze_iterations=2", "train.eval_every=10")
    full = train(_student(tmp_path / "a", copy, "train.iterations=3", *over))
    killed = train(_student(tmp_path / "b", copy, "train.iterations=1", *over))
    shutil.rmtree(copy)  # a resume restores the student's own checkpoint
    cfg = _student(tmp_path / "b", copy, "train.iterations=3", *over)
    resumed = train(cfg, resume=killed)
    ckpt = "checkpoints/ckpt_00000003.pt"
    a, b = load_checkpoint(full / ckpt), load_checkpoint(resumed / ckpt)
    assert a["networks"].keys() == b["networks"].keys()
    for k in a["networks"]:
        torch.testing.assert_close(a["networks"][k], b["networks"][k], atol=1e-6, rtol=0, msg=k)
    assert [m["teacher/policy_frozen"] for m in read_metrics(resumed)] == [1.0, 1.0, 0.0]
    assert b["meta"]["teacher"] == a["meta"]["teacher"]
    assert b["meta"]["teacher"]["file"] == str(copy / "checkpoints" / "best.pt")

    # The acting agent holds the student's head (it acts) but no training-only part.
    agent = MetaAgent.from_checkpoint(resumed / ckpt, device="cpu")
    nets = agent.networks
    assert nets.task_head is not None and nets.privileged_critic is None
    for k, v in nets.state_dict().items():
        assert torch.equal(v, b["networks"][k]), k
    agent.begin_trial(2)
    obs = np.zeros((2, nets.obs_dim), dtype=np.float32)
    assert agent.act(obs, deterministic=True).shape == (2, nets.action_dim)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("privileged.teacher_freeze_iterations=-1",), r"privileged\.teacher_freeze_iterations"),
        (("privileged.teacher_freeze_iterations=3",), r"teacher_freeze_iterations: got 3 .*null"),
        (("privileged.teacher=x",), r"privileged\.teacher: got 'x' .*task_inference_weight"),
        (("privileged.teacher=''", "privileged.task_inference_weight=1"), r"empty path"),
        (
            ("privileged.teacher=x", "privileged.task_inference_weight=1", "maml.enabled=true"),
            r"privileged\.teacher: .*maml\.enabled=false",
        ),
        (
            ("privileged.teacher=x", "privileged.task_inference_weight=1", *REVEALED[1:]),
            r"privileged\.teacher: .*encoder\.use_context true",
        ),
        (
            ("privileged.teacher=x", "privileged.task_inference_weight=1", *REVEALED[:1]),
            r"privileged\.teacher: .*leave env\.kwargs\.reveal_task false",
        ),
    ],
)
def test_bad_teacher_settings_are_refused_naming_the_key(
    overrides: tuple[str, ...], match: str
) -> None:
    with pytest.raises((ConfigError, ValueError), match=match):
        load_experiment(None, list(overrides))


def test_a_teacher_that_is_missing_or_does_not_fit_is_refused_before_anything_is_written(
    tmp_path: Path, teacher: Path
) -> None:
    hidden_teacher = train(pick_place_config(tmp_path / "hidden", "encoder.use_context=false"))
    student_run = train(_student(tmp_path / "student", teacher))
    cases = [
        (tmp_path / "nowhere", (), r"privileged\.teacher: checkpoint .* does not exist"),
        (hidden_teacher, (), r"observations of width \d+ .*reveal_task=true"),
        (student_run, (), r"encoder\.use_context True .*reveal_task=true"),
        (teacher, ("policy.hidden=[8]",), r"policy\.hidden \[16\], this run \[8\]"),
        (teacher, ("encoder.latent_dim=3",), r"encoder\.latent_dim 5, this run 3"),
        (teacher, ("env.kwargs.reward_type=sparse",), r"env\.kwargs\.reward_type None, this"),
    ]
    for i, (path, overrides, match) in enumerate(cases):
        runs = tmp_path / f"case{i}"
        with pytest.raises(ValueError, match=match):
            train(_student(runs, path, *overrides))
        assert not (runs / "runs").exists() or not any((runs / "runs").iterdir())


def test_the_teacher_keys_at_their_defaults_leave_the_config_hash_of_older_runs() -> None:
    on = to_dict(load_experiment(None, ["privileged.critic=true"]))
    assert "teacher" not in hashed_config(on)["privileged"]
    del on["privileged"]["teacher"], on["privileged"]["teacher_freeze_iterations"]
    assert hashed_config(on) == hashed_config(
        to_dict(load_experiment(None, ["privileged.critic=true"]))
    )
    student = to_dict(
        load_experiment(None, ["privileged.teacher=t", "privileged.task_inference_weight=1"])
    )
    assert hashed_config(student)["privileged"]["teacher"] == "t"


def test_teacher_then_student_then_metarl_evaluate(tmp_path: Path, teacher: Path) -> None:
    from meta_rl.cli import main

    run = train(
        _student(tmp_path, teacher, "train.iterations=3", "privileged.teacher_freeze_iterations=1")
    )
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(run),
            "--config",
            str(Path(__file__).resolve().parents[1] / "configs" / "eval" / "smoke.yaml"),
            "--out",
            str(out),
            "num_videos=0",
            "wandb_mode=disabled",
        ]
    )
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["checkpoint"].startswith(str(run))
    assert set(result["methods"]) == {"meta-agent", "zero-shot"}
