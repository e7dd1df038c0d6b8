"""Small experiment configs for the tests: tiny networks, a few iterations, no W&B, CPU, and the
run directories under ``tmp_path / "runs"``; each takes further overrides."""

from __future__ import annotations

from pathlib import Path

from helpers.toy_family import TOY_ID
from meta_rl.experiment import ExperimentConfig, load_experiment


def toy_config(tmp_path: Path, *overrides: str) -> ExperimentConfig:
    """Three iterations on toy/PointGoal-v0: 4 trials of 2 episodes of 8 steps each."""
    return load_experiment(
        None,
        [
            f"env.id={TOY_ID}",
            "env.tasks_per_batch=4",
            "env.eval_tasks=3",
            "env.episodes_per_trial=2",
            "env.episode_steps=8",
            "train.iterations=3",
            "train.eval_every=2",
            "train.checkpoint_every=2",
            "train.device=cpu",
            "logging.wandb_mode=disabled",
            "logging.progress_bar=false",
            "ppo.minibatches=2",
            "ppo.epochs=2",
            "task_model.updates_per_iteration=2",
            f"runs_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


def toy_maml_config(tmp_path: Path, *overrides: str) -> ExperimentConfig:
    """Two iterations of the agent with MAML on toy/PointGoal-v0: 4 trials of 3 episodes of 8
    steps each, a 16x16 policy, inner learning rate 0.5."""
    return load_experiment(
        None,
        [
            f"env.id={TOY_ID}",
            "env.tasks_per_batch=4",
            "env.eval_tasks=3",
            "env.episodes_per_trial=3",
            "env.episode_steps=8",
            "train.iterations=2",
            "train.eval_every=1",
            "train.checkpoint_every=1",
            "train.device=cpu",
            "logging.wandb_mode=disabled",
            "logging.progress_bar=false",
            "policy.hidden=[16, 16]",
            "ppo.minibatches=2",
            "ppo.epochs=2",
            "task_model.updates_per_iteration=1",
            "maml.enabled=true",
            "maml.inner_lr=0.5",
            f"runs_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


def pick_place_config(tmp_path: Path, *overrides: str) -> ExperimentConfig:
    """One iteration on metarl/PickPlace-v0: 4 trials of 2 episodes of 5 steps each, networks
    of width 16, one simulator thread."""
    return load_experiment(
        None,
        [
            "env.id=metarl/PickPlace-v0",
            "env.tasks_per_batch=4",
            "env.eval_tasks=2",
            "env.episodes_per_trial=2",
            "env.episode_steps=5",
            "env.num_threads=1",
            "encoder.hidden_size=16",
            "encoder.embed_size=8",
            "task_model.hidden=[16]",
            "task_model.updates_per_iteration=1",
            "task_model.belief_samples=4",
            "task_model.decode_samples=8",
            "policy.hidden=[16]",
            "ppo.epochs=1",
            "ppo.minibatches=2",
            "train.iterations=1",
            "train.eval_every=1",
            "train.checkpoint_every=1",
            "train.device=cpu",
            "logging.wandb_mode=disabled",
            "logging.progress_bar=false",
            f"runs_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )
