"""The task model's ELBO: finite terms that fall on a fixed batch; the Gaussian KL."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from meta_rl.agent.encoder import Belief, ContextEncoder
from meta_rl.agent.task_model import (
    TaskDecoder,
    TrialTensors,
    elbo_loss,
    final_belief_error,
    gaussian_kl,
)
from meta_rl.experiment import TaskModelConfig

if TYPE_CHECKING:
    from conftest import Margins

torch.set_num_threads(1)


def _trials(seed: int = 0) -> TrialTensors:
    """Trials whose reward depends on a hidden per-trial goal: -|next_obs - goal|."""
    g = torch.Generator().manual_seed(seed)
    t_len, n = 24, 8
    goal = torch.randn(n, 2, generator=g)
    obs = torch.randn(t_len, n, 2, generator=g)
    action = torch.rand(t_len, n, 2, generator=g) * 2 - 1
    next_obs = obs + 0.3 * action
    reward = -(next_obs - goal).norm(dim=-1)
    done = torch.zeros(t_len, n)
    done[11] = done[23] = 1.0
    return TrialTensors(obs, action, reward, next_obs, done, torch.ones(t_len, n, dtype=torch.bool))


def test_gaussian_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    q = Belief(torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g))
    p = Belief(torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g))
    ours = gaussian_kl(q, p)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(q.mean, (0.5 * q.logvar).exp()),
        torch.distributions.Normal(p.mean, (0.5 * p.logvar).exp()),
    ).sum(-1)
    torch.testing.assert_close(ours, ref)
    assert torch.allclose(gaussian_kl(q, q), torch.zeros(5), atol=1e-6)


@functools.cache  # shared by two tests; 300 steps so the belief's edge holds in every seed
def _fit(kl_to: str, seed: int = 0) -> tuple[list[float], dict[str, float], dict[str, float]]:
    torch.manual_seed(seed)
    cfg = TaskModelConfig(kl_to=kl_to, belief_samples=8, decode_samples=24)  # type: ignore[arg-type]
    enc = ContextEncoder(2, 2, latent_dim=3, hidden_size=32, embed_size=16)
    dec = TaskDecoder(2, 2, 3, hidden=(32, 32))
    trials = _trials(seed)
    before = final_belief_error(enc, dec, trials)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    totals = []
    for i in range(300):
        terms = elbo_loss(enc, dec, trials, cfg, torch.Generator().manual_seed(i))
        for value in (terms.reward_loss, terms.state_loss, terms.kl, terms.total):
            assert torch.isfinite(value)
        assert float(terms.kl.detach()) >= 0.0
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        totals.append(float(terms.total.detach()))
    return totals, before, final_belief_error(enc, dec, trials)


def test_elbo_terms_are_finite_and_fall_on_a_fixed_batch(
    learning_seed: int, margins: Margins
) -> None:
    for kl_to in ("previous", "prior"):
        totals, before, after = _fit(kl_to, learning_seed)
        first, last = sum(totals[:10]) / 10, sum(totals[-10:]) / 10
        # Each loss falls to under half its start.
        margins(
            f"elbo_falls_kl_to_{kl_to}",
            learning_seed,
            {
                "elbo_first_over_last": (first / last, 2.0),
                "reward_mse_before_over_after": (before["reward_mse"] / after["reward_mse"], 2.0),
                "state_mse_before_over_after": (before["state_mse"] / after["state_mse"], 2.0),
            },
        )


def test_belief_at_trial_end_decodes_better_than_the_prior(
    learning_seed: int, margins: Margins
) -> None:
    # z must carry the hidden goal: decoding with the final belief beats decoding with z = 0.
    _, _, after = _fit("previous", learning_seed)
    margins(
        "belief_decodes_better_than_prior",
        learning_seed,
        {"reward_mse_prior_over_belief": (after["reward_mse_prior"] / after["reward_mse"], 1.0)},
    )


def test_decoder_without_state_model() -> None:
    dec = TaskDecoder(2, 2, 3, predict_state=False)
    enc = ContextEncoder(2, 2, latent_dim=3)
    cfg = TaskModelConfig(predict_state=False)
    terms = elbo_loss(enc, dec, _trials(), cfg, torch.Generator().manual_seed(0))
    assert float(terms.state_loss) == 0.0
    assert "state_mse" not in final_belief_error(enc, dec, _trials())
