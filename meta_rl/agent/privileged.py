"""Networks that read the true task features, used by training losses only (docs/privileged.md).

:class:`PrivilegedCritic` is the asymmetric critic (``privileged.critic``): a value network on
``[normalised obs, belief features, task features]``. :class:`TaskInferenceHead` maps belief
features to predicted task features (``privileged.task_inference_weight``). Neither reads the
true task features when the agent acts: :class:`~meta_rl.agent.meta_agent.MetaAgent` has no
input for them. The critic is never called then, and
:meth:`~meta_rl.agent.meta_agent.MetaAgent.from_checkpoint` does not even build it; the head is
built (and acts) only in a student (``privileged.teacher``), where it reads the belief alone and
its output is part of what the policy conditions on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from meta_rl.agent.networks import RunningNorm, mlp

__all__ = [
    "PRIVILEGED_MODULES",
    "PrivilegedCritic",
    "TaskInferenceHead",
    "inference_targets",
    "inference_width",
    "standardize_features",
]

PRIVILEGED_MODULES = ("privileged_critic", "task_head")
"""Attribute names (and ``state_dict`` prefixes) of the privileged parts of ``AgentNetworks``."""


def inference_width(priv: Any, task_dim: int) -> int:
    """How many task features the task-inference head predicts: the columns of
    ``privileged.inference_features`` (``priv``), else all ``task_dim``; an index outside the
    features is refused naming the key."""
    cols = priv.inference_features
    if cols is None:
        return task_dim
    if max(cols) >= task_dim:
        raise ValueError(
            f"privileged.inference_features: got {list(cols)}; allowed: column indices below "
            f"{task_dim}, the width of this family's Task.features()"
        )
    return len(cols)


def inference_targets(priv: Any, features: torch.Tensor) -> torch.Tensor:
    """The columns of the true task features ``(N, F)`` the head predicts
    (``privileged.inference_features``; all of them when null)."""
    cols = priv.inference_features
    return features if cols is None else features[:, list(cols)]


class PrivilegedCritic(nn.Module):
    """State value from the normalised observation, the belief features and the task features."""

    def __init__(
        self,
        obs_dim: int,
        belief_dim: int,
        task_dim: int,
        *,
        hidden: tuple[int, ...] = (128, 128),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        act: type[nn.Module] = nn.Tanh if activation == "tanh" else nn.ReLU
        self.in_dim = obs_dim + belief_dim + task_dim
        self.net = mlp([self.in_dim, *hidden, 1], act)

    def forward(
        self, norm_obs: torch.Tensor, belief: torch.Tensor, task: torch.Tensor
    ) -> torch.Tensor:
        """Values ``(...)`` of inputs ``(..., obs_dim)``, ``(..., belief)``, ``(..., task)``."""
        value: torch.Tensor = self.net(torch.cat([norm_obs, belief, task], dim=-1)).squeeze(-1)
        return value


def standardize_features(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Features ``(N, F)`` with zero mean and unit variance over the batch (constant columns
    become 0), so goal, size, mass and friction weigh alike whatever their units."""
    mean = features.mean(0)
    std = features.std(0, unbiased=False)
    return (features - mean) / (std + eps)


