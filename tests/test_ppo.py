"""GAE against a hand computation; the clipped loss; functional use; reward scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meta_rl.agent.advantages import compute_gae
from meta_rl.agent.networks import RunningNorm, gaussian_entropy, gaussian_log_prob
from meta_rl.agent.policy import ActorCritic
from meta_rl.experiment import PPOConfig
from meta_rl.training.ppo import PPOBatch, ReturnScaler, ppo_loss

torch.set_num_threads(1)


def test_gae_equals_hand_computation() -> None:
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    last = torch.tensor([2.0])
    no_term = torch.zeros(3, 1, dtype=torch.bool)
    adv, ret = compute_gae(rewards, values, no_term, last, gamma=0.9, lam=0.8)
    # delta_2 = 3 + .9*2 - 1.5 = 3.3; delta_1 = 2 + .9*1.5 - 1 = 2.35; delta_0 = 1 + .9 - .5 = 1.4
    expected = torch.tensor([[1.4 + 0.72 * (2.35 + 0.72 * 3.3)], [2.35 + 0.72 * 3.3], [3.3]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)
    term = no_term.clone()
    term[1] = True  # the state after step 1 is terminal: no bootstrap, no carry-over
    adv_t, _ = compute_gae(rewards, values, term, last, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv_t, torch.tensor([[1.4 + 0.72 * 1.0], [1.0], [3.3]]))


def test_gae_with_lambda_one_is_discounted_return_minus_value() -> None:
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    term = torch.zeros(5, 2, dtype=torch.bool)
    term[-1] = True
    adv, ret = compute_gae(rewards, values, term, torch.zeros(2), gamma=0.95, lam=1.0)
    disc = torch.zeros(2)
    expected = torch.zeros_like(rewards)
    for t in reversed(range(5)):
        disc = rewards[t] + 0.95 * disc
        expected[t] = disc
    torch.testing.assert_close(ret, expected)
    torch.testing.assert_close(adv, expected - values)


def _policy() -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(3, 2, 4, hidden=(16, 16))


def _batch(policy: ActorCritic, n: int = 32) -> PPOBatch:
    g = torch.Generator().manual_seed(1)
    obs, belief = torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g)
    with torch.no_grad():
        out = policy(obs, belief)
        actions = out.mean + out.log_std.exp() * torch.randn(n, 2, generator=g)
        logp = gaussian_log_prob(out.mean, out.log_std, actions)
    return PPOBatch(
        obs=obs,
        belief=belief,
        actions=actions,
        old_log_probs=logp,
        advantages=torch.randn(n, generator=g),
        returns=torch.randn(n, generator=g),
        mask=torch.ones(n, dtype=torch.bool),
    )


def test_log_prob_and_entropy_match_torch_normal() -> None:
    policy = _policy()
    batch = _batch(policy)
    out = policy(batch.obs, batch.belief)
    dist = torch.distributions.Normal(out.mean, out.log_std.exp())
    torch.testing.assert_close(
        gaussian_log_prob(out.mean, out.log_std, batch.actions),
        dist.log_prob(batch.actions).sum(-1),
    )
    torch.testing.assert_close(gaussian_entropy(out.mean, out.log_std), dist.entropy().sum(-1))


def test_ppo_loss_at_ratio_one_and_functional_call() -> None:
    policy = _policy()
    batch = _batch(policy)
    cfg = PPOConfig(normalize_advantages=False, entropy_coef=0.01)
    terms = ppo_loss(policy, None, batch, cfg)
    # At the collection parameters the ratio is 1: the surrogate is the mean advantage.
    torch.testing.assert_close(terms.policy_loss, -batch.advantages.mean())
    assert float(terms.approx_kl) == pytest.approx(0.0, abs=1e-7)
    assert float(terms.clip_fraction) == 0.0
    params = dict(policy.named_parameters())
    func_terms = ppo_loss(policy, params, batch, cfg)
    torch.testing.assert_close(func_terms.total, terms.total)
    # The loss is a function of the params given: shifted params change it, the module does not.
    shifted = {k: v + 0.1 for k, v in params.items()}
    assert not torch.allclose(ppo_loss(policy, shifted, batch, cfg).total, terms.total)
    torch.testing.assert_close(ppo_loss(policy, None, batch, cfg).total, terms.total)
    grads = torch.autograd.grad(func_terms.total, list(params.values()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_clipping_stops_the_gradient_beyond_the_clip_range() -> None:
    policy = _policy()
    batch = _batch(policy)
    cfg = PPOConfig(normalize_advantages=False, clip=0.1, value_coef=0.0)
    # Old log-probs far below the new ones: ratio >> 1+clip; positive advantages are clipped.
    far = PPOBatch(
        **{
            **batch.__dict__,
            "old_log_probs": batch.old_log_probs - 5.0,
            "advantages": batch.advantages.abs(),
        }
    )
    terms = ppo_loss(policy, None, far, cfg)
    assert float(terms.clip_fraction) == 1.0
    torch.testing.assert_close(terms.policy_loss, -(1.1 * far.advantages).mean())
    terms.total.backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in policy.actor.parameters())


def test_masked_rows_do_not_count() -> None:
    policy = _policy()
    batch = _batch(policy)
    mask = torch.arange(32) < 16
    masked = PPOBatch(**{**batch.__dict__, "mask": mask})
    half = PPOBatch(**{k: v[:16] for k, v in batch.__dict__.items()})
    cfg = PPOConfig()
    torch.testing.assert_close(
        ppo_loss(policy, None, masked, cfg).total, ppo_loss(policy, None, half, cfg).total
    )


def test_running_norm_matches_numpy_statistics() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(300, 4))
    norm = RunningNorm(4)
    for chunk in np.split(data, 3):
        norm.update(torch.as_tensor(chunk))
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-4)


def test_return_scaler_divides_by_return_std_and_round_trips() -> None:
    scaler = ReturnScaler(gamma=0.0)
    rewards = np.random.default_rng(0).normal(0.0, 5.0, size=(400, 3)).astype(np.float32)
    scaled = scaler.scale(rewards)
    assert scaled.dtype == np.float32
    assert float(scaled.std()) == pytest.approx(1.0, rel=0.05)
    other = ReturnScaler(gamma=0.0)
    other.load_state_dict(scaler.state_dict())
    np.testing.assert_array_equal(other.scale(rewards), scaler.scale(rewards))
    off = ReturnScaler(gamma=0.9, enabled=False)
    np.testing.assert_array_equal(off.scale(rewards), rewards)
