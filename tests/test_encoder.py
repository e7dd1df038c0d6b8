"""The context encoder: prior at the start, step == sequence, state across episodes and tasks."""

from __future__ import annotations

import numpy as np
import torch

from helpers.encoder import random_transitions, small_encoder
from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.experiment import ExperimentConfig

torch.set_num_threads(1)


def test_belief_starts_at_the_prior_and_sequence_equals_steps() -> None:
    enc = small_encoder()
    obs, action, reward, next_obs, done = random_transitions(10, 5)
    prior = enc.prior(5)
    assert torch.equal(prior.mean, torch.zeros(5, 4))
    assert torch.equal(prior.logvar, torch.zeros(5, 4))
    beliefs, last = enc(obs, action, reward, next_obs, done)
    h = enc.initial_state(5)
    for t in range(10):
        h, b = enc.step(h, obs[t], action[t], reward[t], next_obs[t], done[t])
        torch.testing.assert_close(b.mean, beliefs.mean[t], atol=1e-6, rtol=0)
        torch.testing.assert_close(b.logvar, beliefs.logvar[t], atol=1e-6, rtol=0)
    torch.testing.assert_close(h, last, atol=1e-6, rtol=0)
    with_prior = enc.beliefs_with_prior(beliefs)
    assert with_prior.mean.shape == (11, 5, 4)
    assert torch.equal(with_prior.mean[0], prior.mean)


def test_step_is_the_gru_module_one_step_bit_for_bit() -> None:
    """``step`` calls the GRU's cell directly (faster while acting): the same numbers."""
    enc = small_encoder()
    obs, action, reward, next_obs, done = random_transitions(3, 5)
    h = torch.randn(5, 16)
    new_h, _ = enc.step(h, obs[0], action[0], reward[0], next_obs[0], done[0])
    x = enc._embed(obs[0], action[0], reward[0], next_obs[0], done[0])
    _, ref = enc.gru(x.unsqueeze(0), h.unsqueeze(0))
    assert torch.equal(new_h, ref.squeeze(0))


def test_masked_steps_keep_the_hidden_state() -> None:
    enc = small_encoder()
    obs, action, reward, next_obs, done = random_transitions(6, 2)
    mask = torch.ones(6, 2, dtype=torch.bool)
    mask[3, 1] = False
    _, h_masked = enc(obs, action, reward, next_obs, done, mask=mask)
    keep = [0, 1, 2, 4, 5]
    _, h_skip = enc(obs[keep], action[keep], reward[keep], next_obs[keep], done[keep])
    torch.testing.assert_close(h_masked[1], h_skip[1], atol=1e-6, rtol=0)
    assert not torch.allclose(h_masked[0], h_skip[0])


def _agent() -> MetaAgent:
    torch.manual_seed(0)
    cfg = ExperimentConfig()
    nets = AgentNetworks(3, 2, cfg)
    return MetaAgent(nets, cfg, action_low=-np.ones(2), action_high=np.ones(2), seed=0)


def _run_episode(agent: MetaAgent, rng: np.random.Generator, steps: int = 4) -> None:
    for t in range(steps):
        obs = rng.normal(size=(2, 3)).astype(np.float32)
        action = agent.act(obs, deterministic=False)
        assert action.shape == (2, 2)
        assert np.all(np.abs(action) <= 1.0)
        done = np.full(2, t == steps - 1)
        agent.observe(obs, action, rng.normal(size=2), rng.normal(size=(2, 3)), done)
    agent.end_episode()


def test_state_persists_between_episodes_and_resets_between_tasks() -> None:
    agent = _agent()
    agent.begin_trial(2)
    prior = agent.belief_features().clone()
    rng = np.random.default_rng(0)
    _run_episode(agent, rng)
    after_ep1 = agent.belief_features().clone()
    assert not torch.allclose(after_ep1, prior)
    hidden = agent._hidden
    assert hidden is not None
    hidden_before = hidden.clone()
    # end_episode keeps the belief: the next episode of the trial starts from it.
    agent.end_episode()
    assert torch.equal(agent.belief_features(), after_ep1)
    assert agent._hidden is not None and torch.equal(agent._hidden, hidden_before)
    # Episode 2 continues from episode 1's state: a different episode-1 history changes it.
    _run_episode(agent, np.random.default_rng(1))
    ep2_continued = agent.belief_features().clone()
    agent.begin_trial(2)
    assert torch.equal(agent.belief_features(), prior)
    _run_episode(agent, np.random.default_rng(1))
    ep2_fresh = agent.belief_features().clone()
    assert not torch.allclose(ep2_continued, ep2_fresh)


def test_without_context_the_policy_sees_the_prior() -> None:
    agent = _agent()
    agent.use_context = False
    agent.begin_trial(2)
    prior = agent.belief_features().clone()
    _run_episode(agent, np.random.default_rng(0))
    assert torch.equal(agent.belief_features(), prior)
