"""Configuration of the stable-baselines3 PPO baselines (``configs/baselines/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from meta_rl.config import Config, param

__all__ = ["BASELINE_KINDS", "BaselineConfig", "SB3PPOConfig"]

BASELINE_KINDS = ("multitask", "oracle", "scratch")


@dataclass(frozen=True)
class SB3PPOConfig(Config):
    """Hyper-parameters handed to ``stable_baselines3.PPO``."""

    learning_rate: float = param(3e-4, "Adam learning rate.", gt=0.0)
    n_steps: int = param(
        256, "Steps per sub-env per update (multitask/oracle; scratch updates per episode).", ge=2
    )
    batch_size: int = param(64, "Minibatch size.", ge=2)
    n_epochs: int = param(10, "Passes over each batch of data per update.", ge=1)
    gamma: float = param(0.99, "Discount factor.", gt=0.0, le=1.0)
    gae_lambda: float = param(0.95, "GAE lambda.", ge=0.0, le=1.0)
    clip_range: float = param(0.2, "Clip range of the probability ratio.", gt=0.0, lt=1.0)
    ent_coef: float = param(0.0, "Entropy bonus weight.", ge=0.0)
    vf_coef: float = param(0.5, "Value loss weight.", ge=0.0)
    max_grad_norm: float = param(0.5, "Gradient-norm clip.", gt=0.0)
    log_std_init: float = param(0.0, "Initial log standard deviation of the actions.")
    net_arch: tuple[int, ...] = param((64, 64), "Hidden layer widths of policy and value.", ge=1)

    def policy_kwargs(self) -> dict[str, Any]:
        return {"net_arch": list(self.net_arch), "log_std_init": self.log_std_init}


@dataclass(frozen=True)
class BaselineConfig(Config):
    """One SB3 baseline: what it sees, how long it trains, where it is saved.

    ``multitask``: PPO on tasks of the train split with the goal hidden (a policy that must do
    well on average). ``oracle``: PPO that sees the goal (``reveal_task=True``): an upper bound.
    ``scratch``: no pre-training; at evaluation a fresh PPO learns on each test task from the
    trial's own K episodes (the run dir only records its hyper-parameters).
    """

    kind: Literal["multitask", "oracle", "scratch"] = param("multitask", "Which baseline.")
    env_id: str = param(
        "metarl/PickPlace-v0", "Gymnasium id of the env family (module:id imports the module)."
    )
    env_module: str | None = param(
        None,
        "Module imported first: it registers your own family's id (as env.module of training; "
        "docs/byo_family.md).",
    )
    env_kwargs: dict[str, Any] = param(
        default_factory=dict,
        doc="Env constructor arguments (split and reveal_task are set by the kind).",
    )
    total_timesteps: int = param(200_000, "Environment steps of training.", ge=1)
    n_envs: int = param(8, "Parallel environments (each draws fresh train tasks).", ge=1)
    seed: int = param(0, "Seed of PPO and of the environments.", ge=0)
    device: str = param(
        "auto", "Where PPO learns (auto: cuda when available).", choices=("auto", "cpu", "cuda")
    )
    runs_dir: str = param("runs", "Root folder of run directories.")
    experiment: str | None = param(None, "Run name prefix; null: '<kind>_ppo'.")
    progress_bar: bool = param(True, "Show a tqdm progress bar over training steps.")
    torch_threads: int | None = param(
        1,
        "torch.set_num_threads while training: small MLPs run fastest on one thread; null "
        "leaves torch's default.",
        ge=1,
    )
    ppo: SB3PPOConfig = param(default_factory=SB3PPOConfig, doc="PPO hyper-parameters.")
