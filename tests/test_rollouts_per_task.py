"""Several parallel rollouts per task (``maml.rollouts_per_task``): MAML-RL's inner batch.

A task's m rollouts run in m consecutive sub-environments, adapt together on all their episodes
and act with the same parameters; training, evaluation and videos keep the grouping.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from helpers.agents import toy_agent
from helpers.configs import toy_maml_config
from helpers.toy_family import TOY_ID
from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.maml import (
    PolicyGradientBatch,
    batched_loss,
    expand_rollouts,
    merge_rollouts,
    policy_gradient_inner_loss,
)
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.protocol import sample_tasks
from meta_rl.evaluation.runner import Method, evaluate_methods
from meta_rl.evaluation.toy import ToyTask, register_toy_env
from meta_rl.evaluation.video import record_trial
from meta_rl.experiment import load_experiment
from meta_rl.task_envs.vector import make_task_vector_env
from meta_rl.training.rollout import collect_trials
from meta_rl.training.trainer import Trainer

torch.set_num_threads(1)
TOY = register_toy_env()


def _dist_fn(
    params: dict[str, torch.Tensor], obs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return obs @ params["w"], params["log_std"]


def test_merge_rollouts_concatenates_each_tasks_episodes() -> None:
    gen = torch.Generator().manual_seed(0)
    n, m, s = 6, 3, 5  # 2 tasks x 3 rollouts, 5 steps
    batch = PolicyGradientBatch(
        obs=torch.randn(n, s, 2, generator=gen),
        actions=torch.randn(n, s, 1, generator=gen),
        advantages=torch.randn(n, s, generator=gen),
        mask=torch.ones(n, s),
    )
    merged = merge_rollouts(batch, m)
    assert merged.obs.shape == (2, m * s, 2) and merged.advantages.shape == (2, m * s)
    # Task 1's steps are its rollouts 3, 4, 5 one after the other.
    torch.testing.assert_close(merged.actions[1], batch.actions[3:6].reshape(m * s, 1))
    # Its inner loss is the one of the concatenated episodes (advantages standardised together).
    loss = policy_gradient_inner_loss(_dist_fn)
    params = {"w": torch.randn(2, 2, 1, generator=gen), "log_std": torch.zeros(2, 1)}
    by_hand = [
        loss(
            {k: v[t] for k, v in params.items()},
            PolicyGradientBatch(*(x[t * m : (t + 1) * m].flatten(0, 1) for x in batch)),
        )
        for t in range(2)
    ]
    torch.testing.assert_close(batched_loss(loss, params, merged), torch.stack(by_hand))
    assert merge_rollouts(batch, 1) is batch
    with pytest.raises(ValueError, match=r"batch\.obs: got shape \(6, 5, 2\).*rollouts=4"):
        merge_rollouts(batch, 4)
    per_env = expand_rollouts(params, m)
    assert per_env["w"].shape == (n, 2, 1)
    assert torch.equal(per_env["w"][3], params["w"][1]) and torch.equal(
        per_env["w"][5], params["w"][1]
    )


def test_the_rollouts_of_a_task_adapt_together_on_all_their_episodes(tmp_path: Path) -> None:
    cfg = toy_maml_config(tmp_path, "maml.rollouts_per_task=2", "env.eval_tasks=4")
    agent = toy_agent(cfg)
    assert agent.rollouts_per_task == 2
    venv = make_task_vector_env(TOY_ID, 4)
    a, b = venv.task_distribution.sample(2, "train", np.random.default_rng(0))
    collect_trials(venv, agent, [a, a, b, b], episodes=2, episode_steps=6, seed=0)
    adapted = agent.adapted_params()
    assert agent.maml is not None
    (name, *_) = agent.maml.adapted_names
    assert adapted[name].shape[0] == 4
    assert torch.equal(adapted[name][0], adapted[name][1])
    assert torch.equal(adapted[name][2], adapted[name][3])
    assert not torch.allclose(adapted[name][1], adapted[name][2])
    inner = agent.inner_batches[0]
    assert inner.actions.shape[:2] == (2, 2 * 6)  # 2 tasks, both rollouts' 6 steps
    # Episode 2 acted with what one adaptation step on both rollouts of episode 1 gives.
    assert agent.inner_loss is not None
    start = agent.maml.init_params(2)
    after_one = agent.maml.adapt(start, agent.inner_loss, inner)
    again = agent.maml.adapt(after_one, agent.inner_loss, agent.inner_batches[1])
    torch.testing.assert_close(expand_rollouts(again, 2)[name], adapted[name])
    with pytest.raises(ValueError, match=r"num_envs: got 3; allowed: a multiple of .*\(2\)"):
        agent.begin_trial(3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["maml.rollouts_per_task=2"], r"maml.rollouts_per_task: got 2 with maml.enabled false"),
        (
            ["maml.enabled=true", "maml.rollouts_per_task=3", "env.tasks_per_batch=8"],
            r"env.tasks_per_batch: got 8; allowed: a multiple of maml.rollouts_per_task \(3\)",
        ),
        (
            ["maml.enabled=true", "maml.rollouts_per_task=2", "env.eval_tasks=5"],
            r"env.eval_tasks: got 5; allowed: a multiple of maml.rollouts_per_task \(2\)",
        ),
        (
            ["maml.enabled=true", "maml.rollouts_per_task=2", "maml.inner_loss=task_model"],
            r"maml.rollouts_per_task: got 2 with maml.inner_loss 'task_model'",
        ),
    ],
)
def test_bad_rollout_counts_are_refused_naming_the_field(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_experiment(None, ["env.tasks_per_batch=4", "env.eval_tasks=4", *overrides])


def test_training_with_rollouts_per_task_on_push(tmp_path: Path) -> None:
    """Real physics: tasks pinned in pairs, one meta-update, step sizes and policy move."""
    cfg = load_experiment(
        "configs/ablations/maml_only.yaml",
        [
            "maml.rollouts_per_task=2",
            "env.tasks_per_batch=4",
            "env.eval_tasks=2",
            "env.episode_steps=10",
            "policy.hidden=[32, 32]",
            "ppo.epochs=1",
            "ppo.minibatches=2",
            "train.iterations=1",
            "train.device=cpu",
            "logging.wandb_mode=disabled",
            "logging.progress_bar=false",
            f"runs_dir={tmp_path}",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run", None)
    try:
        assert trainer.eval_tasks[0] == trainer.eval_tasks[1]
        maml = trainer.networks.maml
        assert maml is not None
        sizes = {k: torch.as_tensor(v).clone() for k, v in maml.step_sizes().items()}
        batch = trainer.collect()
        assert trainer.agent.inner_batches[0].actions.shape[:2] == (2, 2 * 10)
        metrics = trainer.maml_update(batch)
        assert metrics["losses/updates"] == 2.0  # 2 minibatches of whole tasks
        assert np.isfinite(metrics["losses/policy_loss"])
        for k, v in maml.step_sizes().items():
            assert not torch.equal(torch.as_tensor(v), sizes[k]), k
        evaluation = trainer.evaluate()
        # Success is a mean over the held-out sub-environments (2 rollouts of each task).
        count = evaluation["adapt/success_ep3"] * len(trainer.eval_tasks)
        assert count == pytest.approx(round(count)) and 0 <= round(count) <= len(trainer.eval_tasks)
    finally:
        trainer.close()


class HalfSucceeds:
    """On the toy env: in every task's pair of rollouts, the first walks to the goal (known to
    the test) and the second stands still; checks that each pair shares its task."""

    rollouts_per_task = 2

    def __init__(self, goals: list[float]) -> None:
        self.goals = np.repeat(np.asarray(goals, dtype=np.float32), 2)

    def begin_trial(self, num_envs: int) -> None:
        assert num_envs == len(self.goals)

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        step = np.clip((self.goals[:, None] - obs[:, :1]) / 0.25, -1, 1)
        step[1::2] = 0.0
        return step.astype(np.float32)

    def observe(self, *args: np.ndarray) -> None:
        pass

    def end_episode(self) -> None:
        pass


def test_evaluation_runs_each_trial_as_its_rollouts_and_averages_them(tmp_path: Path) -> None:
    cfg = EvalConfig(num_tasks=3, num_seeds=1, num_episodes=2, num_videos=0, num_bootstrap=100)
    tasks = sample_tasks(TOY, 3, cfg.split, np.random.default_rng(cfg.task_seed))
    agent = HalfSucceeds([t.goal for t in tasks])
    evaluate_methods([Method("half", agent)], env_id=TOY, cfg=cfg, out_dir=tmp_path)
    data = json.loads((tmp_path / "eval.json").read_text())
    per_trial = np.asarray(data["methods"]["half"]["per_trial"]["success"])
    assert per_trial.shape == (3, 2)  # 3 trials, each the mean over its 2 rollouts
    np.testing.assert_array_equal(per_trial, 0.5)


def test_a_video_of_an_agent_with_several_rollouts_films_the_first(tmp_path: Path) -> None:
    cfg = load_experiment(
        None,
        [
            "env.id=toy/PointGoal-v0",
            "env.tasks_per_batch=2",
            "env.eval_tasks=2",
            "maml.enabled=true",
            "maml.rollouts_per_task=2",
            "policy.hidden=[8]",
        ],
    )
    torch.manual_seed(0)
    agent = MetaAgent(AgentNetworks(1, 1, cfg), cfg, action_low=-np.ones(1), action_high=np.ones(1))
    env = gym.make(TOY, render_mode="rgb_array", split="test")
    try:
        clips = record_trial(
            agent,
            env,
            ToyTask(goal=0.5, object_name="mug"),
            num_episodes=2,
            record=[1, 2],
            deterministic=True,
            seed=0,
        )
    finally:
        env.close()
    assert [len(c.frames) for c in clips] == [11, 11]  # the reset frame and 10 steps
    assert sorted(agent.inner_batches) == [0, 1]
    assert agent.inner_batches[0].actions.shape[:2] == (1, 2 * 10)  # both rollouts adapted on
