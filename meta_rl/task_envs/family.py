"""Task families: importing the module that registers an id, finding the task protocol, wrapping.

Any Gymnasium env family that follows the task protocol of docs/design.md can be meta-trained and
evaluated. The toolkit reaches a user's family in one of two ways, both recorded in the run's
config so evaluation finds the family again:

- ``env.module: my_pkg.tasks``: the module is imported before the env is made (it registers
  its ids with ``gymnasium.register`` on import);
- Gymnasium's own ``module:id`` form, ``env.id: my_pkg.tasks:my/Task-v0``.

:func:`register_family` does either and returns the bare registered id, which every later
``gymnasium.make``/``gymnasium.spec`` call then uses. :func:`find_task_env` finds the object that
offers ``task_distribution`` and ``set_task``: ``env.unwrapped``, or the outermost wrapper that
has them, so a family built as a :class:`TaskWrapper` around another library's env works.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Generic, Protocol, TypeVar

import gymnasium as gym
import numpy as np

__all__ = [
    "TaskDistributionLike",
    "TaskProtocolError",
    "TaskWrapper",
    "find_task_env",
    "import_family",
    "make_env",
    "offers_task_protocol",
    "register_family",
    "registered_episode_steps",
    "resolve_episode_steps",
    "split_env_id",
    "task_features_of",
]

ObsT = TypeVar("ObsT")
ActT = TypeVar("ActT")

_DOCS = "docs/byo_family.md"


class TaskProtocolError(ValueError):
    """An env family that does not offer what the toolkit needs (the message says what to add)."""


class TaskDistributionLike(Protocol):
    """What a family's ``task_distribution`` offers."""

    def sample(self, n: int, split: str, rng: np.random.Generator) -> list[Any]: ...


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``("my_pkg.tasks", "my/Task-v0")`` for Gymnasium's ``"my_pkg.tasks:my/Task-v0"`` form;
    ``(None, env_id)`` for a plain id."""
    module, sep, bare = env_id.partition(":")
    if not sep:
        return None, env_id
    return module, bare


def import_family(module: str) -> None:
    """Import ``module`` (it registers its env ids), also from the current directory.

    ``python -m`` puts the current directory on the import path but the ``metarl`` console
    script does not; a family module next to the user's configs is found either way.
    Raises ``ValueError`` naming the module when it cannot be found.
    """
    for attempt in range(2):
        try:
            importlib.import_module(module)
            return
        except ModuleNotFoundError as e:
            missing = e.name or ""
            if not (missing == module or module.startswith(missing + ".")) or not missing:
                raise ValueError(
                    f"env.module: importing {module!r} failed: {e} (a dependency of the family "
                    "module is not installed)"
                ) from e
        cwd = os.getcwd()
        if attempt or cwd in sys.path:
            break
        sys.path.append(cwd)
    raise ValueError(
        f"env.module: cannot import {module!r}; it must be importable from the current "
        "directory or the Python path (set PYTHONPATH or `pip install -e` your package); see "
        f"{_DOCS}"
    )


def register_family(env_id: str, module: str | None = None) -> str:
    """Import what registers ``env_id`` and return the bare registered id.

    Imports ``envs`` for the ``metarl/`` ids, ``module`` when given and the module part of a
    ``module:id``. Raises ``ValueError`` (one line, with the fix) when the id is still unknown.
    """
    id_module, bare = split_env_id(env_id)
    if bare.startswith("metarl/"):
        import envs  # noqa: F401  (registers the ids on import)
    for name in (module, id_module):
        if name:
            import_family(name)
    if bare not in gym.registry:
        namespace = bare.split("/")[0] if "/" in bare else None
        known = sorted(k for k in gym.registry if namespace and k.startswith(namespace + "/"))
        hint = f"registered in that namespace: {', '.join(known)}" if known else ""
        if not hint:
            hint = (
                "if it is your own family, name the module that registers it: "
                "env.module=my_pkg.tasks (or env.id=my_pkg.tasks:ns/Name-v0)"
            )
        raise ValueError(f"env id {bare!r} is not registered; {hint} (see {_DOCS})")
    return bare


def make_env(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gymnasium.make`` of a registered id whose failures on bad arguments are one-line
    ``ValueError``\\ s that name the constructor arguments (``env.kwargs``)."""
    try:
        return gym.make(env_id, **kwargs)
    except TypeError as e:
        raise ValueError(
            f"env {env_id!r} cannot be made with arguments {sorted(kwargs)}: {e}; check "
            f"env.kwargs, and that the constructor accepts `split` (see {_DOCS})"
        ) from e
    except gym.error.Error as e:
        raise ValueError(f"env {env_id!r} cannot be made: {e}") from e


def registered_episode_steps(env_id: str) -> int | None:
    """``max_episode_steps`` of a registered (bare) id; None when it has none."""
    _, bare = split_env_id(env_id)
    if bare.startswith("metarl/"):
        import envs  # noqa: F401
    return gym.spec(bare).max_episode_steps


def resolve_episode_steps(env_id: str, episode_steps: int | None, key: str) -> int:
    """The episode length to run: ``episode_steps``, else the registered time limit.

    Refuses (``ValueError`` naming ``key``) a length above the registered time limit, since
    the env would end every episode before it, and no length at all.
    """
    limit = registered_episode_steps(env_id)
    if episode_steps is None:
        if limit is None:
            raise ValueError(
                f"{key}: {env_id!r} has no registered max_episode_steps; set {key} "
                "(or register the id with max_episode_steps)"
            )
        return int(limit)
    if limit is not None and episode_steps > limit:
        raise ValueError(
            f"{key}: got {episode_steps}; allowed: at most {limit}, the registered time limit of "
            f"{env_id!r} (it would truncate every episode first); lower {key} or register the id "
            "with a longer max_episode_steps"
        )
    return int(episode_steps)


