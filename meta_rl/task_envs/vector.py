"""Task-aware vector envs for any env family that follows the task protocol of docs/design.md.

An env family is usable for meta-training when ``env.unwrapped`` (or a wrapper of it, see
:class:`meta_rl.task_envs.family.TaskWrapper`) offers::

    task_distribution.sample(n: int, split: str, rng: numpy.random.Generator) -> list[Task]
    set_task(task) -> None        # pins the task for all later resets

:func:`make_task_vector_env` returns our batched simulator (``envs.make_batched``) for the
``metarl/`` ids and wraps any other family in Gymnasium's own :class:`SyncVectorEnv`, adding
``set_tasks(tasks)`` (one task per sub-environment) and ``task_distribution``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import gymnasium
from gymnasium.vector import SyncVectorEnv

from meta_rl.task_envs.family import (
    find_task_env,
    make_env,
    register_family,
    registered_episode_steps,
)

__all__ = [
    "TaskSyncVectorEnv",
    "TaskVectorEnvLike",
    "make_task_vector_env",
    "registered_episode_steps",
    "repeat_per_rollout",
]


class TaskVectorEnvLike(Protocol):
    """What the trainer needs of a vector env: Gymnasium's vector API plus tasks."""

    num_envs: int
    single_observation_space: gymnasium.Space[Any]
    single_action_space: gymnasium.Space[Any]

    @property
    def task_distribution(self) -> Any: ...

    def set_tasks(self, tasks: Sequence[Any]) -> None: ...

    def reset(
        self, *, seed: Any = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]: ...

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]: ...

    def close(self) -> None: ...


class TaskSyncVectorEnv(SyncVectorEnv):
    """Gymnasium's SyncVectorEnv whose sub-environments follow the task protocol."""

    def __init__(self, env_fns: Sequence[Callable[[], gymnasium.Env[Any, Any]]], env_id: str):
        super().__init__(env_fns)
        # The layer of each sub-env that offers the protocol (env.unwrapped or a TaskWrapper).
        self.task_envs = [find_task_env(env, env_id) for env in self.envs]

    @property
    def task_distribution(self) -> Any:
        return self.task_envs[0].task_distribution

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """Pin one task per sub-environment (takes effect at the next reset)."""
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks: got {len(tasks)} tasks for {self.num_envs} envs")
        for env, task in zip(self.task_envs, tasks, strict=True):
            env.set_task(task)


def _batched_creator(env_id: str) -> Callable[..., TaskVectorEnvLike] | None:
    """The batched simulator of one of our ``metarl/`` ids: its registered vector entry point
    (``envs.batched`` for the arm envs);
    None for other families and without ``envs``."""
    if not env_id.startswith("metarl/"):
        return None
    try:
        import envs  # noqa: F401  (registers the ids)
    except ImportError:
        return None
    entry = gymnasium.spec(env_id).vector_entry_point
    if entry is None:
        return None
    # Gymnasium types it as an env or a vector-env creator; a vector entry point is the latter.
    creator: Any = gymnasium.envs.registration.load_env_creator(str(entry))
    return cast("Callable[..., TaskVectorEnvLike]", creator)


def make_task_vector_env(
    env_id: str,
    num_envs: int,
    *,
    seed: int | None = None,
    num_threads: int | None = None,
    batched: bool = True,
    **env_kwargs: Any,
) -> TaskVectorEnvLike:
    """A vector env of ``num_envs`` copies of ``env_id`` with ``set_tasks``/``task_distribution``.

    Our ids use the batched simulator (unless ``batched`` is false); others are wrapped in
    :class:`TaskSyncVectorEnv`. ``seed`` seeds the first reset. ``env_id`` is a registered id
    (:func:`meta_rl.task_envs.family.register_family` imports a user's family first).
    """
    env_id = register_family(env_id)
    creator = _batched_creator(env_id) if batched else None
    if creator is not None:
        try:
            venv: TaskVectorEnvLike = creator(num_envs, num_threads=num_threads, **env_kwargs)
        except TypeError as e:  # an unknown constructor argument
            raise ValueError(
                f"env {env_id!r} cannot be made with arguments {sorted(env_kwargs)}: {e}; check "
                "env.kwargs"
            ) from e
    else:
        fns = [_env_fn(env_id, env_kwargs) for _ in range(num_envs)]
        venv = TaskSyncVectorEnv(fns, env_id)
    if seed is not None:
        venv.reset(seed=seed)
    return venv


def _env_fn(env_id: str, kwargs: dict[str, Any]) -> Callable[[], gymnasium.Env[Any, Any]]:
    def make() -> gymnasium.Env[Any, Any]:
        return make_env(env_id, **kwargs)

    return make


def repeat_per_rollout(tasks: Sequence[Any], rollouts: int) -> list[Any]:
    """Each task repeated for its ``rollouts`` consecutive sub-environments (an agent that
    adapts on several parallel rollouts of a task: ``maml.rollouts_per_task``)."""
    return [task for task in tasks for _ in range(rollouts)]
