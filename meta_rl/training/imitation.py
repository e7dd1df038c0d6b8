"""Imitation of an expert told the task: DAgger (``train.algorithm: dagger``, docs/imitation.md).

Each iteration the agent collects its own trials (step 2 of the trainer, unchanged); the expert
labels every state the agent visited with the action it would take there knowing the true task
(:class:`Expert`), and :func:`imitation_update` regresses the policy's mean action onto those
labels. Collecting with the learner and labelling its states is DAgger with the expert's mixing
weight at 0 (Ross et al. 2011): the agent learns to act well on the states its own mistakes
lead to, which cloning the expert's trials alone does not teach.

The expert of any family is its own revealed policy (:class:`RevealedPolicy`): a run trained
with ``env.kwargs.reveal_task=true encoder.use_context=false``, whose observation is the hidden
one followed by ``Task.features()``. Nothing here names a family.

What imitation cannot teach is to gather the information the expert never needed: an agent
that regresses the actions of an expert who knows the goal learns the average of those
actions under its belief. Posterior sampling (``privileged.hypotheses: sample``) is the way
out this toolkit offers: the student acts as its teacher would on a task drawn from its
belief's posterior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.privileged import PRIVILEGED_MODULES
from meta_rl.agent.task_model import TrialTensors
from meta_rl.checkpoint import agent_state_from_payload, load_checkpoint, locate
from meta_rl.experiment import ExperimentConfig
from meta_rl.training.optim import GuardedOptimizer
from meta_rl.training.ppo_update import sub_beliefs
from meta_rl.training.rollout import TrialBatch

__all__ = ["Expert", "RevealedPolicy", "imitation_loss", "imitation_update"]


class Expert(Protocol):
    """What DAgger imitates: an action for each visited state, knowing the true task."""

    def actions(self, obs: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Actions ``(T, N, A)`` (within the action space) for raw hidden-task observations
        ``(T, N, O)`` of tasks with true features ``(N, F)`` (``Task.features()``)."""
        ...