def offers_task_protocol(obj: Any) -> bool:
    """Whether ``obj`` has ``task_distribution`` and ``set_task``."""
    return hasattr(obj, "task_distribution") and callable(getattr(obj, "set_task", None))


def find_task_env(env: gym.Env[Any, Any], env_id: str = "env") -> Any:
    """The layer of ``env`` that offers the task protocol: ``env.unwrapped``, else the outermost
    wrapper (e.g. a :class:`TaskWrapper` under Gymnasium's own wrappers) that does.

    Raises :class:`TaskProtocolError` with what to add when no layer does.
    """
    if offers_task_protocol(env.unwrapped):
        return env.unwrapped
    layer: Any = env
    while True:
        if offers_task_protocol(layer):
            return layer
        if not isinstance(layer, gym.Wrapper):
            break
        layer = layer.env
    missing = [
        name for name in ("task_distribution", "set_task") if not hasattr(env.unwrapped, name)
    ]
    raise TaskProtocolError(
        f"env {env_id!r} does not follow the task protocol: env.unwrapped lacks "
        f"{', '.join(missing)}. Give it `task_distribution` (with `sample(n, split, rng)`) and "
        "`set_task(task)`, or wrap another library's env in "
        f"meta_rl.task_envs.family.TaskWrapper (see {_DOCS})"
    )


class TaskWrapper(gym.Wrapper[ObsT, ActT, ObsT, ActT], Generic[ObsT, ActT]):
    """A task family made from another library's env: subclass it and write :meth:`apply_task`.

    It implements the task protocol around the wrapped env: ``task_distribution``, ``set_task``
    (pins a task from the next reset on; ``None`` unpins), and at each reset the pinned task, or
    without one a fresh task of the construction ``split`` drawn from a generator seeded by the
    reset seed, is handed to :meth:`apply_task` before the wrapped env resets (with the same
    seed). ``self.task`` is the task of the current episode. The toolkit finds the protocol on
    this wrapper even under Gymnasium's own wrappers (:func:`find_task_env`).

    ``reveal_task=True`` appends the task's ``features()`` (a 1-D float array; the task class
    must have it) to every observation, which must then be a 1-D ``Box``: the revealed setting
    in which a family's teacher is trained (docs/imitation.md).
    """

    def __init__(
        self,
        env: gym.Env[ObsT, ActT],
        task_distribution: TaskDistributionLike,
        split: str = "train",
        reveal_task: bool = False,
    ) -> None:
        super().__init__(env)
        self.task_distribution = task_distribution
        self.split = split
        self.reveal_task = bool(reveal_task)
        self.task: Any = None
        self._features: np.ndarray | None = None  # the task's features(), when revealed
        self._pinned: Any = None
        self._task_rng = np.random.default_rng()
        if self.reveal_task:
            self.observation_space = _revealed_space(  # type: ignore[assignment]
                env.observation_space, task_distribution, split
            )

    def set_task(self, task: Any) -> None:
        """Pin ``task`` for every later reset (``None``: draw one per reset again)."""
        self._pinned = task

    def apply_task(self, task: Any) -> None:
        """Put ``task`` into the wrapped env (called before it resets); subclasses write it."""
        raise NotImplementedError(f"{type(self).__name__}.apply_task(task) is not written")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsT, dict[str, Any]]:
        if seed is not None:
            self._task_rng = np.random.default_rng(seed)
        task = self._pinned
        if task is None:
            task = self.task_distribution.sample(1, self.split, self._task_rng)[0]
        self.apply_task(task)
        self.task = task
        if self.reveal_task:  # read once per episode, appended at every step
            self._features = task_features_of(task, "reveal_task")
        obs, info = self.env.reset(seed=seed, options=options)
        return self._revealed(obs), info

    def step(self, action: ActT) -> tuple[ObsT, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._revealed(obs), reward, terminated, truncated, info

    def _revealed(self, obs: ObsT) -> ObsT:
        """``obs`` followed by the task's features when ``reveal_task``, else ``obs``."""
        if self._features is None:
            return obs
        joined = np.concatenate([np.asarray(obs, dtype=np.float32).reshape(-1), self._features])
        return joined  # type: ignore[return-value]


def task_features_of(task: Any, needed_by: str, otherwise: str = "") -> np.ndarray:
    """``task.features()`` as a 1-D float32 array. A task without it is refused with a
    :class:`TaskProtocolError` that names ``needed_by`` (what reads the features) and, when
    given, ``otherwise`` (how to do without them)."""
    features = getattr(task, "features", None)
    if not callable(features):
        alternative = f" or {otherwise}" if otherwise else ""
        raise TaskProtocolError(
            f"{needed_by}: the task {type(task).__name__} has no features() method; give your "
            f"task dataclass a features() -> 1-D float array ({_DOCS}){alternative}"
        )
    return np.asarray(features(), dtype=np.float32).reshape(-1)


def _revealed_space(
    space: gym.Space[Any], tasks: TaskDistributionLike, split: str
) -> gym.spaces.Box:
    """The observation space with the task features appended (their width from one task)."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise TaskProtocolError(
            f"reveal_task: the observation space is {space}; allowed: a 1-D Box, to which the "
            "task features are appended"
        )
    first = tasks.sample(1, split, np.random.default_rng(0))[0]
    width = task_features_of(first, "reveal_task").shape[0]
    inf = np.full(width, np.inf, dtype=np.float32)
    low = np.concatenate([np.asarray(space.low, np.float32), -inf])
    high = np.concatenate([np.asarray(space.high, np.float32), inf])
    return gym.spaces.Box(low, high, dtype=np.float32)
