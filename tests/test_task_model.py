"""The task model's ELBO: finite terms that fall on a fixed batch; the Gaussian KL."""

from __future__ import annotations

import torch

from meta_rl.encoder import Belief, ContextEncoder
from meta_rl.experiment import TaskModelConfig
from meta_rl.task_model import TaskDecoder, TrialTensors, elbo_loss, final_belief_error, gaussian_kl

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


def _fit(kl_to: str) -> tuple[list[float], dict[str, float], dict[str, float]]:
    torch.manual_seed(0)
    cfg = TaskModelConfig(kl_to=kl_to, belief_samples=8, decode_samples=24)  # type: ignore[arg-type]
    enc = ContextEncoder(2, 2, latent_dim=3, hidden_size=32, embed_size=16)
    dec = TaskDecoder(2, 2, 3, hidden=(32, 32))
    trials = _trials()
    before = final_belief_error(enc, dec, trials)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    totals = []
    for i in range(150):
        terms = elbo_loss(enc, dec, trials, cfg, torch.Generator().manual_seed(i))
        for value in (terms.reward_loss, terms.state_loss, terms.kl, terms.total):
            assert torch.isfinite(value)
        assert float(terms.kl.detach()) >= 0.0
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        totals.append(float(terms.total.detach()))
    return totals, before, final_belief_error(enc, dec, trials)


def test_elbo_terms_are_finite_and_fall_on_a_fixed_batch() -> None:
    for kl_to in ("previous", "prior"):
        totals, before, after = _fit(kl_to)
        first, last = sum(totals[:10]) / 10, sum(totals[-10:]) / 10
        assert last < 0.5 * first, (kl_to, first, last)
        assert after["reward_mse"] < 0.5 * before["reward_mse"]
        assert after["state_mse"] < 0.5 * before["state_mse"]


def test_belief_at_trial_end_decodes_better_than_the_prior() -> None:
    # z must carry the hidden goal: decoding with the final belief beats decoding with z = 0.
    _, _, after = _fit("previous")
    assert after["reward_mse"] < after["reward_mse_prior"]


def test_decoder_without_state_model() -> None:
    dec = TaskDecoder(2, 2, 3, predict_state=False)
    enc = ContextEncoder(2, 2, latent_dim=3)
    cfg = TaskModelConfig(predict_state=False)
    terms = elbo_loss(enc, dec, _trials(), cfg, torch.Generator().manual_seed(0))
    assert float(terms.state_loss) == 0.0
    assert "state_mse" not in final_belief_error(enc, dec, _trials())
