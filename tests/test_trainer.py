"""The trainer on a tiny task family written in the tests (toy/PointGoal-v0, helpers/toy_family)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers.configs import toy_config
from helpers.params import assert_same_params, checkpoint_params
from helpers.paths import ROOT
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.checkpoint import CheckpointError, load_checkpoint
from meta_rl.logging import read_metrics
from meta_rl.training.optim import apply_update
from meta_rl.training.trainer import Trainer, train

torch.set_num_threads(1)


def test_training_writes_metrics_checkpoints_and_a_loadable_agent(tmp_path: Path) -> None:
    run_dir = train(toy_config(tmp_path))
    assert run_dir.parent == tmp_path / "runs"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["env"]["id"] == "toy/PointGoal-v0"
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert [r["env_steps"] for r in records] == [64, 128, 192]
    for key in (
        "train/return_ep1",
        "train/success_ep2",
        "losses/policy_loss",
        "losses/elbo_total",
        "losses/elbo_kl",
        "time/env_steps_per_s",
        "time/updates_per_s",
    ):
        assert key in records[0], key
    assert "adapt/return_ep2" not in records[0]
    for key in ("adapt/return_ep1", "adapt/return_ep2", "adapt/task_model_reward_mse"):
        assert key in records[1] and key in records[2]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.pt", "ckpt_00000002.pt", "ckpt_00000003.pt"]
    agent = MetaAgent.from_checkpoint(run_dir, device="cpu")
    assert agent.env_id == "toy/PointGoal-v0"
    agent.begin_trial(2)
    actions = agent.act(np.zeros((2, 2), dtype=np.float32), deterministic=True)
    assert actions.shape == (2, 2)


def test_a_time_budget_ends_the_run_like_a_last_iteration(tmp_path: Path) -> None:
    # A budget already spent after the first iteration: the run evaluates and checkpoints there.
    run_dir = train(toy_config(tmp_path, "train.iterations=50", "train.max_minutes=1e-9"))
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [1]
    assert "adapt/return_ep2" in records[0]
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.pt", "ckpt_00000001.pt"]
    # A time budget is a budget: resuming with another one is allowed.
    train(toy_config(tmp_path, "train.iterations=2", "train.max_minutes=10"), resume=run_dir)
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2]


@pytest.mark.parametrize("rl_gradients", [False, True])
def test_killed_and_resumed_run_makes_the_same_next_update(
    tmp_path: Path, rl_gradients: bool
) -> None:
    over = (f"encoder.rl_gradients={str(rl_gradients).lower()}", "train.checkpoint_every=1")
    full = train(toy_config(tmp_path / "a", "train.iterations=3", *over))
    killed = train(toy_config(tmp_path / "b", "train.iterations=2", *over))
    # Killed after logging iteration 3 but before its checkpoint: that record is dropped.
    with (killed / "metrics.jsonl").open("a") as f:
        f.write('{"iteration": 3, "env_steps": 192}\n')
    # The "killed" run's last checkpoint is iteration 2; resume it to iteration 3.
    resumed = train(toy_config(tmp_path / "b", "train.iterations=3", *over), resume=killed)
    assert resumed == killed
    ckpt = "checkpoints/ckpt_00000003.pt"
    assert_same_params(checkpoint_params(full / ckpt), checkpoint_params(resumed / ckpt))
    full_opt = load_checkpoint(full / ckpt)["trainer"]["ppo_opt"]["state"]
    res_opt = load_checkpoint(resumed / ckpt)["trainer"]["ppo_opt"]["state"]
    torch.testing.assert_close(full_opt[0]["exp_avg"], res_opt[0]["exp_avg"], atol=1e-6, rtol=0)
    assert [r["iteration"] for r in read_metrics(resumed)] == [1, 2, 3]
    a, b = read_metrics(full)[-1], read_metrics(resumed)[-1]
    assert a["train/return"] == b["train/return"]


def test_resume_refuses_another_config_and_corrupt_checkpoints(tmp_path: Path) -> None:
    run_dir = train(toy_config(tmp_path, "train.iterations=2"))
    with pytest.raises(CheckpointError, match=r"config hash"):
        train(toy_config(tmp_path, "train.iterations=3", "ppo.lr=0.01"), resume=run_dir)
    last = run_dir / "checkpoints" / "ckpt_00000002.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"corrupt"):
        train(toy_config(tmp_path, "train.iterations=3"), resume=run_dir)
    with pytest.raises(CheckpointError, match=r"not a run directory"):
        train(toy_config(tmp_path), resume=tmp_path / "nowhere")


def test_apply_update_skips_non_finite_loss_and_gradient() -> None:
    layer = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in layer.parameters()]
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.ones(1, 2)
    assert not apply_update(opt, layer(x).sum() * float("nan"), layer.parameters(), 1.0)
    # A finite loss whose gradient is not: d sqrt(|w - w0|) / dw at w = w0.
    weight = layer.weight
    bad_grad = torch.sqrt((weight - weight.detach()).abs()).sum()
    assert torch.isfinite(bad_grad)
    assert not apply_update(opt, bad_grad, layer.parameters(), 1.0)
    for p, q in zip(layer.parameters(), before, strict=True):
        assert torch.equal(p, q)
    assert apply_update(opt, layer(x).sum(), layer.parameters(), 1.0)
    assert not torch.equal(next(layer.parameters()), before[0])


def test_non_finite_updates_are_skipped_then_stop_the_run_keeping_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import meta_rl.training.ppo_update as ppo_update_mod

    real = ppo_update_mod.ppo_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        terms = real(*args, **kwargs)
        calls["n"] += 1
        # Iteration 1 (4 PPO updates) is clean; every loss after it is NaN.
        if calls["n"] > 4:
            return type(terms)(**{**terms.__dict__, "total": terms.total * float("nan")})
        return terms

    monkeypatch.setattr(ppo_update_mod, "ppo_loss", flaky)
    cfg = toy_config(
        tmp_path,
        "train.iterations=5",
        "train.checkpoint_every=1",
        "train.max_consecutive_nonfinite=3",
    )
    run_dir = train(cfg)
    records = read_metrics(run_dir)
    assert records[-1]["train/stopped_nonfinite"] == 1.0
    assert records[-1]["losses/skipped_updates"] == 3.0
    assert records[-1]["iteration"] == 2
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "ckpt_00000001.pt" in names and "ckpt_00000002.pt" not in names
    # The skipped updates leave the policy as it was after the last good update (its
    # observation normaliser still moves with the data).
    calls["n"] = 0
    trainer = Trainer(toy_config(tmp_path / "direct", "train.max_consecutive_nonfinite=10"), None)
    try:
        start = {k: v.clone() for k, v in trainer.networks.policy.state_dict().items()}
        trainer.iteration()
        good = {k: v.clone() for k, v in trainer.networks.policy.state_dict().items()}
        assert any(not torch.equal(start[k], good[k]) for k in good if "actor" in k)
        trainer.iteration()  # every PPO loss NaN: all its updates skipped
        after = trainer.networks.policy.state_dict()
        for k in good:
            if not k.startswith("obs_norm."):
                assert torch.equal(after[k], good[k]), k
        assert trainer.counters.skipped_updates == 4
    finally:
        trainer.close()


def test_nan_rewards_from_the_env_never_reach_the_parameters(tmp_path: Path) -> None:
    cfg = toy_config(tmp_path, "env.kwargs={nan_reward: true}", "train.max_consecutive_nonfinite=2")
    run_dir = train(cfg)
    records = read_metrics(run_dir)
    assert records[-1]["train/stopped_nonfinite"] == 1.0
    assert not (run_dir / "checkpoints" / "ckpt_00000001.pt").exists()


def test_maml_enabled_trains_and_logs_the_inner_loop(tmp_path: Path) -> None:
    run_dir = train(toy_config(tmp_path, "maml.enabled=true", "train.iterations=2"))
    last = read_metrics(run_dir)[-1]
    assert last["maml/inner_loss_post"] < last["maml/inner_loss_pre"]
    assert "maml/step_size/actor.4.weight" in last  # the output layer (adapt_layers: last)


def test_wandb_offline_files_go_into_the_run_dir(tmp_path: Path) -> None:
    run_dir = train(toy_config(tmp_path, "train.iterations=2", "logging.wandb_mode=offline"))
    (run,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = run.glob("run-*.wandb")
    data = log.read_bytes()
    # The metrics the run logged are in W&B's own log (keys of training and of evaluation).
    for key in (b"train/return", b"losses/policy_loss", b"adapt/success_ep1"):
        assert key in data, key


def test_cli_train_and_resume_subprocess(tmp_path: Path) -> None:
    config = tmp_path / "toy.yaml"
    cfg = toy_config(tmp_path, "train.iterations=1")
    from meta_rl.config import save_config_yaml

    save_config_yaml(cfg, config)
    boot = (
        "import sys, helpers.toy_family; from meta_rl.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env_path = {"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    import os

    env = {**os.environ, **env_path}
    out = subprocess.run(
        [sys.executable, "-c", boot, "train", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1].removeprefix("run dir: "))
    out = subprocess.run(
        [sys.executable, "-c", boot, "train", "--resume", str(run_dir), "train.iterations=2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2]
    out = subprocess.run(
        [sys.executable, "-c", boot, "train", "--resume", str(run_dir), "ppo.lr=0.5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2
    assert "config hash" in out.stderr


def test_smoke_config_runs_end_to_end_on_reach(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train.py"),
            "--config",
            str(ROOT / "configs" / "smoke.yaml"),
            f"runs_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1].removeprefix("run dir: "))
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [1, 2]
    assert "adapt/task_model_reward_mse" in records[-1]
    agent = MetaAgent.from_checkpoint(run_dir)
    assert agent.env_id == "metarl/Reach-v0"
