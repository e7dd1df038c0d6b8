"""The learned task model: decoders of reward and state change conditioned on z, and its ELBO.

VariBAD-style objective: the belief after t transitions of a trial, ``q(z | tau_{:t})``, must
decode the rewards (and state changes) of the *whole* trial, past and future, so z comes to hold
what differs between tasks (goal, object mass, friction, size). For a batch of trials::

    loss = reward_weight * E_t E_{z~q_t} mean_j (r_hat(z, s_j, a_j, s'_j) - r_j)^2
         + state_weight  * E_t E_{z~q_t} mean_j mean_k (d_hat(z, s_j, a_j) - (s'_j - s_j))_k^2
         + kl_weight     * mean_t KL(q_t || q_{t-1})      (q_{-1} = prior; or KL(q_t || prior))

i.e. the negative evidence lower bound with unit-variance Gaussian likelihoods, estimated on
``belief_samples`` random belief times and ``decode_samples`` random transitions per trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from meta_rl.agent.encoder import Belief, ContextEncoder
from meta_rl.agent.networks import mlp
from meta_rl.experiment import TaskModelConfig

__all__ = ["ElboTerms", "TaskDecoder", "TrialTensors", "elbo_loss", "gaussian_kl"]


@dataclass(frozen=True)
class TrialTensors:
    """The transitions of N trials of T steps, time-major ``(T, N, ...)``, observations normalised.

    ``mask`` is false for steps that are not real transitions (after a physics-error reset).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    done: torch.Tensor
    mask: torch.Tensor

    def encode(
        self, encoder: ContextEncoder, hidden: torch.Tensor | None = None
    ) -> tuple[Belief, torch.Tensor]:
        """The encoder's beliefs after each step and its last hidden state
        (:meth:`ContextEncoder.forward` on these transitions, from ``hidden``)."""
        return encoder(
            self.obs, self.action, self.reward, self.next_obs, self.done, hidden, self.mask
        )

    def hidden_states(self, encoder: ContextEncoder) -> torch.Tensor:
        """The encoder's hidden states ``(T, N, hidden)`` after each step of the trials."""
        return encoder.hidden_states(
            self.obs, self.action, self.reward, self.next_obs, self.done, mask=self.mask
        )

    def select(self, envs: torch.Tensor) -> TrialTensors:
        """The trials of the given sub-environment indices."""
        return TrialTensors(
            obs=self.obs[:, envs],
            action=self.action[:, envs],
            reward=self.reward[:, envs],
            next_obs=self.next_obs[:, envs],
            done=self.done[:, envs],
            mask=self.mask[:, envs],
        )


@dataclass(frozen=True)
class ElboTerms:
    """The terms of the negative ELBO (tensors, ``total`` differentiable)."""

    reward_loss: torch.Tensor
    state_loss: torch.Tensor
    kl: torch.Tensor
    total: torch.Tensor


class TaskDecoder(nn.Module):
    """Decoders of reward ``r_hat(z, s, a, s')`` and state change ``d_hat(z, s, a) = s' - s``.

    Observations are the normalised ones the encoder reads. The state decoder is absent when
    ``predict_state`` is false.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int,
        *,
        hidden: tuple[int, ...] = (64, 64),
        predict_state: bool = True,
    ) -> None:
        super().__init__()
        self.predict_state = predict_state
        self.reward_net = mlp([latent_dim + 2 * obs_dim + action_dim, *hidden, 1])
        self.state_net = (
            mlp([latent_dim + obs_dim + action_dim, *hidden, obs_dim]) if predict_state else None
        )

    def reward(
        self, z: torch.Tensor, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        return self.reward_net(torch.cat([z, obs, action, next_obs], dim=-1)).squeeze(-1)

    def state_change(
        self, z: torch.Tensor, obs: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        if self.state_net is None:
            raise ValueError("task_model.predict_state is false: this decoder has no state model")
        return self.state_net(torch.cat([z, obs, action], dim=-1))


def gaussian_kl(q: Belief, p: Belief) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over the last dimension."""
    var_q, var_p = q.logvar.exp(), p.logvar.exp()
    kl = 0.5 * (p.logvar - q.logvar + (var_q + (q.mean - p.mean) ** 2) / var_p - 1.0)
    return kl.sum(-1)


