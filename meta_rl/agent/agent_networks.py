"""Every learned part of an agent in one module, :class:`AgentNetworks`: the policy, the
context encoder, the task decoder, MAML's step sizes, the privileged parts a training loss
reads, a student's head and the particle posterior's models; one ``state_dict`` in
checkpoints."""

from __future__ import annotations

import copy

import torch
from torch import nn

from meta_rl.agent.encoder import ContextEncoder
from meta_rl.agent.maml import (
    MetaSGD,
    select_adapted_names,
)
from meta_rl.agent.networks import RunningNorm
from meta_rl.agent.particles import (
    FeatureDynamicsModel,
    FeatureObservationModel,
    FeatureRewardModel,
)
from meta_rl.agent.policy import ActorCritic
from meta_rl.agent.privileged import (
    PrivilegedCritic,
    TaskInferenceHead,
    inference_width,
)
from meta_rl.agent.task_model import TaskDecoder
from meta_rl.experiment import ExperimentConfig

__all__ = ["AgentNetworks"]


class AgentNetworks(nn.Module):
    """All learned parts of the agent in one module (one ``state_dict`` in checkpoints).

    With ``maml.enabled`` it also holds ``maml``, a :class:`~meta_rl.agent.maml.MetaSGD` over the
    policy (the actor's output layer with ``adapt_layers: last``; every actor layer and the
    action log-std with ``all``), whose learned step sizes are part of the ``state_dict``, and the
    buffer ``inner_reward_scale``: the factor (1 / std of the trainer's discounted returns) that
    puts the rewards of the inner loss on the critic's scale. Without MAML ``maml`` is None and
    the ``state_dict`` is that of the plain agent.

    ``task_dim`` (the width of the true task features) builds the privileged parts that
    ``cfg.privileged`` asks for: ``privileged_critic`` (a
    :class:`~meta_rl.agent.privileged.PrivilegedCritic`) and ``task_head`` (a
    :class:`~meta_rl.agent.privileged.TaskInferenceHead`); each is None otherwise, and always
    with ``task_dim`` None. ``acting_only`` (how :meth:`MetaAgent.from_checkpoint` builds the
    acting agent) leaves out the training-only ones: all of them, except a student's head.

    A student (``privileged.teacher``, docs/privileged.md) needs ``task_dim``: its policy is its
    teacher's, which read ``[observation, task features]`` and a belief, and reads
    :meth:`conditioning` in place of the belief: the task features its head predicts from the
    belief, then the belief. The head reads the belief alone, so no true task feature reaches
    the actor.
    """

    maml: MetaSGD | None
    inner_reward_scale: torch.Tensor
    privileged_critic: PrivilegedCritic | None
    task_head: TaskInferenceHead | None
    particle_bank: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        cfg: ExperimentConfig,
        task_dim: int | None = None,
        *,
        acting_only: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.student = cfg.privileged.teacher is not None
        if self.student and task_dim is None:
            raise ValueError(
                "AgentNetworks: a student (privileged.teacher) needs task_dim, the width of the "
                "task features its policy reads (predicted by its head)"
            )
        enc = cfg.encoder
        # What the policy conditions on besides the observation (see conditioning()).
        cond_dim = 2 * enc.latent_dim + (task_dim if self.student and task_dim is not None else 0)
        self.encoder = ContextEncoder(
            obs_dim,
            action_dim,
            latent_dim=enc.latent_dim,
            hidden_size=enc.hidden_size,
            embed_size=enc.embed_size,
        )
        pol = cfg.policy
        self.policy = ActorCritic(
            obs_dim,
            action_dim,
            cond_dim,
            hidden=pol.hidden,
            activation=pol.activation,
            init_log_std=pol.init_log_std,
            normalize_obs=pol.normalize_obs,
        )
        tm = cfg.task_model
        self.decoder = TaskDecoder(
            obs_dim,
            action_dim,
            enc.latent_dim,
            hidden=tm.hidden,
            predict_state=tm.predict_state,
        )

        # Rewards as the encoder reads them and the task model predicts them: scaled to unit
        # variance, so that small dense rewards still dominate the reconstruction loss.
        self.reward_norm = RunningNorm(1, enabled=tm.normalize_reward)

        if cfg.maml.enabled:
            names = select_adapted_names(self.policy, cfg.maml.adapt_layers, scope="actor")
            if cfg.maml.adapt_layers == "all":
                names = (*names, "log_std")  # MAML-RL adapts the exploration noise too
            self.maml = MetaSGD(self.policy, cfg.maml, names=names)
            self.register_buffer("inner_reward_scale", torch.ones(()))
        else:
            self.maml = None

        # Built last, so the other parts' initialisation is the same with and without them.
        priv = cfg.privileged
        self.privileged_critic = None
        self.task_head = None
        if task_dim is not None and priv.critic and not acting_only:
            self.privileged_critic = PrivilegedCritic(
                obs_dim, cond_dim, task_dim, hidden=pol.hidden, activation=pol.activation
            )
        # A student always has one: its fixed normaliser standardises the features it reads.
        wants_head = self.student or (priv.task_inference_weight > 0.0 and not acting_only)
        if task_dim is not None and wants_head:  # a student's head acts; other heads only train
            self.task_head = TaskInferenceHead(
                2 * enc.latent_dim,
                inference_width(priv, task_dim),
                hidden=priv.task_inference_hidden,
                fixed_norm=self.student,
                normalize=pol.normalize_obs,
                components=priv.task_head_components,
            )
        self.samples_hypotheses = self.student and priv.hypotheses != "mean"
        # The particle posterior's parts (hypotheses: particles): the reward model and the
        # particles, raw task features of the train split filled in when a run starts.
        self.reward_model: FeatureRewardModel | None = None
        if self.student and priv.hypotheses == "particles" and task_dim is not None:
            self.reward_model = FeatureRewardModel(
                obs_dim,
                action_dim,
                task_dim,
                hidden=priv.reward_model_hidden,
                learned_noise=priv.reward_noise == "learned",
            )
            self.register_buffer("particle_bank", torch.zeros(priv.particles, task_dim))
        self.reward_model_trained: FeatureRewardModel | None = None
        """With ``privileged.reward_model_averaging``, the model the optimiser trains; then
        ``reward_model``, which the posterior reads, is the running average of its weights."""
        if self.reward_model is not None and priv.reward_model_averaging > 0.0:
            self.reward_model_trained = copy.deepcopy(self.reward_model)
        self.observation_model: FeatureObservationModel | None = None
        if self.reward_model is not None and priv.observation_likelihood and task_dim is not None:
            self.observation_model = FeatureObservationModel(
                obs_dim, task_dim, hidden=priv.reward_model_hidden
            )
        self.dynamics_model: FeatureDynamicsModel | None = None
        if self.reward_model is not None and priv.dynamics_likelihood and task_dim is not None:
            self.dynamics_model = FeatureDynamicsModel(
                obs_dim, action_dim, task_dim, hidden=priv.reward_model_hidden
            )

    @property
    def fitted_reward_model(self) -> FeatureRewardModel | None:
        """The reward model the optimiser fits: ``reward_model_trained`` with averaging, else
        ``reward_model`` itself (None without a particle posterior)."""
        if self.reward_model_trained is not None:
            return self.reward_model_trained
        return self.reward_model

    def conditioning(
        self, belief: torch.Tensor, hypothesis: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What the policy reads besides the observation, from belief features
        ``(..., 2 * latent_dim)``: those features; a student's are preceded by the task features
        its head predicts from them (standardised as its teacher's normaliser standardised the
        revealed ones), so its policy reads what its teacher read, the belief in place of the
        prior the teacher always saw. ``hypothesis`` ``(..., F)``: standardised task features
        to read in place of the head's prediction (a draw of posterior sampling)."""
        if not self.student:
            return belief
        assert self.task_head is not None
        task = self.task_head(belief) if hypothesis is None else hypothesis
        return torch.cat([task, belief], dim=-1)

    def recorded_hypotheses(self, conditioning: torch.Tensor) -> torch.Tensor | None:
        """The hypotheses a sampling student read, from what it conditioned on ``(..., C)``
        (``StepOutput.belief``, ``TrialBatch.beliefs``): its first ``F`` columns; None when the
        student reads its head's prediction (recomputed from the belief) or is no student."""
        if not self.samples_hypotheses or self.task_head is None:
            return None
        return conditioning[..., : self.task_head.task_dim]

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the encoder and the task model read them."""
        return self.policy.obs_norm(obs)

    def normalize_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """Rewards ``(...)`` as the encoder and the task model read them."""
        return self.reward_norm(reward.unsqueeze(-1)).squeeze(-1)
