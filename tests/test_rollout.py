"""Trial collection: shapes, episode boundaries, the autoreset step after an early end."""

from __future__ import annotations

import numpy as np
import torch

from helpers.agents import toy_agent
from helpers.toy_family import TOY_ID
from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.experiment import ExperimentConfig
from meta_rl.task_envs.vector import make_task_vector_env
from meta_rl.training.rollout import collect_trials

torch.set_num_threads(1)


def test_trials_have_k_fixed_length_episodes() -> None:
    venv = make_task_vector_env(TOY_ID, 3)
    tasks = venv.task_distribution.sample(3, "train", np.random.default_rng(0))
    batch = collect_trials(venv, toy_agent(), tasks, episodes=2, episode_steps=5, seed=0)
    assert batch.rewards.shape == (10, 3)
    assert batch.obs.shape == batch.next_obs.shape == (10, 3, 2)
    assert batch.beliefs.shape == (10, 3, 10)
    assert batch.env_steps == 30
    np.testing.assert_array_equal(batch.dones[:, 0].numpy(), [0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    assert bool(batch.mask.all())
    # Rows are (K, N) sums of the recorded rewards.
    np.testing.assert_allclose(
        batch.episode_returns, batch.rewards.reshape(2, 5, 3).sum(1).numpy(), rtol=1e-5
    )
    # The first belief of the trial is the prior; the next episode starts from a learned one.
    assert torch.equal(batch.beliefs[0], toy_agent().networks.encoder.prior(3).features())
    assert not torch.equal(batch.beliefs[5], batch.beliefs[0])
    # Same seed, same generator state: the same trial.
    again = collect_trials(venv, toy_agent(), tasks, episodes=2, episode_steps=5, seed=0)
    assert torch.equal(again.rewards, batch.rewards)


def test_early_end_masks_the_autoreset_step() -> None:
    venv = make_task_vector_env(TOY_ID, 2, end_at=3)
    tasks = venv.task_distribution.sample(2, "train", np.random.default_rng(0))
    batch = collect_trials(venv, toy_agent(), tasks, episodes=1, episode_steps=6, seed=0)
    mask = batch.mask[:, 0].numpy()
    # Step index 2 ends the episode early (done), index 3 is Gymnasium's reset step (masked).
    np.testing.assert_array_equal(mask, [True, True, True, False, True, True])
    np.testing.assert_array_equal(batch.dones[:, 0].numpy(), [0, 0, 1, 0, 0, 1])
    assert float(batch.rewards[3, 0]) == 0.0


def test_a_family_without_info_success_is_refused() -> None:
    import pytest

    from helpers.broken_family import BROKEN_ID

    venv = make_task_vector_env(BROKEN_ID, 2)
    tasks = venv.task_distribution.sample(2, "train", np.random.default_rng(0))
    agent = MetaAgent(
        AgentNetworks(1, 1, ExperimentConfig()),
        ExperimentConfig(),
        action_low=-np.ones(1),
        action_high=np.ones(1),
        seed=0,
    )
    with pytest.raises(ValueError, match=r"step info has no 'success'"):
        collect_trials(venv, agent, tasks, episodes=1, episode_steps=3, seed=0)
