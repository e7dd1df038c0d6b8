"""Configuration of an evaluation: the protocol, the methods compared, outputs and W&B."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meta_rl.baselines.config import SB3PPOConfig
from meta_rl.config import Config, param

__all__ = ["EvalConfig"]


@dataclass(frozen=True)
class EvalConfig(Config):
    """The evaluation protocol (M test tasks x S seeds x K episodes) and what it reports."""

    env_id: str | None = param(
        None,
        "Environment the checkpoint must have been trained on; null accepts the checkpoint's "
        "own. A checkpoint or baseline of another environment is refused.",
    )
    split: Literal["train", "test", "edge"] = param(
        "test",
        "Task split to evaluate on (test: unseen objects; edge: objects with one property "
        "beyond the test ranges, for families that have it, as the metarl/ ones).",
    )
    num_tasks: int = param(10, "M: tasks sampled from the split.", ge=1)
    num_seeds: int = param(
        3, "S: trials per task, each reset with its own seed; M*S trials in all.", ge=1
    )
    num_episodes: int = param(5, "K: episodes per trial (the adaptation budget).", ge=1, le=100)
    episode_steps: int | None = param(
        None,
        "Steps per episode; null: the checkpoint's env.episode_steps when its training set one, "
        "else the env's registered max_episode_steps.",
        ge=1,
    )
    task_seed: int = param(1234, "Seed of the generator that samples the tasks.", ge=0)
    env_seed: int = param(0, "Seed of the first reset; sub-env i gets env_seed + i.", ge=0)
    deterministic: bool = param(True, "Act with the policy's mean action (else sample).")
    zero_shot: bool = param(
        True, "Also evaluate the agent with adaptation switched off (zero-shot baseline)."
    )
    no_maml: bool = param(
        False,
        "Also evaluate a MAML agent with its inner loop off (belief on, the meta-parameters in "
        "every episode): what the inner step adds. Only for checkpoints trained with MAML.",
    )
    no_refine: bool = param(
        False,
        "Also evaluate a particle agent with its refinement off (privileged.refine_steps: the "
        "bank's particles alone): what refining them adds. Only for checkpoints that refine.",
    )
    refine_every: int | None = param(
        None,
        "Also evaluate a particle agent acting with refinement every this many steps within "
        "each episode (privileged.refine_every), named refine-every-<k>: what refining within "
        "episodes adds, paired with the agent as trained; null: not. Only for checkpoints that "
        "refine.",
        ge=1,
    )
    baselines: tuple[str, ...] = param(
        (), "SB3 baseline run dirs or model zips (from `metarl baselines`) to evaluate too."
    )
    scratch_ppo: bool = param(
        False, "Also evaluate SB3 PPO learning from scratch on each task within K episodes."
    )
    scratch: SB3PPOConfig = param(
        default_factory=SB3PPOConfig,
        doc="Hyper-parameters of the from-scratch PPO baseline (one update per episode).",
    )
    confidence_level: float = param(0.95, "Level of the bootstrap intervals.", gt=0.0, lt=1.0)
    num_bootstrap: int = param(2000, "Bootstrap resamples per interval.", ge=100)
    bootstrap_seed: int = param(0, "Seed of the bootstrap resampling generator.", ge=0)
    num_videos: int = param(
        2, "Test tasks filmed (episode 1 beside episode K) for the agent; 0: none.", ge=0
    )
    video_tasks: str = param(
        "first",
        "Which test tasks are filmed: first (tasks 0, 1, ...) or adapted (the first tasks whose "
        "trial failed in episode 1 and succeeded in episode K, where adaptation shows; the "
        "first tasks make up any shortfall).",
        choices=("first", "adapted"),
    )
    video_fps: int = param(30, "Frames per second of the videos.", ge=1)
    camera_name: str | None = param(None, "Camera of the videos; null: the env's default.")
    video_size: tuple[int, int] | None = param(
        None, "Rendered (width, height) of each clip; null: the env's default.", ge=16
    )
    device: str = param(
        "auto", "Where the agent runs (auto: cuda when available).", choices=("auto", "cpu", "cuda")
    )
    torch_threads: int | None = param(
        1,
        "torch.set_num_threads while evaluating: the agents' small networks run fastest on one "
        "thread (many threads thrash on a shared CPU); null leaves torch's default.",
        ge=1,
    )
    progress_bar: bool = param(True, "Show tqdm progress bars over tasks and trials.")
    wandb_mode: Literal["offline", "online", "disabled"] = param(
        "offline", "W&B mode; the W&B files go into <run_dir>/wandb (sync offline runs later)."
    )
    wandb_project: str | None = param(
        None, "W&B project; null: the training run's project (one workspace shows both)."
    )
