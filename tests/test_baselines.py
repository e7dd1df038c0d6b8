"""SB3 baselines: training, loading, the AdaptiveAgent wrappers and the baselines command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from meta_rl.baselines.agents import SB3PolicyAgent, ScratchPPOAgent
from meta_rl.baselines.config import BaselineConfig, SB3PPOConfig
from meta_rl.baselines.train import MODEL_FILE, load_baseline, train_baseline
from meta_rl.config import load_config
from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.protocol import (
    AdaptiveAgent,
    TrialResults,
    make_eval_env,
    run_trials,
    sample_tasks,
    set_env_tasks,
)
from meta_rl.evaluation.runner import Method, evaluate_methods
from meta_rl.evaluation.toy import register_toy_env

torch.set_num_threads(1)
TOY = register_toy_env()
ROOT = Path(__file__).resolve().parent.parent
TINY_PPO = SB3PPOConfig(n_steps=64, batch_size=32, n_epochs=2)


def _toy_spaces(reveal_task: bool = False) -> tuple[gym.Space, gym.Space]:
    env = gym.make(TOY, reveal_task=reveal_task)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _params(agent: ScratchPPOAgent, i: int) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in agent.models[i].policy.parameters()])


def _trials(
    agent: AdaptiveAgent, num_tasks: int = 3, num_seeds: int = 1, num_episodes: int = 3
) -> TrialResults:
    tasks = sample_tasks(TOY, num_tasks, "test", np.random.default_rng(0))
    env = make_eval_env(TOY, num_tasks * num_seeds, seed=0, env_kwargs={"split": "test"})
    try:
        set_env_tasks(env, tasks * num_seeds)
        return run_trials(
            agent,
            env,
            num_tasks=num_tasks,
            num_seeds=num_seeds,
            num_episodes=num_episodes,
            deterministic=True,
            env_seed=0,
            progress=False,
        )
    finally:
        env.close()


def test_scratch_ppo_learns_after_each_episode_only() -> None:
    obs_space, act_space = _toy_spaces()
    agent = ScratchPPOAgent(obs_space, act_space, TINY_PPO, seed=3)
    agent.begin_trial(2)
    before = [_params(agent, i).clone() for i in range(2)]
    obs = np.zeros((2, 1), dtype=np.float32)
    for t in range(5):
        action = agent.act(obs, deterministic=True)
        assert action.shape == (2, 1) and np.all(np.abs(action) <= 1.0)
        done = np.full(2, t == 4)
        agent.observe(obs, action, np.array([-1.0, -0.5]), obs + 0.1, done)
        # No learning inside an episode: episode k acts with the policy after episodes < k.
        assert all(torch.equal(_params(agent, i), before[i]) for i in range(2))
    agent.end_episode()
    assert agent.num_updates == 1
    assert all(not torch.equal(_params(agent, i), before[i]) for i in range(2))
    # Each sub-env has its own model, initialised from its own seed.
    assert not torch.equal(before[0], before[1])


def test_scratch_ppo_is_reproducible_and_leaves_global_rngs_alone() -> None:
    obs_space, act_space = _toy_spaces()
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()
    a = _trials(ScratchPPOAgent(obs_space, act_space, TINY_PPO, seed=0))
    assert torch.equal(torch.get_rng_state(), torch_state)
    draws_after = np.random.random(3)
    np.random.set_state(np_state)
    np.testing.assert_array_equal(draws_after, np.random.random(3))  # global numpy RNG untouched
    b = _trials(ScratchPPOAgent(obs_space, act_space, TINY_PPO, seed=0))
    c = _trials(ScratchPPOAgent(obs_space, act_space, TINY_PPO, seed=1))
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, c.returns)


def test_scratch_ppo_refuses_discrete_actions() -> None:
    with pytest.raises(ValueError, match=r"action_space: got Discrete"):
        ScratchPPOAgent(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))


def test_sb3_policy_agent_is_repeatable_and_keeps_the_global_rng(tmp_path: Path) -> None:
    run = train_baseline(
        BaselineConfig(
            kind="multitask",
            env_id=TOY,
            total_timesteps=128,
            n_envs=2,
            ppo=TINY_PPO,
            progress_bar=False,
        ),
        run_dir=tmp_path / "mt",
    )
    assert (run / MODEL_FILE).is_file() and (run / "config.yaml").is_file()
    baseline = load_baseline(run, device="cpu", seed=5)
    assert isinstance(baseline.agent, SB3PolicyAgent)
    assert (baseline.kind, baseline.env_id, baseline.name) == ("multitask", TOY, "multitask-ppo")
    assert baseline.env_kwargs == {}  # the hidden default: families without reveal_task work
    agent = baseline.agent
    obs = np.linspace(-1, 1, 6, dtype=np.float32)[:, None]
    state = torch.get_rng_state()
    agent.begin_trial(6)
    first = agent.act(obs, deterministic=False)
    agent.begin_trial(6)
    np.testing.assert_array_equal(agent.act(obs, deterministic=False), first)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.shape == (6, 1)
    # Loading the zip itself works too.
    assert load_baseline(run / MODEL_FILE, device="cpu").kind == "multitask"


def test_oracle_sees_the_goal_and_all_baselines_share_the_protocol(tmp_path: Path) -> None:
    common = BaselineConfig(
        env_id=TOY, total_timesteps=128, n_envs=2, ppo=TINY_PPO, progress_bar=False
    )
    oracle = load_baseline(
        train_baseline(common.replace(kind="oracle"), tmp_path / "o"), device="cpu"
    )
    assert oracle.env_kwargs == {"reveal_task": True}
    assert oracle.agent.model.observation_space.shape == (2,)  # type: ignore[attr-defined]
    scratch_dir = train_baseline(common.replace(kind="scratch"), tmp_path / "s")
    assert not (scratch_dir / MODEL_FILE).exists()
    scratch = load_baseline(scratch_dir, device="cpu")
    assert isinstance(scratch.agent, ScratchPPOAgent)
    meta = yaml.safe_load((scratch_dir / "baseline.yaml").read_text())
    assert meta["kind"] == "scratch" and meta["env_id"] == TOY

    cfg = EvalConfig(
        num_tasks=2,
        num_seeds=2,
        num_episodes=2,
        num_videos=0,
        num_bootstrap=100,
        wandb_mode="disabled",
        progress_bar=False,
    )
    report = evaluate_methods(
        [
            Method(b.name, b.agent, kind=b.kind, env_kwargs=b.env_kwargs, source=b.source)
            for b in (oracle, scratch)
        ],
        env_id=TOY,
        cfg=cfg,
        out_dir=tmp_path / "eval",
    )
    assert [m.name for m in report.methods] == ["oracle-ppo", "scratch-ppo"]
    assert all(m.results.success.shape == (4, 2) for m in report.methods)


def test_missing_or_incomplete_baselines_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        load_baseline(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"no baseline\.yaml"):
        load_baseline(tmp_path)
    run = train_baseline(
        BaselineConfig(
            kind="multitask",
            env_id=TOY,
            total_timesteps=64,
            n_envs=1,
            ppo=TINY_PPO,
            progress_bar=False,
        ),
        run_dir=tmp_path / "mt",
    )
    (run / MODEL_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"has no model\.zip"):
        load_baseline(run)
    with pytest.raises(ValueError, match=r"'metarl-toy/Nope-v0' is not registered"):
        train_baseline(BaselineConfig(env_id="metarl-toy/Nope-v0"), run_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing written before the env is validated
    with pytest.raises(ValueError, match=r"is not empty .* Pass a new --run-dir"):
        train_baseline(BaselineConfig(env_id=TOY, kind="scratch"), run_dir=run)


def test_baseline_configs_load() -> None:
    files = sorted((ROOT / "configs" / "baselines").glob("*.yaml"))
    kinds = {load_config(BaselineConfig, f).kind for f in files}
    assert kinds == {"multitask", "oracle", "scratch"}


def test_baselines_script_trains_a_tiny_reach_baseline(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "train_baselines.py"),
            "--config",
            str(ROOT / "configs" / "baselines" / "multitask_ppo.yaml"),
            "--run-dir",
            str(tmp_path / "run"),
            "env_id=metarl/Reach-v0",
            "total_timesteps=64",
            "n_envs=1",
            "progress_bar=false",
            "ppo.n_steps=64",
            "ppo.batch_size=32",
            "ppo.n_epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "multitask baseline:" in result.stdout
    assert (tmp_path / "run" / MODEL_FILE).is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "meta_rl", "baselines", "--config", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_multitask_and_oracle_baselines_train_on_a_wrapped_family(tmp_path: Path) -> None:
    """The multitask baseline sees the hidden observation; the oracle the family's
    ``reveal_task`` one (TaskWrapper appends ``Task.features()``: gravity, mass, length)."""
    cfg = BaselineConfig(
        env_id="byo/HiddenPendulum-v0",
        env_module="examples.hidden_pendulum",
        total_timesteps=128,
        n_envs=2,
        ppo=TINY_PPO,
        progress_bar=False,
    )
    baseline = load_baseline(train_baseline(cfg, tmp_path / "mt"), device="cpu")
    assert baseline.env_kwargs == {}
    oracle = load_baseline(train_baseline(cfg.replace(kind="oracle"), tmp_path / "o"), device="cpu")
    assert oracle.env_kwargs == {"reveal_task": True}
    oracle.agent.begin_trial(2)
    # It acts on the revealed observation: 3 + the 3 task features.
    assert oracle.agent.act(np.zeros((2, 6), dtype=np.float32), True).shape == (2, 1)