def elbo_loss(
    encoder: ContextEncoder,
    decoder: TaskDecoder,
    trials: TrialTensors,
    cfg: TaskModelConfig,
    generator: torch.Generator,
    beliefs: Belief | None = None,
) -> ElboTerms:
    """The negative ELBO of a batch of trials (see the module docstring).

    ``generator`` (a CPU generator) draws the belief times, the decoded transitions and the
    reparameterised z, so the estimate is reproducible. ``beliefs``: the encoder's beliefs
    after each step of ``trials`` (:meth:`ContextEncoder.forward`), when the caller has them
    with their graph already (another loss reads them too); None encodes the trials here.
    """
    t_len, n = trials.reward.shape
    device = trials.reward.device
    if beliefs is None:
        beliefs, _ = trials.encode(encoder)
    all_beliefs = encoder.beliefs_with_prior(beliefs)  # (T+1, N, d)

    n_b = min(cfg.belief_samples, t_len + 1)
    n_d = min(cfg.decode_samples, t_len)
    b_idx = torch.randperm(t_len + 1, generator=generator)[:n_b].to(device)
    d_idx = torch.randperm(t_len, generator=generator)[:n_d].to(device)
    eps = torch.randn(n_b, n, encoder.latent_dim, generator=generator).to(device)
    mean, logvar = all_beliefs.mean[b_idx], all_beliefs.logvar[b_idx]
    z = mean + (0.5 * logvar).exp() * eps  # (B, N, d)

    z_rows = z.unsqueeze(1).expand(n_b, n_d, n, z.shape[-1])

    def rows(x: torch.Tensor) -> torch.Tensor:
        sel = x[d_idx].unsqueeze(0)
        return sel.expand(n_b, *sel.shape[1:])

    obs, action, next_obs = rows(trials.obs), rows(trials.action), rows(trials.next_obs)
    weight = rows(trials.mask.to(z.dtype))
    denom = weight.sum().clamp_min(1.0)
    r_err = (decoder.reward(z_rows, obs, action, next_obs) - rows(trials.reward)) ** 2
    reward_loss = (r_err * weight).sum() / denom
    if decoder.state_net is not None:
        s_err = (decoder.state_change(z_rows, obs, action) - (next_obs - obs)) ** 2
        state_loss = (s_err.mean(-1) * weight).sum() / denom
    else:
        state_loss = torch.zeros((), device=device)

    if cfg.kl_to == "previous":
        prev = Belief(all_beliefs.mean[:-1], all_beliefs.logvar[:-1])
        kl = gaussian_kl(beliefs, prev)
    else:
        prior = encoder.prior(n, device)
        kl = gaussian_kl(beliefs, Belief(prior.mean.unsqueeze(0), prior.logvar.unsqueeze(0)))
    kl_mean = (kl * trials.mask.to(kl.dtype)).sum() / trials.mask.sum().clamp_min(1)
    total = cfg.reward_weight * reward_loss + cfg.state_weight * state_loss
    total = total + cfg.kl_weight * kl_mean
    return ElboTerms(reward_loss, state_loss, kl_mean, total)


@torch.no_grad()
def final_belief_error(
    encoder: ContextEncoder, decoder: TaskDecoder, trials: TrialTensors
) -> dict[str, float]:
    """Prediction errors over a whole trial with z = the mean of the belief at the trial's end.

    Also the reward error with z = 0 (the prior mean), a reference for how much z helps.
    """
    beliefs, _ = trials.encode(encoder)
    t_len = trials.reward.shape[0]
    w = trials.mask.to(trials.reward.dtype)
    denom = w.sum().clamp_min(1.0)
    z = beliefs.mean[-1].unsqueeze(0).expand(t_len, *beliefs.mean.shape[1:])
    r_hat = decoder.reward(z, trials.obs, trials.action, trials.next_obs)
    out = {"reward_mse": float((((r_hat - trials.reward) ** 2) * w).sum() / denom)}
    r_prior = decoder.reward(torch.zeros_like(z), trials.obs, trials.action, trials.next_obs)
    out["reward_mse_prior"] = float((((r_prior - trials.reward) ** 2) * w).sum() / denom)
    if decoder.state_net is not None:
        d_hat = decoder.state_change(z, trials.obs, trials.action)
        err = ((d_hat - (trials.next_obs - trials.obs)) ** 2).mean(-1)
        out["state_mse"] = float((err * w).sum() / denom)
    return out
