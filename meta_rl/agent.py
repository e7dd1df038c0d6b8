"""The meta-trained agent: context encoder + belief-conditioned policy (+ the task model).

Agent API (used by evaluation and by the trainer's own rollouts, so both drive the same code)::

    agent = MetaAgent.from_checkpoint(Path("runs/<run>"), device="auto")  # best, else last
    agent.env_id, agent.env_kwargs, agent.config      # what it was trained on / with
    agent.use_context = False                         # zero-shot ablation: policy sees the prior
    agent.begin_trial(num_envs)                       # new tasks: belief back to the prior
    actions = agent.act(obs, deterministic=True)      # (N, obs_dim) -> (N, act_dim), clipped
    agent.observe(obs, actions, rewards, next_obs, dones)   # update the belief (GRU step)
    agent.end_episode()                               # all N episodes ended (belief is kept)

It implements the ``AdaptiveAgent`` protocol of docs/design.md. The encoder's hidden state is
carried across episodes of a trial and reset only by :meth:`MetaAgent.begin_trial`. With
``use_context`` false the encoder is not run and the policy always sees the prior N(0, I).
``from_checkpoint`` accepts a checkpoint file or a run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from meta_rl.encoder import Belief, ContextEncoder
from meta_rl.experiment import ExperimentConfig, resolve_device
from meta_rl.policy import ActorCritic, PolicyOutput, RunningNorm, gaussian_log_prob
from meta_rl.task_model import TaskDecoder

__all__ = ["AgentNetworks", "MetaAgent", "StepOutput"]


class AgentNetworks(nn.Module):
    """All learned parts of the agent in one module (one ``state_dict`` in checkpoints)."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        enc = cfg.encoder
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
            2 * enc.latent_dim,
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

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the encoder and the task model read them."""
        return self.policy.obs_norm(obs)

    def normalize_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """Rewards ``(...)`` as the encoder and the task model read them."""
        return self.reward_norm(reward.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class StepOutput:
    """One action step for N sub-environments: what the trainer records."""

    raw_action: torch.Tensor  # (N, A) sampled, unclipped (for log-probabilities)
    env_action: np.ndarray  # (N, A) clipped to the action space (sent to the env)
    log_prob: torch.Tensor  # (N,)
    value: torch.Tensor  # (N,)
    belief: torch.Tensor  # (N, 2 * latent_dim) the features the policy saw


class MetaAgent:
    """Adaptive agent: belief from the context encoder, actions from the conditioned policy.

    ``generator`` (a CPU ``torch.Generator``) draws the exploration noise; ``seed`` seeds a
    fresh one when it is not given.
    """

    def __init__(
        self,
        networks: AgentNetworks,
        config: ExperimentConfig,
        *,
        action_low: np.ndarray,
        action_high: np.ndarray,
        device: torch.device | str = "cpu",
        use_context: bool | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        self.networks = networks
        self.config = config
        self.env_id = config.env.id
        self.env_kwargs: dict[str, Any] = dict(config.env.kwargs)
        self.device = torch.device(device)
        self.use_context = config.encoder.use_context if use_context is None else use_context
        self.action_low = np.asarray(action_low, dtype=np.float32)
        self.action_high = np.asarray(action_high, dtype=np.float32)
        self.generator = generator if generator is not None else torch.Generator()
        if generator is None:
            self.generator.manual_seed(seed)
        self._hidden: torch.Tensor | None = None
        self._belief: Belief | None = None

    # ---------------------------------------------------------------- AdaptiveAgent protocol

    def begin_trial(self, num_envs: int) -> None:
        """New tasks: the encoder state restarts and the belief is the prior."""
        enc = self.networks.encoder
        self._hidden = enc.initial_state(num_envs, self.device)
        self._belief = enc.prior(num_envs, self.device)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions ``(N, act_dim)`` for observations ``(N, obs_dim)``, within the action space."""
        return self.step(obs, deterministic).env_action

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> None:
        """Read one transition per sub-environment into the belief (rows with mask false skip)."""
        if self._hidden is None:
            raise RuntimeError("MetaAgent.observe before begin_trial(num_envs)")
        if not self.use_context:
            return
        nets = self.networks
        with torch.no_grad():
            self._hidden, self._belief = nets.encoder.step(
                self._hidden,
                nets.normalize(self._tensor(obs)),
                self._tensor(action),
                nets.normalize_reward(self._tensor(reward)),
                nets.normalize(self._tensor(next_obs)),
                self._tensor(done),
                None if mask is None else torch.as_tensor(mask, device=self.device),
            )

    def end_episode(self) -> None:
        """All N episodes ended: the belief carries over to the next episode of the trial."""
        if self._hidden is None:
            raise RuntimeError("MetaAgent.end_episode before begin_trial(num_envs)")

    # ---------------------------------------------------------------- trainer-facing

    def belief_features(self) -> torch.Tensor:
        """What the policy conditions on now: ``(N, 2 * latent_dim)``."""
        if self._belief is None:
            raise RuntimeError("MetaAgent: call begin_trial(num_envs) first")
        if not self.use_context:
            n = self._belief.mean.shape[0]
            return self.networks.encoder.prior(n, self.device).features()
        return self._belief.features()

    def step(self, obs: np.ndarray, deterministic: bool = False) -> StepOutput:
        """Act and return everything the trainer records (no gradients)."""
        belief = self.belief_features()
        with torch.no_grad():
            obs_t = self._tensor(obs)
            out: PolicyOutput = self.networks.policy(obs_t, belief)
            if deterministic:
                raw = out.mean
            else:
                noise = torch.randn(out.mean.shape, generator=self.generator).to(self.device)
                raw = out.mean + out.log_std.exp() * noise
            log_prob = gaussian_log_prob(out, raw)
        env_action = np.clip(raw.cpu().numpy(), self.action_low, self.action_high)
        return StepOutput(raw, env_action, log_prob, out.value, belief)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto") -> MetaAgent:
        """Load an agent from a checkpoint file, or a run directory (its best, else last)."""
        from meta_rl.checkpoint import agent_state_from_checkpoint

        state = agent_state_from_checkpoint(Path(path))
        dev = resolve_device(device)
        networks = AgentNetworks(state.obs_dim, state.action_dim, state.config)
        networks.load_state_dict(state.networks)
        networks.to(dev).eval()
        return cls(
            networks,
            state.config,
            action_low=state.action_low,
            action_high=state.action_high,
            device=dev,
        )
