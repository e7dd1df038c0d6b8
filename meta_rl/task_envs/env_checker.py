"""``check_task_family``: what a task family lacks, found in seconds before a long run starts.

It walks the protocol of docs/design.md ('Tasks') and docs/byo_family.md on a few short
episodes: registration (``env.module`` / ``module:id``), the time limit against
``env.episode_steps``, the constructor arguments, ``task_distribution`` and ``set_task``,
the spaces, ``info["success"]``, whether pinned tasks and reset seeds change anything, and
``rgb_array`` rendering. Each finding is an error (training or evaluation would fail or report
wrong numbers), a warning (it runs, with something lost: videos, distinct seeds) or ok, and its
message says how to fix it. ``metarl check-env`` prints the report.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from meta_rl.task_envs.family import (
    TaskProtocolError,
    find_task_env,
    make_env,
    register_family,
    registered_episode_steps,
)

__all__ = ["FamilyReport", "Finding", "check_task_family"]

Level = Literal["ok", "warning", "error"]
_PROBE_STEPS = 10  # steps compared between two tasks or two seeds


@dataclass(frozen=True)
class Finding:
    """One check: its level, what it is about and what was found (with the fix)."""

    level: Level
    topic: str
    message: str


@dataclass
class FamilyReport:
    """Every finding of :func:`check_task_family` on one env id."""

    env_id: str
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: Level, topic: str, message: str) -> None:
        self.findings.append(Finding(level, topic, message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def format(self) -> str:
        lines = [f"task family {self.env_id}:"]
        lines += [f"  {f.level:<8} {f.topic}: {f.message}" for f in self.findings]
        verdict = (
            "ready to meta-train and evaluate"
            if self.ok
            else "fix the errors before training (docs/byo_family.md)"
        )
        lines.append(f"{len(self.errors)} errors, {len(self.warnings)} warnings: {verdict}")
        return "\n".join(lines)


class _Stop(Exception):
    """A check failed that the later checks depend on."""


def check_task_family(
    env_id: str,
    *,
    module: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    episode_steps: int | None = None,
) -> FamilyReport:
    """Check the family ``env_id`` (registered by ``module`` or a ``module:id``) as the trainer
    and evaluation will use it, with constructor arguments ``env_kwargs`` and the episode
    length ``episode_steps`` (None: the registered time limit)."""
    report = FamilyReport(env_id)
    kwargs = {k: v for k, v in dict(env_kwargs or {}).items() if k not in ("split", "render_mode")}
    with contextlib.suppress(_Stop):  # a failed check that the later ones depend on
        _check(report, env_id, module, kwargs, episode_steps)
    return report


def _check(
    report: FamilyReport,
    env_id: str,
    module: str | None,
    kwargs: dict[str, Any],
    episode_steps: int | None,
) -> None:
    add = report.add
    try:
        bare = register_family(env_id, module)
    except ValueError as e:
        add("error", "registration", str(e))
        raise _Stop from e
    add("ok", "registration", f"{bare!r} is registered")

    steps = _check_time_limit(report, bare, episode_steps)
    _check_constructor(report, bare)
    envs: list[gym.Env[Any, Any]] = []
    try:
        for split in ("train", "test"):
            try:
                envs.append(make_env(bare, split=split, **kwargs))
            except ValueError as e:
                add("error", "constructor", str(e))
                raise _Stop from e
        env = envs[0]
        try:
            task_env = find_task_env(env, bare)
        except TaskProtocolError as e:
            add("error", "task protocol", str(e))
            raise _Stop from e
        where = (
            "env.unwrapped"
            if task_env is env.unwrapped
            else f"the wrapper {type(task_env).__name__}"
        )
        add("ok", "task protocol", f"task_distribution and set_task found on {where}")
        tasks = _check_distribution(report, task_env)
        _check_spaces(report, env)
        _check_episodes(report, env, task_env, tasks, steps)
    finally:
        for made in envs:
            made.close()
    _check_render(report, bare, kwargs)


def _check_time_limit(report: FamilyReport, bare: str, episode_steps: int | None) -> int:
    limit = registered_episode_steps(bare)
    if episode_steps is None and limit is None:
        report.add(
            "error",
            "time limit",
            "no registered max_episode_steps and no env.episode_steps: register the id with "
            "max_episode_steps or set env.episode_steps",
        )
        return _PROBE_STEPS
    if episode_steps is not None and limit is not None and episode_steps > limit:
        report.add(
            "error",
            "time limit",
            f"env.episode_steps {episode_steps} is above the registered time limit {limit}: the "
            "env would truncate every episode first; lower env.episode_steps",
        )
        return limit
    steps = int(episode_steps if episode_steps is not None else limit)  # type: ignore[arg-type]
    report.add("ok", "time limit", f"episodes of {steps} steps (registered time limit {limit})")
    return steps


def _constructor_params(bare: str) -> dict[str, inspect.Parameter] | None:
    """The entry point's parameters; None when it takes ``**kwargs`` or cannot be inspected."""
    entry = gym.spec(bare).entry_point
    try:
        creator: Callable[..., Any] = (
            gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry  # type: ignore[assignment]
        )
        params = dict(inspect.signature(creator).parameters)
    except (TypeError, ValueError, AttributeError, ImportError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return params


def _check_constructor(report: FamilyReport, bare: str) -> None:
    params = _constructor_params(bare)
    if params is None:
        report.add("ok", "constructor", "takes **kwargs (not inspected further)")
        return
    if "split" not in params:
        report.add(
            "error",
            "constructor",
            "no `split` argument: evaluation makes the env with split='test' (the split that "
            "unpinned resets draw tasks from); add `split: str = 'train'`",
        )
    else:
        report.add("ok", "constructor", "accepts split")
    render_args = [a for a in ("render_mode", "width", "height", "camera_name") if a in params]
    missing = [a for a in ("width", "height", "camera_name") if a not in params]
    if "render_mode" in params and missing:
        report.add(
            "ok",
            "constructor",
            f"accepts {', '.join(render_args)}; leave the evaluation's "
            + " and ".join(
                k
                for k, arg in (("video_size", "width"), ("camera_name", "camera_name"))
                if arg in missing
            )
            + " null (they are passed only when set)",
        )


def _check_distribution(report: FamilyReport, task_env: Any) -> list[Any]:
    dist = task_env.task_distribution
    tasks: dict[str, list[Any]] = {}
    for split in ("train", "test"):
        try:
            tasks[split] = list(dist.sample(3, split, np.random.default_rng(0)))
        except Exception as e:
            report.add(
                "error",
                "task distribution",
                f"task_distribution.sample(3, {split!r}, rng) raised {type(e).__name__}: {e}",
            )
            raise _Stop from e
        if len(tasks[split]) != 3:
            report.add(
                "error",
                "task distribution",
                f"sample(3, {split!r}, rng) returned {len(tasks[split])} tasks, not 3",
            )
            raise _Stop
    again = list(dist.sample(3, "train", np.random.default_rng(0)))
    if again != tasks["train"]:
        report.add(
            "warning",
            "task distribution",
            "the same generator seed gave other tasks: draw every random number from the `rng` "
            "argument (runs are then reproducible)",
        )
    task = tasks["train"][0]
    if not (is_dataclass(task) and getattr(type(task), "__dataclass_params__").frozen):  # noqa: B009
        report.add(
            "warning",
            "task distribution",
            f"tasks are {type(task).__name__}, not frozen dataclasses of plain values: they "
            "are saved in eval.json and compared for equality",
        )
    else:
        report.add("ok", "task distribution", "train and test splits sample frozen tasks")
    return tasks["train"] + tasks["test"]


def _check_spaces(report: FamilyReport, env: gym.Env[Any, Any]) -> None:
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box):
        report.add("error", "spaces", f"observation space {obs} is not a Box: flatten it")
    if not isinstance(act, gym.spaces.Box):
        report.add("error", "spaces", f"action space {act} is not a Box (continuous actions)")
    elif not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        report.add("error", "spaces", "the action space needs finite low and high bounds")
    if isinstance(obs, gym.spaces.Box) and isinstance(act, gym.spaces.Box):
        report.add("ok", "spaces", f"observation {obs.shape}, action {act.shape}")