@dataclass
class RevealedPolicy:
    """A family's revealed policy as an expert: the deterministic (mean) action of a run trained
    with the task revealed, on ``[observation, task features]`` and the prior belief it always
    saw. ``source`` records the checkpoint it came from (file, iteration, env steps, hash)."""

    networks: AgentNetworks
    action_low: torch.Tensor
    action_high: torch.Tensor
    source: dict[str, Any]

    @classmethod
    def load(
        cls,
        where: str,
        *,
        env_id: str,
        obs_dim: int,
        task_dim: int,
        action_dim: int,
        device: torch.device,
        key: str = "imitation.expert",
    ) -> RevealedPolicy:
        """The revealed policy at ``where`` (a run directory or checkpoint file, found by
        :func:`~meta_rl.checkpoint.locate`); one that is missing or does not fit
        this env raises a ``ValueError`` naming ``key`` and what is allowed."""
        try:
            file = locate(where).file
            state = agent_state_from_payload(load_checkpoint(file), file)
        except (ValueError, FileNotFoundError) as e:  # CheckpointError, CheckpointNotFound
            raise ValueError(f"{key}: {e}") from e
        prefix = f"{key}: the expert {str(file)!r}"
        cfg = state.config
        if cfg.env.id != env_id:
            raise ValueError(
                f"{prefix} was trained on {cfg.env.id!r}, this run on {env_id!r}; allowed: a "
                "revealed policy of the same env id"
            )
        if cfg.encoder.use_context or cfg.maml.enabled or not cfg.env.kwargs.get("reveal_task"):
            raise ValueError(
                f"{prefix} has encoder.use_context {cfg.encoder.use_context}, maml.enabled "
                f"{cfg.maml.enabled} and env.kwargs.reveal_task "
                f"{bool(cfg.env.kwargs.get('reveal_task'))}; allowed: a revealed-task policy, "
                "trained with env.kwargs.reveal_task=true encoder.use_context=false (MAML off)"
            )
        want = obs_dim + task_dim
        if state.obs_dim != want or state.action_dim != action_dim:
            raise ValueError(
                f"{prefix} has observations of width {state.obs_dim} and actions of "
                f"{state.action_dim}; allowed: this run's observation width plus the task "
                f"features ({obs_dim} + {task_dim} = {want}) and actions of {action_dim}"
            )
        networks = AgentNetworks(
            state.obs_dim, state.action_dim, cfg, state.task_dim, acting_only=True
        )
        absent = {name for name in PRIVILEGED_MODULES if getattr(networks, name) is None}
        networks.load_state_dict(
            {k: v for k, v in state.networks.items() if k.split(".", 1)[0] not in absent}
        )
        networks.to(device).eval()
        for p in networks.parameters():
            p.requires_grad_(False)
        meta = state.meta
        return cls(
            networks,
            torch.as_tensor(state.action_low, device=device),
            torch.as_tensor(state.action_high, device=device),
            {
                "file": str(file),
                "iteration": int(meta["iteration"]),
                "env_steps": int(meta["env_steps"]),
                "config_hash": str(meta["config_hash"]),
            },
        )

    def actions(self, obs: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        nets = self.networks
        with torch.no_grad():
            task = features.to(obs).expand(*obs.shape[:-1], features.shape[-1])
            prior = nets.encoder.prior(1, obs.device).features()[0]
            belief = prior.expand(*obs.shape[:-1], prior.shape[-1])
            mean = nets.policy(torch.cat([obs, task], dim=-1), belief).mean
            return torch.maximum(torch.minimum(mean, self.action_high), self.action_low)


def imitation_loss(mean: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The squared error between mean actions and labels ``(..., A)`` (mean over action
    dimensions), averaged over the valid (``mask``) steps."""
    err = ((mean - labels) ** 2).mean(-1)
    w = mask.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def imitation_update(
    cfg: ExperimentConfig,
    networks: AgentNetworks,
    batch: TrialBatch,
    labels: torch.Tensor,
    *,
    trials: TrialTensors | None,
    guard: GuardedOptimizer,
    generator: torch.Generator,
) -> dict[str, float]:
    """``imitation.epochs`` passes of ``imitation.minibatches`` steps regressing the policy's
    mean action onto the expert's ``labels`` ``(T, N, A)``, weighted by
    ``imitation.action_weight``; logged as ``losses/imitation`` and ``losses/updates``.

    ``trials`` (the batch's normalised transitions) recomputes the beliefs with the encoder's
    graph per minibatch of whole trials, so the encoder learns from the loss too
    (``encoder.rl_gradients``); None reads the recorded beliefs, minibatches of single steps.
    A student reading sampled hypotheses reads the recorded draws either way.
    """
    t_len, n = batch.rewards.shape
    device = batch.rewards.device
    weight = cfg.imitation.action_weight
    recorded = networks.recorded_hypotheses(batch.beliefs)
    losses: list[float] = []
    for _ in range(cfg.imitation.epochs):
        if trials is not None:
            perm = torch.randperm(n, generator=generator).to(device)
            chunks = perm.chunk(min(cfg.imitation.minibatches, n))
        else:
            perm = torch.randperm(t_len * n, generator=generator).to(device)
            chunks = perm.chunk(cfg.imitation.minibatches)
        for idx in chunks:
            if trials is not None:
                drawn = None if recorded is None else recorded[:, idx]
                cond = networks.conditioning(sub_beliefs(networks.encoder, trials, idx), drawn)
                mean = networks.policy(batch.obs[:, idx], cond).mean
                loss = imitation_loss(mean, labels[:, idx], batch.mask[:, idx])
            else:
                flat = batch.beliefs.flatten(0, 1)[idx]
                mean = networks.policy(batch.obs.flatten(0, 1)[idx], flat).mean
                loss = imitation_loss(
                    mean, labels.flatten(0, 1)[idx], batch.mask.flatten(0, 1)[idx]
                )
            guard.step(weight * loss)
            if guard.stopped:
                break
            losses.append(float(loss.detach()))
        if guard.stopped:
            break
    return {
        "losses/imitation": float(np.mean(losses)) if losses else float("nan"),
        "losses/updates": float(len(losses)),
    }
