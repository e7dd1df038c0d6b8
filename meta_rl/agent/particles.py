"""A particle posterior over the task features, weighed by a learned reward model
(``privileged.hypotheses: particles``, docs/imitation.md).

The belief is exact Bayesian inference over a fixed bank of task-feature vectors drawn from the
family's own train split (the prior): after each transition every particle's log-weight gains
the log-likelihood of the observed reward under that particle, a Gaussian around the reward
:class:`FeatureRewardModel` predicts for the transition if the task were the particle's. The
model is a plain regression, ``r(s, a, s', features)``, learnt on the agent's own trials with
the true features; nothing in it names a family. A student acts as its teacher would on a
particle drawn by weight (posterior sampling): exploring emerges from acting on hypotheses, and
a wrong hypothesis is dropped as soon as its weight falls behind.
"""

from __future__ import annotations

import torch
from torch import nn

from meta_rl.agent.networks import mlp

__all__ = [
    "FeatureDynamicsModel",
    "FeatureObservationModel",
    "FeatureRewardModel",
    "ParticlePosterior",
    "fuse",
]


class FeatureRewardModel(nn.Module):
    """The reward of a transition under given task features: an MLP on
    ``[normalised obs, action, normalised next obs, standardised features]``.

    ``sigma`` (a buffer, saved with the model) is the scale of its errors on the latest trials
    before it learnt from them, the likelihood's scale: their root-mean-square error, or, with
    ``learned_noise``, the root-mean-square of the errors in units of the predicted widths (1
    when the widths are calibrated).

    With ``learned_noise`` (``privileged.reward_noise: learned``) the MLP also predicts each
    transition's log-variance, bounded softly to [:attr:`MIN_LOG_VAR`, :attr:`MAX_LOG_VAR`]:
    a reward that the features decide exactly (no success where no particle's goal is) gets a
    sharp likelihood, one they leave open (a contact's outcome) a wide one, instead of one
    width for every transition set by the worst of them.
    """

    MIN_LOG_VAR = -12.0
    """The smallest predicted log-variance (a width of 0.0025 reward units)."""
    MAX_LOG_VAR = 4.0
    """The largest predicted log-variance (a width of 7.4 reward units)."""

    sigma: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        task_dim: int,
        hidden: tuple[int, ...] = (256, 256),
        *,
        learned_noise: bool = False,
    ) -> None:
        super().__init__()
        self.learned_noise = learned_noise
        outputs = 2 if learned_noise else 1
        self.net = mlp([2 * obs_dim + action_dim + task_dim, *hidden, outputs], nn.ReLU)
        self.register_buffer("sigma", torch.ones(()))

    def forward(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        next_obs: torch.Tensor,
        features: torch.Tensor,
    ) -> torch.Tensor:
        """Predicted rewards ``(...)`` of inputs ``(..., obs_dim)``, ``(..., A)``,
        ``(..., obs_dim)``, ``(..., F)`` (broadcast against each other)."""
        return self._outputs(obs, action, next_obs, features)[..., 0]

    def distribution(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        next_obs: torch.Tensor,
        features: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted rewards and their log-variances ``(...)`` before :attr:`sigma` (zeros
        without ``learned_noise``), of the inputs of :meth:`forward`."""
        if not self.learned_noise:
            mean = self(obs, action, next_obs, features)
            return mean, torch.zeros_like(mean)
        out = self._outputs(obs, action, next_obs, features)
        lo, hi = self.MIN_LOG_VAR, self.MAX_LOG_VAR
        log_var = hi - nn.functional.softplus(hi - out[..., 1])
        return out[..., 0], lo + nn.functional.softplus(log_var - lo)

    def _outputs(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The MLP's outputs ``(..., 1 or 2)`` on the inputs of :meth:`forward`, broadcast."""
        shape = torch.broadcast_shapes(*(x.shape[:-1] for x in inputs))
        parts = [x.expand(*shape, x.shape[-1]) for x in inputs]
        out: torch.Tensor = self.net(torch.cat(parts, dim=-1))
        return out


class FeatureObservationModel(nn.Module):
    """The first observation of a trial under given task features: an MLP from standardised
    features to the normalised observation (``privileged.observation_likelihood``).

    ``log_var`` (a buffer) is the log of each observation dimension's squared error on the
    latest trials before the model learnt from them: dimensions the features do not decide
    (where the object starts) get a wide likelihood, those they do (how high an object of a
    given size rests) a sharp one.
    """

    log_var: torch.Tensor

    def __init__(self, obs_dim: int, task_dim: int, hidden: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        self.net = mlp([task_dim, *hidden, obs_dim], nn.ReLU)
        self.register_buffer("log_var", torch.zeros(obs_dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(features)
        return out


class FeatureDynamicsModel(nn.Module):
    """How the observation changes in one step under given task features: an MLP on
    ``[normalised obs, action, standardised features]`` predicting ``next_obs - obs``
    (normalised), for ``privileged.dynamics_likelihood``.

    ``log_var`` (a buffer) is the log of each dimension's squared error on the latest trials
    before the model learnt from them, floored at :attr:`VAR_FLOOR`: dimensions the features
    do not move get as wide a likelihood as the model's own error there, those they do (how
    far a heavy object lags behind the gripper) the width of what the features leave unsaid.
    """

    VAR_FLOOR = 1e-4
    """The smallest variance (normalised units) of any dimension: a dimension the model predicts
    almost exactly on its data must not make a small extrapolation error decisive."""

    log_var: torch.Tensor

    def __init__(
        self, obs_dim: int, action_dim: int, task_dim: int, hidden: tuple[int, ...] = (256, 256)
    ) -> None:
        super().__init__()
        self.net = mlp([obs_dim + action_dim + task_dim, *hidden, obs_dim], nn.ReLU)
        self.register_buffer("log_var", torch.zeros(obs_dim))

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """Predicted changes ``(..., obs_dim)`` of inputs ``(..., obs_dim)``, ``(..., A)``,
        ``(..., F)`` (broadcast against each other)."""
        shape = torch.broadcast_shapes(obs.shape[:-1], action.shape[:-1], features.shape[:-1])
        parts = [x.expand(*shape, x.shape[-1]) for x in (obs, action, features)]
        out: torch.Tensor = self.net(torch.cat(parts, dim=-1))
        return out

    def variance(self) -> torch.Tensor:
        """Each dimension's likelihood variance ``(obs_dim,)`` before any temperature."""
        return self.log_var.exp().clamp_min(self.VAR_FLOOR)


class ParticlePosterior:
    """The posterior of N sub-environments over a bank of P particles (standardised task
    features ``(P, F)``): log-weights ``(N, P)``, uniform at the start of a trial.

    :meth:`update` adds each transition's reward log-likelihood, ``-(r - r_hat)^2 / (2 (T
    sigma)^2)`` with the model's ``sigma`` and a temperature T >= 1 that widens it (a model's
    errors are not independent from step to step); with a model of ``learned_noise`` and its
    predicted variance v, ``-((r - r_hat)^2 / (sigma^2 v) + log v) / (2 T^2)``, the Gaussian's
    log-density tempered by ``1/T^2``. :meth:`hypotheses` keeps each row's particle
    and redraws, by weight, the rows that ``redraw`` marks and those whose particle's log-weight
    has fallen more than ``nats`` below the best one (the evidence contradicts it).

    :meth:`refine` moves each row's most likely particles up the log-likelihood of the whole
    trial so far (kept by :meth:`update`) by gradient steps on their features, and adds them to
    that row's particles (``particles`` is then ``(N, P + R, F)``), weighed by their
    likelihood: the bank holds only the prior's draws, and a task between or beyond them is
    found instead of its nearest draw. Only the features move; the model is left as it is.

    :meth:`observe_dynamics` adds a second likelihood to every transition from then on: the
    next observation under a :class:`FeatureDynamicsModel`, a diagonal Gaussian around the
    change it predicts, each dimension as wide as the temperature times the model's error
    there. Weighing and refinement then read how the state moved (mass shows there), not only
    what the rewards said.
    """

    def __init__(
        self,
        model: FeatureRewardModel,
        particles: torch.Tensor,
        num_envs: int,
        *,
        temperature: float,
        generator: torch.Generator,
        keep_history: bool = True,
    ) -> None:
        self.model = model
        self.keep_history = keep_history
        """Keep the trial's transitions for :meth:`refine` (off: nothing is stored per step)."""
        self.bank = particles
        self.particles = particles
        """``(P, F)`` (the bank, shared by every row) or, once refined, ``(N, P + R, F)``."""
        self.temperature = float(temperature)
        self.generator = generator
        self.log_weights = particles.new_zeros((num_envs, particles.shape[0]))
        self.offset = particles.new_zeros(num_envs)
        """What :meth:`_weigh` has subtracted from each row: log-weights plus the offset are the
        particles' log-likelihoods of the trial so far."""
        self.index: torch.Tensor | None = None
        self._history: list[tuple[torch.Tensor, ...]] = []
        self._start: tuple[FeatureObservationModel, torch.Tensor, float] | None = None
        self._dynamics: tuple[FeatureDynamicsModel, float] | None = None

    def update(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        """Weigh every particle by one transition per row (``(N, ...)`` normalised observations,
        actions, raw rewards ``(N,)``); rows with ``mask`` false are left as they are."""
        with torch.no_grad():
            valid = torch.ones_like(reward) if mask is None else mask.to(reward.dtype)
            if self.keep_history:
                self._history.append((obs, action, reward, next_obs, valid))
            self._weigh(self._step_loglik(self.particles, obs, action, reward, next_obs, valid))

    def observe_dynamics(self, model: FeatureDynamicsModel, temperature: float) -> None:
        """Weigh every later transition also by its next observation under ``model``."""
        self._dynamics = (model, float(temperature))

    def _step_loglik(
        self,
        particles: torch.Tensor,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Log-likelihoods ``(..., N, Q)`` of transitions (rewards ``(..., N)``) under particles
        ``(Q, F)`` or ``(N, Q, F)``: the reward's, plus the next observation's with
        :meth:`observe_dynamics`; zero where ``valid`` is 0."""
        inputs = (obs.unsqueeze(-2), action.unsqueeze(-2), next_obs.unsqueeze(-2), particles)
        scale = self.temperature * self.model.sigma.clamp_min(1e-6)
        if self.model.learned_noise:
            predicted, log_var = self.model.distribution(*inputs)
            # Particles that predict wider rewards pay for it: the Gaussian's normaliser,
            # tempered as the squared error is.
            error = (reward.unsqueeze(-1) - predicted) ** 2 / log_var.exp()
            loglik = -(error / (2.0 * scale**2) + log_var / (2.0 * self.temperature**2))
        else:
            predicted = self.model(*inputs)
            loglik = -((reward.unsqueeze(-1) - predicted) ** 2) / (2.0 * scale**2)
        if self._dynamics is not None:
            model, temperature = self._dynamics
            change = model(obs.unsqueeze(-2), action.unsqueeze(-2), particles)
            var = model.variance() * temperature**2
            loglik = loglik - (((next_obs - obs).unsqueeze(-2) - change) ** 2 / (2.0 * var)).sum(-1)
        return loglik * valid.unsqueeze(-1)

    def observe_start(
        self, model: FeatureObservationModel, obs: torch.Tensor, temperature: float
    ) -> None:
        """Weigh every particle by the first observation of the trial ``(N, obs_dim)``
        (normalised): a diagonal Gaussian around what ``model`` predicts for the particle, each
        dimension as wide as ``temperature`` times the model's error there."""
        with torch.no_grad():
            self._start = (model, obs, float(temperature))
            self._weigh(self._start_loglik(self.particles))

    def _start_loglik(self, particles: torch.Tensor) -> torch.Tensor:
        """Log-likelihoods ``(N, Q)`` of the trial's first observation (0 without one)."""
        if self._start is None:
            return particles.new_zeros(self.log_weights.shape[0], particles.shape[-2])
        model, obs, temperature = self._start
        predicted = model(particles)  # (Q, obs_dim) or (N, Q, obs_dim)
        var = model.log_var.exp().clamp_min(1e-6) * temperature**2
        diff = obs.unsqueeze(1) - (predicted if predicted.dim() == 3 else predicted.unsqueeze(0))
        return -((diff**2) / (2.0 * var)).sum(-1)

    def _weigh(self, loglik: torch.Tensor) -> None:
        """Add log-likelihoods ``(N, P)`` to the log-weights, each row's best shifted to 0."""
        logw = self.log_weights + loglik
        best = logw.max(dim=1, keepdim=True).values
        self.log_weights = logw - best
        self.offset = self.offset + best.squeeze(1)

    def trial_loglik(
        self, particles: torch.Tensor, history: tuple[torch.Tensor, ...] | None = None
    ) -> torch.Tensor:
        """Log-likelihoods ``(N, Q)`` of the whole trial so far under per-row particles
        ``(N, Q, F)`` (differentiable in them); ``history`` is :meth:`stacked_history`."""
        total = self._start_loglik(particles)
        history = history if history is not None else self.stacked_history()
        if history is not None:
            total = total + self._step_loglik(particles.unsqueeze(0), *history).sum(0)
        return total

    def stacked_history(self) -> tuple[torch.Tensor, ...] | None:
        """The trial's transitions so far, ``(T, N, ...)`` each: normalised observations,
        actions, rewards, next observations and validity; None before the first."""
        if not self._history:
            return None
        return tuple(torch.stack(x) for x in zip(*self._history, strict=True))

    def refine(self, steps: int, top: int, lr: float) -> None:
        """Refine each row's ``top`` most likely particles by ``steps`` Adam steps (step size
        ``lr``) up the trial's log-likelihood plus a unit Gaussian log-prior on the standardised
        features, then weigh them by the trial's likelihood beside the bank. The refined
        particles replace those of an earlier refinement; the bank stays. Deterministic."""
        history = self.stacked_history()
        if steps < 1 or history is None:
            return
        n, p = self.log_weights.shape[0], self.bank.shape[0]
        rows = self._rows()
        k = min(top, rows.shape[1])
        best = self.log_weights.topk(k, dim=1).indices  # (N, k)
        h = rows.gather(1, best.unsqueeze(-1).expand(-1, -1, rows.shape[-1])).detach()
        m, v = torch.zeros_like(h), torch.zeros_like(h)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        with torch.enable_grad():
            for t in range(1, steps + 1):
                h.requires_grad_(True)
                objective = self.trial_loglik(h, history).sum() - 0.5 * (h**2).sum()
                (grad,) = torch.autograd.grad(objective, h)
                with torch.no_grad():
                    m = beta1 * m + (1 - beta1) * grad
                    v = beta2 * v + (1 - beta2) * grad**2
                    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
                    h = (h + lr * m_hat / (v_hat.sqrt() + eps)).detach()
        with torch.no_grad():
            refined_logw = self.trial_loglik(h, history) - self.offset.unsqueeze(1)
            self.particles = torch.cat([self.bank.expand(n, -1, -1), h], dim=1)
            logw = torch.cat([self.log_weights[:, :p], refined_logw], dim=1)
            self.log_weights = logw
            self._weigh(torch.zeros_like(logw))
        self.index = None  # the next hypotheses() draws afresh

    def draw(self) -> torch.Tensor:
        """A particle index per row ``(N,)``, drawn by weight."""
        weights = torch.softmax(self.log_weights, dim=1).cpu()
        return torch.multinomial(weights, 1, generator=self.generator).squeeze(1)

    def _rows(self) -> torch.Tensor:
        """Every row's particles ``(N, Q, F)``."""
        n = self.log_weights.shape[0]
        return self.particles if self.particles.dim() == 3 else self.particles.expand(n, -1, -1)

    def variance(self) -> torch.Tensor:
        """The posterior's variance of each feature ``(N, F)`` (weighted over the particles)."""
        w = torch.softmax(self.log_weights, dim=1).unsqueeze(-1)
        rows = self._rows()
        mean = (w * rows).sum(1)
        return (w * rows**2).sum(1) - mean**2

    def hypotheses(self, redraw: bool, nats: float | None) -> torch.Tensor:
        """Each row's hypothesis ``(N, F)``: its particle, redrawn when ``redraw`` (every row)
        or, with ``nats``, when its log-weight is that far below its row's best. Every call
        draws for all rows (the generator advances alike whatever the evidence)."""
        drawn = self.draw().to(self.log_weights.device)
        if self.index is None or redraw:
            self.index = drawn
        elif nats is not None:
            current = self.log_weights.gather(1, self.index.unsqueeze(1)).squeeze(1)
            behind = current < self.log_weights.max(dim=1).values - nats
            self.index = torch.where(behind, drawn, self.index)
        if self.particles.dim() == 2:
            return self.particles[self.index]
        return self.particles[torch.arange(self.particles.shape[0]), self.index]


def fuse(
    hypothesis: torch.Tensor,
    particle_var: torch.Tensor,
    head_mean: torch.Tensor,
    head_var: torch.Tensor,
) -> torch.Tensor:
    """A particle hypothesis ``(N, F)`` corrected, feature by feature, towards a second
    posterior (the belief's Gaussian head: ``head_mean``, ``head_var``), by the weight of that
    posterior's certainty: ``h + v_p / (v_p + v_h) * (m_h - h)`` with ``v_p`` the particles'
    weighted variance ``(N, F)``. A feature the rewards pin down (a goal) stays the particle's;
    one the observations show but the particles cannot hold (the size of an object larger than
    any train object) comes from the head, which reads it from the trial."""
    gain = particle_var / (particle_var + head_var).clamp_min(1e-12)
    return hypothesis + gain * (head_mean - hypothesis)
