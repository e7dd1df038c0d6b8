"""Agents the tests drive: a scripted one that never moves and a freshly built meta-agent."""

from __future__ import annotations

import numpy as np
import torch

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.experiment import ExperimentConfig


class StillAgent:
    """Never moves, never adapts."""

    def begin_trial(self, num_envs: int) -> None:
        self.n = num_envs

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        return np.zeros((self.n, 1), dtype=np.float32)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
    ) -> None:
        pass

    def end_episode(self) -> None:
        pass


def toy_agent(cfg: ExperimentConfig | None = None, seed: int = 0) -> MetaAgent:
    """A meta-agent for toy/PointGoal-v0 (2-D observations and actions in [-1, 1]) of ``cfg``
    (default: the default config), its networks initialised from torch seed 0."""
    cfg = cfg if cfg is not None else ExperimentConfig()
    torch.manual_seed(0)
    return MetaAgent(
        AgentNetworks(2, 2, cfg),
        cfg,
        action_low=-np.ones(2),
        action_high=np.ones(2),
        seed=seed,
    )
