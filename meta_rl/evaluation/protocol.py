"""The evaluation protocol: trials of K episodes on pinned tasks, batched in one vector env.

A *trial* is K consecutive episodes of one agent on one pinned task; the agent adapts between
episodes as it is configured to (:class:`AdaptiveAgent`, docs/design.md). All ``M x S`` trials
(M tasks x S seeds) run at once, one per sub-environment: sub-environment ``i = s * M + m`` holds
task ``m`` and is seeded with ``env_seed + i`` on the trial's first reset, so every method sees
the same tasks and the same initial states (paired comparisons).

Episode k of a trial succeeds when ``info["success"]`` is reached at any step of it
(``success``), and ``success_final`` records it at the episode's last step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from meta_rl.task_envs.family import find_task_env, make_env, register_family
from meta_rl.task_envs.vector import TaskVectorEnvLike, make_task_vector_env
from meta_rl.trial import AdaptiveAgent, TrialOutcome, run_trial, torch_threads

__all__ = [
    "TrialResults",
    "make_eval_env",
    "run_trials",
    "sample_tasks",
    "set_env_tasks",
    "torch_threads",
]


@dataclass(frozen=True)
class TrialResults:
    """Outcomes of ``num_trials`` trials of ``num_episodes`` episodes.

    Arrays of shape ``(num_trials, num_episodes)``: ``success`` (1.0 if ``info["success"]`` was
    reached at any step of the episode), ``success_final`` (at its last step), ``returns`` (sum of
    rewards) and ``lengths`` (steps). ``task_index[i]`` is the task of trial ``i`` (an index into
    the sampled tasks) and ``seed_index[i]`` its seed number ``s``; ``physics_errors`` counts
    episodes cut short by a diverged simulation.
    """

    success: np.ndarray
    success_final: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    task_index: np.ndarray
    seed_index: np.ndarray
    physics_errors: int

    @property
    def num_trials(self) -> int:
        return int(self.success.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.success.shape[1])

    def by_task_and_seed(self, name: str) -> np.ndarray:
        """The metric as a ``(num_tasks, num_seeds, num_episodes)`` array."""
        values = self.metric(name)
        num_tasks = int(self.task_index.max()) + 1
        num_seeds = int(self.seed_index.max()) + 1
        out = np.full((num_tasks, num_seeds, self.num_episodes), np.nan)
        out[self.task_index, self.seed_index] = values
        if np.isnan(out).any():
            raise ValueError("TrialResults: every (task, seed) pair needs exactly one trial")
        return out

    def metric(self, name: str) -> np.ndarray:
        """The ``(num_trials, num_episodes)`` array of ``success``, ``success_final``, ``return``
        or ``length``."""
        table = {
            "success": self.success,
            "success_final": self.success_final,
            "return": self.returns,
            "length": self.lengths,
        }
        if name not in table:
            raise ValueError(f"metric: got {name!r}; allowed: {', '.join(sorted(table))}")
        return table[name]


def sample_tasks(
    env_id: str,
    num_tasks: int,
    split: str,
    rng: np.random.Generator,
    env_kwargs: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Sample ``num_tasks`` tasks of ``split`` from the env's own task distribution.

    Raises ``ValueError`` when the env offers no task distribution or the split has no tasks.
    """
    kwargs = {**dict(env_kwargs or {}), "split": split}
    env_id = register_family(env_id)
    env = make_env(env_id, **kwargs)
    try:
        dist = find_task_env(env, env_id).task_distribution
        try:
            tasks = list(dist.sample(num_tasks, split, rng))
        except (ValueError, IndexError, KeyError) as e:
            raise ValueError(
                f"split {split!r} of {env_id!r}: cannot sample {num_tasks} tasks ({e}); is the "
                "split empty? Choose a split (and env configuration) that holds tasks"
            ) from e
    finally:
        env.close()
    if not tasks:
        raise ValueError(
            f"split {split!r} of {env_id!r} has no tasks: choose a split with tasks "
            "(split: train|test) or an env configuration whose test split is not empty"
        )
    if len(tasks) != num_tasks:
        raise ValueError(
            f"split {split!r} of {env_id!r}: asked for {num_tasks} tasks, got {len(tasks)}"
        )
    return tasks