def _trace(
    env: gym.Env[Any, Any],
    task_env: Any,
    task: Any,
    seed: int,
    actions: np.ndarray,
) -> tuple[np.ndarray, list[dict[str, Any]], int | None]:
    """Observations and infos of an episode on ``task`` from ``reset(seed)`` under ``actions``;
    the step at which the env ended the episode itself (None: it ran through)."""
    task_env.set_task(task)
    obs, _ = env.reset(seed=seed)
    trace, infos = [np.asarray(obs, dtype=np.float64).ravel()], []
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(np.append(np.asarray(obs, dtype=np.float64).ravel(), float(reward)))
        infos.append(dict(info))
        if terminated or truncated:
            return np.concatenate(trace), infos, t + 1
    return np.concatenate(trace), infos, None


def _check_episodes(
    report: FamilyReport, env: gym.Env[Any, Any], task_env: Any, tasks: list[Any], steps: int
) -> None:
    add = report.add
    space = env.action_space
    space.seed(0)
    actions = np.stack([np.asarray(space.sample()) for _ in range(steps)])
    try:
        full, infos, ended = _trace(env, task_env, tasks[0], 0, actions)
    except Exception as e:
        add("error", "episode", f"an episode on a pinned task raised {type(e).__name__}: {e}")
        raise _Stop from e
    if not np.all(np.isfinite(full)):
        add("error", "episode", "observations or rewards are NaN or inf")
    if not infos or "success" not in infos[0]:
        add(
            "error",
            "info",
            "step info has no 'success': report info['success'] (float 0/1) at every step; "
            "training and evaluation measure success with it",
        )
    else:
        add("ok", "info", "info['success'] reported")
    if ended is not None and ended < steps:
        add(
            "warning",
            "episode",
            f"the env ended an episode itself at step {ended} of {steps}: episodes are meant to "
            "last the full length (no termination on success); the rest of such an episode is "
            "masked out",
        )
    short = actions[:_PROBE_STEPS]
    a = _trace(env, task_env, tasks[0], 0, short)[0]
    others = [_trace(env, task_env, t, 0, short)[0] for t in tasks[1:]]
    if all(np.array_equal(a, b) for b in others):
        add(
            "error",
            "set_task",
            f"{len(tasks)} different tasks gave the same first {_PROBE_STEPS} steps: set_task "
            "must change the env from the next reset on (is the pinned task applied in reset?)",
        )
    else:
        add("ok", "set_task", "pinned tasks change the episodes")
    same_seed = _trace(env, task_env, tasks[0], 0, short)[0]
    other_seed = _trace(env, task_env, tasks[0], 1, short)[0]
    if not np.array_equal(a, same_seed):
        add(
            "warning",
            "seeding",
            "two resets with the same seed and task differ: draw the start state from "
            "self.np_random (seeded by reset(seed=...)) so runs are reproducible",
        )
    if np.array_equal(a, other_seed):
        add(
            "warning",
            "seeding",
            "reset seeds change nothing: the num_seeds trials per task of an evaluation are "
            "identical (reports then count tasks only); draw the start from self.np_random",
        )
    else:
        add("ok", "seeding", "reset seeds change the start")
    try:
        task_env.set_task(None)
        env.reset(seed=0)
    except Exception as e:
        add(
            "warning",
            "set_task",
            f"set_task(None) then reset raised {type(e).__name__}: {e}; None should unpin "
            "(each reset then draws a task from the construction split)",
        )


def _check_render(report: FamilyReport, bare: str, kwargs: dict[str, Any]) -> None:
    try:
        env = gym.make(bare, split="test", render_mode="rgb_array", **kwargs)
    except Exception as e:
        report.add(
            "warning",
            "render",
            f"cannot be made with render_mode='rgb_array' ({type(e).__name__}: {e}): "
            "evaluation skips the videos (set num_videos=0 to skip them quietly)",
        )
        return
    try:
        env.reset(seed=0)
        frame = env.render()
    except Exception as e:
        report.add(
            "warning",
            "render",
            f"render() raised {type(e).__name__}: {e}: evaluation skips the videos (set "
            "num_videos=0 to skip them quietly)",
        )
        return
    finally:
        env.close()
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] in (3, 4)):
        report.add(
            "warning",
            "render",
            "render() gave no (H, W, 3) array with render_mode='rgb_array': evaluation skips "
            "the videos",
        )
        return
    report.add("ok", "render", f"rgb_array frames of {frame.shape[1]}x{frame.shape[0]}")