class TaskInferenceHead(nn.Module):
    """Predicted (standardised) task features from belief features.

    What "standardised" means is :meth:`targets`: over each batch by default; with
    ``fixed_norm`` (a student's head, ``privileged.teacher``) by the fixed statistics of
    ``feature_norm``, a :class:`~meta_rl.agent.networks.RunningNorm` that is never updated: the
    teacher's observation normaliser on its task-feature columns, copied at the student's start
    and saved with the head. The head's output is then exactly what the teacher's policy read
    in those columns, so the student's policy reads it in their place.

    With ``components`` K >= 1 the head is a mixture density network: it outputs a posterior
    over the standardised features, a mixture of K diagonal Gaussians (:meth:`mixture`), and
    learns it by negative log-likelihood (:meth:`loss`); :meth:`forward` is then the mixture's
    mean and :meth:`sample` draws from it (posterior sampling, ``privileged.hypotheses:
    sample``). With K = 0 (the default) it is a point estimate learnt by mean squared error.
    """

    feature_norm: RunningNorm | None

    LOG_STD_RANGE = (-3.0, 1.0)
    """The components' log standard deviations are squashed into this range (standardised
    units): a collapsed component would make the likelihood unbounded."""

    def __init__(
        self,
        belief_dim: int,
        task_dim: int,
        *,
        hidden: tuple[int, ...] = (64,),
        fixed_norm: bool = False,
        normalize: bool = True,
        components: int = 0,
    ) -> None:
        super().__init__()
        if components < 0:
            raise ValueError(
                f"privileged.task_head_components: got {components}; allowed: 0 (a point "
                "estimate) or the number K >= 1 of mixture components"
            )
        self.task_dim = task_dim
        self.components = components
        # A point estimate: F outputs; a mixture: K logits, K x F means, K x F log-stds.
        width = task_dim if components == 0 else components * (1 + 2 * task_dim)
        self.net = mlp([belief_dim, *hidden, width], nn.ReLU)
        # Only a student's head has it, so a plain head's state_dict is as before.
        self.feature_norm = RunningNorm(task_dim, enabled=normalize) if fixed_norm else None

    def targets(self, features: torch.Tensor) -> torch.Tensor:
        """The standardised true features ``(N, F)`` that the head learns to predict."""
        if self.feature_norm is None:
            return standardize_features(features)
        return self.feature_norm(features)

    def mixture(self, belief: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The posterior over the standardised features given belief features ``(..., B)``:
        ``(log_weights (..., K), means (..., K, F), log_stds (..., K, F))``; a point estimate
        is one component of zero log-std."""
        out: torch.Tensor = self.net(belief)
        if self.components == 0:
            mean = out.unsqueeze(-2)
            return torch.zeros_like(out[..., :1]), mean, torch.zeros_like(mean)
        k, f = self.components, self.task_dim
        logits, means, raw_std = out.split([k, k * f, k * f], dim=-1)
        lo, hi = self.LOG_STD_RANGE
        log_std = lo + (hi - lo) * torch.sigmoid(raw_std)
        shape = (*out.shape[:-1], k, f)
        return logits.log_softmax(-1), means.reshape(shape), log_std.reshape(shape)

    def forward(self, belief: torch.Tensor) -> torch.Tensor:
        """The point prediction ``(..., F)``: the estimate, or the mixture's mean."""
        if self.components == 0:
            out: torch.Tensor = self.net(belief)
            return out
        log_w, means, _ = self.mixture(belief)
        return (log_w.exp().unsqueeze(-1) * means).sum(-2)

    def loss(self, belief: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per row ``(...)``, the head's loss against standardised targets ``(..., F)``.

        A point estimate: its squared error (mean over features). A mixture: its negative
        log-likelihood (:meth:`nll`) on the belief *detached*, plus the squared error of its
        mean on the belief itself. The belief (the encoder) thus learns to predict every feature
        alike, as a point head teaches it; the likelihood would weigh each feature by its
        inverse variance, so features the mixture pins down (a visible size, a categorical
        shape) would drown out, in the encoder's clipped gradient, those only a trial reveals.
        The head learns the posterior's shape on top of that belief.
        """
        mse = ((self.forward(belief) - target) ** 2).mean(-1)
        if self.components == 0:
            return mse
        return self.nll(belief.detach(), target) + mse

    def log_density(self, belief: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per row ``(...)``, the posterior's log-density at standardised features ``x``
        ``(..., F)`` (up to the constant ``F log 2 pi / 2``)."""
        return -self.nll(belief, x) * self.task_dim

    def nll(self, belief: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per row ``(...)``, the mixture's negative log-likelihood of standardised targets
        ``(..., F)`` per feature (the constant ``log 2 pi / 2`` left out)."""
        log_w, means, log_std = self.mixture(belief)
        z = (target.unsqueeze(-2) - means) * torch.exp(-log_std)
        per_component = (-0.5 * z**2 - log_std).sum(-1)  # (..., K)
        return -torch.logsumexp(log_w + per_component, dim=-1) / self.task_dim

    def sample(
        self, belief: torch.Tensor, generator: torch.Generator, *, within: bool = True
    ) -> torch.Tensor:
        """One draw ``(N, F)`` from the posterior given belief features ``(N, B)``: a component
        by its weight, then a point of it; with ``within`` false the component's mean (a draw
        among the posterior's modes, without the spread inside each). CPU ``generator``; a
        point estimate returns itself."""
        if self.components == 0:
            return self.forward(belief)
        log_w, means, log_std = self.mixture(belief)
        n = belief.shape[0]
        pick = torch.multinomial(log_w.exp().cpu(), 1, generator=generator).to(belief.device)
        idx = pick.view(n, 1, 1).expand(n, 1, self.task_dim)
        mean = means.gather(1, idx).squeeze(1)
        std = log_std.gather(1, idx).squeeze(1).exp()
        noise = torch.randn(mean.shape, generator=generator).to(belief.device)
        return mean + std * noise if within else mean