def make_eval_env(
    env_id: str,
    num_envs: int,
    *,
    seed: int,
    env_kwargs: Mapping[str, Any] | None = None,
) -> TaskVectorEnvLike:
    """A vector env of ``num_envs`` sub-envs that takes one pinned task per sub-env
    (:func:`meta_rl.task_envs.vector.make_task_vector_env`: the batched simulator for our ids)."""
    env_id = register_family(env_id)
    return make_task_vector_env(env_id, num_envs, seed=seed, **dict(env_kwargs or {}))


def set_env_tasks(env: TaskVectorEnvLike, tasks: Sequence[Any]) -> None:
    """Pin ``tasks[i]`` on sub-environment ``i``."""
    if len(tasks) != env.num_envs:
        raise ValueError(f"tasks: got {len(tasks)} for a vector env of {env.num_envs} sub-envs")
    env.set_tasks(list(tasks))


def run_trials(
    agent: AdaptiveAgent,
    env: TaskVectorEnvLike,
    *,
    num_tasks: int,
    num_seeds: int,
    num_episodes: int,
    deterministic: bool,
    env_seed: int,
    progress: bool = True,
    desc: str = "trials",
    episode_steps: int | None = None,
    rollouts_per_trial: int = 1,
) -> TrialResults:
    """Run one trial of ``num_episodes`` episodes in every sub-environment of ``env``.

    ``env`` holds ``num_tasks * num_seeds`` sub-environments with their tasks already pinned
    (:func:`set_env_tasks`, sub-env ``s * num_tasks + m`` holding task ``m``). Each episode
    starts with an explicit reset and lasts until every sub-environment has ended it; a
    sub-environment that ends early (a physics error) is not counted past its end, and agents
    whose ``observe`` takes a ``mask`` keyword (like ``MetaAgent``) get ``mask=False`` for it.
    ``episode_steps`` (None: the env's own episode length) ends every episode after that many
    steps, as the trainer does when its config sets ``env.episode_steps``.

    ``rollouts_per_trial`` m > 1 (for agents that adapt on m parallel rollouts of a task, such
    as ``MetaAgent`` with ``maml.rollouts_per_task``) runs each trial in m consecutive
    sub-environments (``env`` then holds ``num_tasks * num_seeds * m``, trial t in sub-envs
    ``t * m`` to ``t * m + m - 1``); a trial's success, return and length per episode are the
    means over its rollouts.
    """
    if rollouts_per_trial < 1:
        raise ValueError(f"rollouts_per_trial: got {rollouts_per_trial}; allowed: >= 1")
    trials = num_tasks * num_seeds
    n = trials * rollouts_per_trial
    if env.num_envs != n:
        raise ValueError(
            f"env has {env.num_envs} sub-envs; the protocol needs num_tasks * num_seeds * "
            f"rollouts_per_trial = {n}"
        )
    if num_episodes < 1:
        raise ValueError(f"num_episodes: got {num_episodes}; allowed: >= 1")
    if episode_steps is not None and episode_steps < 1:
        raise ValueError(f"episode_steps: got {episode_steps}; allowed: >= 1 or None")
    bar = tqdm(total=n * num_episodes, desc=desc, unit="episode", disable=not progress)

    def episode_done(k: int, so_far: TrialOutcome) -> None:
        bar.update(n)
        bar.set_postfix(episode=k + 1, success=f"{so_far.success[:, k].mean():.2f}")

    try:
        outcome = run_trial(
            env,
            agent,
            episodes=num_episodes,
            deterministic=deterministic,
            seed=env_seed,
            episode_steps=episode_steps,
            on_episode_end=episode_done,
        )
    finally:
        bar.close()

    def per_trial(values: np.ndarray) -> np.ndarray:
        return values.reshape(trials, rollouts_per_trial, num_episodes).mean(axis=1)

    trial = np.arange(trials)
    return TrialResults(
        success=per_trial(outcome.success),
        success_final=per_trial(outcome.success_final),
        returns=per_trial(outcome.returns),
        lengths=per_trial(outcome.lengths),
        task_index=trial % num_tasks,
        seed_index=trial // num_tasks,
        physics_errors=outcome.physics_errors,
    )
