"""Stable-baselines3 PPO baselines (multi-task, oracle, from scratch) as adaptive agents."""

from meta_rl.baselines.agents import SB3PolicyAgent, ScratchPPOAgent
from meta_rl.baselines.config import BaselineConfig, SB3PPOConfig
from meta_rl.baselines.train import LoadedBaseline, load_baseline, train_baseline

__all__ = [
    "BaselineConfig",
    "LoadedBaseline",
    "SB3PPOConfig",
    "SB3PolicyAgent",
    "ScratchPPOAgent",
    "load_baseline",
    "train_baseline",
]
