"""Pick-place through a frozen skill: the meta-agent says where the object goes.

``metarl/PickPlaceCommanded-v0`` is ``metarl/PickPlace-v0`` (the same scene, tasks, splits,
rewards and success; the goal hidden) whose action is a **command**: a point in the goal
region. A frozen *skill*, a pick-place policy trained with the goal revealed
(``pretrained/pick_place_revealed``), turns each command into the arm's action: it acts as if
the command were the goal. What a meta-agent must learn on this family is the meta-RL problem
alone: where to send the object in episode 1 to find the hidden goal from the reward, and where
to send it once the goal is known. The manipulation is the skill's.

This is skill-based meta-RL (Nam et al. 2022, SiMPL: meta-RL over skills learnt beforehand
adapts on long-horizon manipulation where RL^2 and PEARL from raw actions do not) with the
revealed-goal teacher of issue 15 as the skill. Nothing privileged reaches it: its goal input is
the command, and its object inputs (shape geometry, size, mass, friction) are held at their
training means (its observation normaliser's mean), so the skill sees no true task feature at
training or at evaluation (``tests/test_commanded.py`` perturbs the tasks and checks). The
skill with the true goal and these mean object features places 0.90 of 100 unseen objects (0.95
with the true object features; docs/pick_place.md).

The command ``c`` in [-1, 1]^3 maps to the point ``centre + half_width * c`` of the goal box:
the bounding box of the goals of both splits (4,096 tasks of each, a fixed draw, padded by
2 cm), so every goal is reachable by a command and the centre is the prior's middle.

``object_command`` (names from :data:`OBJECT_FEATURES`, default none) lets the agent also name
what it believes the object is: the action gains one column per feature column of those
groups, mapped the same way onto the bounding box of that feature over both splits, and the
skill reads these values instead of the training means. The skill with the true goal places
0.88 of 200 unseen objects with mean object inputs and 0.97 with the true ones
(docs/pick_place.md): an agent that infers the object from how it handles gains that margin.
Commanded features are still the agent's, never the task's.

Two ways to command (argument ``command``):

- ``"goal"`` (default): the action is the command itself, a point of the box each step.
- ``"velocity"``: the action moves a target point, which starts each episode at the box's
  centre: ``target <- clip(target + speed * clip(action, -1, 1), -1, 1)``; the skill is sent
  to the target, and the observation gains the target (3 columns, ``obs_slices["command"]``).
  Exploration noise then makes the object wander (a random walk) instead of jittering about
  one point, and "move towards where the reward rises" is one direction to learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from envs import COMMANDED_ID
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.checkpoint import locate

__all__ = [
    "COMMANDED_ID",
    "COMMANDS",
    "DEFAULT_SKILL",
    "OBJECT_FEATURES",
    "CommandedPickPlaceEnv",
    "CommandedVectorEnv",
    "Commander",
    "Targets",
    "goal_box",
    "make_commanded_vector",
]

DEFAULT_SKILL = "pretrained/pick_place_revealed"
"""The shipped revealed pick-place policy (a path relative to the working directory)."""
GOAL_BOX_PAD = 0.02
"""Metres added on each side of the goals' bounding box."""
_SKILL_ENV = "metarl/PickPlace-v0"


OBJECT_FEATURES: dict[str, tuple[int, ...]] = {
    "shape": (0, 1, 2),
    "size": (3,),
    "mass": (4,),
    "friction": (5,),
}
"""The object's feature groups the skill reads, as columns of its object inputs (the task
features after the goal: ``envs.tasks.Task.features``)."""


def _feature_box(
    task_distribution: Any, pad: float = GOAL_BOX_PAD
) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` (9,) of the task features of the train and test splits of
    ``task_distribution`` (4,096 tasks of each, drawn with a fixed seed), the goal's 3 columns
    padded by ``pad`` metres. The edge split stays out: the command space is the one the shipped
    agents were trained with, and an edge object's property lies beyond it by design."""
    every = np.array(
        [
            t.features()
            for split in ("train", "test")
            for t in task_distribution.sample(4096, split, np.random.default_rng(0))
        ]
    )
    margin = np.zeros(every.shape[1])
    margin[:3] = pad
    return every.min(axis=0) - margin, every.max(axis=0) + margin


def goal_box(task_distribution: Any, pad: float = GOAL_BOX_PAD) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` (3,) of the goals of the train and test splits of ``task_distribution``
    (4,096 tasks of each, drawn with a fixed seed), padded by ``pad`` metres."""
    low, high = _feature_box(task_distribution, pad)
    return low[:3], high[:3]


def object_columns(names: Any) -> list[int]:
    """The object-feature columns of the groups ``names`` (:data:`OBJECT_FEATURES`), in order;
    refuses unknown or repeated names."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ValueError(
            f"object_command: got {names!r}; allowed: a list of names from "
            f"{', '.join(OBJECT_FEATURES)} (empty: the skill reads the training means)"
        )
    if len(set(names)) != len(names) or not set(names) <= set(OBJECT_FEATURES):
        raise ValueError(
            f"object_command: got {list(names)!r}; allowed: distinct names from "
            f"{', '.join(OBJECT_FEATURES)}"
        )
    return [c for name in OBJECT_FEATURES if name in names for c in OBJECT_FEATURES[name]]


def _hidden(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The pick-place arguments of a commanded env: ``reveal_task`` refused when true, dropped."""
    if kwargs.get("reveal_task"):
        raise ValueError(
            "reveal_task: got True; allowed: false (the commanded family hides the goal; "
            f"train {_SKILL_ENV} for the revealed setting)"
        )
    return {k: v for k, v in kwargs.items() if k != "reveal_task"}


class Commander:
    """The frozen skill: arm actions ``(N, 4)`` from hidden observations and commands.

    ``skill`` is a run directory or checkpoint of a ``metarl/PickPlace-v0`` policy trained with
    ``reveal_task: true`` and the context off (its observation is the hidden one followed by the
    task features: goal, shape geometry, size, mass, friction). It acts deterministically (its
    mean action) on ``[obs, goal(command), object features]``: the training means (its
    observation normaliser's), except the ``columns`` the command names (after its 3 goal
    columns, in that order). ``low``/``high`` ``(3 + 6,)`` bound what commands in [-1, 1] span:
    the goal box, then the box of each object feature.
    """

    def __init__(
        self,
        skill: str | Path,
        hidden_dim: int,
        low: np.ndarray,
        high: np.ndarray,
        columns: list[int] | None = None,
    ):
        try:  # found from any working directory through locate's search path
            file = locate(skill).file
        except FileNotFoundError as e:
            raise ValueError(
                f"skill: got {str(skill)!r}, which does not exist; allowed: a run directory or "
                f"checkpoint of a revealed {_SKILL_ENV} policy (the shipped one: {DEFAULT_SKILL})"
            ) from e
        try:
            agent = MetaAgent.from_checkpoint(file, device="cpu")
        except (FileNotFoundError, RuntimeError, KeyError) as e:
            raise ValueError(f"skill: {str(skill)!r} holds no loadable checkpoint ({e})") from e
        revealed = bool(agent.env_kwargs.get("reveal_task", False))
        if agent.env_id != _SKILL_ENV or not revealed or agent.config.encoder.use_context:
            raise ValueError(
                f"skill: {str(skill)!r} was trained on {agent.env_id} with reveal_task="
                f"{revealed} and the context {'on' if agent.config.encoder.use_context else 'off'}"
                f"; allowed: a {_SKILL_ENV} policy with reveal_task: true and "
                "encoder.use_context: false"
            )
        norm = agent.networks.policy.obs_norm
        if norm.mean.shape[0] != hidden_dim + 9:
            raise ValueError(
                f"skill: {str(skill)!r} reads {norm.mean.shape[0]} observation columns; allowed: "
                f"{hidden_dim + 9} (the hidden observation and the 9 task features of this "
                "version of the env: retrain it)"
            )
        self.agent = agent
        low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        self.columns = list(columns or [])
        """Object-feature columns the command names, after its goal."""
        self.centre = (high[:3] + low[:3]) / 2.0
        self.half_width = (high[:3] - low[:3]) / 2.0
        cols = [3 + c for c in self.columns]
        self.feature_centre = (high[cols] + low[cols]) / 2.0
        self.feature_half_width = np.maximum((high[cols] - low[cols]) / 2.0, 1e-6)
        self.object_features = norm.mean[hidden_dim + 3 :].numpy().astype(np.float32)
        self.width = 3 + len(self.columns)
        """Columns of a command: the goal's 3, then one per named object-feature column."""
        self._n = -1

    @classmethod
    def for_env(
        cls,
        skill: str | Path,
        task_distribution: Any,
        hidden_space: Any,
        object_command: Any = (),
    ) -> Commander:
        """The skill for an env of ``task_distribution`` with hidden observations of
        ``hidden_space``, its commands spanning :func:`goal_box` and the bounding box of the
        ``object_command`` features over both splits."""
        columns = object_columns(object_command)
        low, high = _feature_box(task_distribution)
        return cls(skill, int(np.prod(hidden_space.shape or (0,))), low, high, columns)

    def goals(self, commands: np.ndarray) -> np.ndarray:
        """Goal points ``(N, 3)`` of commands ``(N, >= 3)`` (clipped to [-1, 1] first)."""
        return self.centre + self.half_width * np.clip(commands[:, :3], -1.0, 1.0)

    def objects(self, commands: np.ndarray) -> np.ndarray:
        """The object inputs ``(N, 6)`` of commands ``(N, width)``: the training means, with the
        named columns read off the command (clipped to [-1, 1] first). Read-only when no column
        is named (the means broadcast, not copied, each step)."""
        n = commands.shape[0]
        if not self.columns:
            return np.broadcast_to(self.object_features, (n, self.object_features.shape[0]))
        out = np.repeat(self.object_features[None], n, axis=0)
        named = np.clip(commands[:, 3:], -1.0, 1.0)
        out[:, self.columns] = self.feature_centre + self.feature_half_width * named
        return out

    def feature_commands(self, features: np.ndarray) -> np.ndarray:
        """The command columns ``(N, width - 3)`` that name object features ``(N, 6)``."""
        named = features[:, self.columns] - self.feature_centre
        return np.clip(named / self.feature_half_width, -1.0, 1.0).astype(np.float32)

    def actions(self, obs: np.ndarray, commands: np.ndarray) -> np.ndarray:
        """The skill's arm actions ``(N, 4)`` for hidden observations ``(N, hidden_dim)`` and
        commands ``(N, width)``."""
        n = obs.shape[0]
        if n != self._n:
            self.agent.begin_trial(n)
            self._n = n
        revealed = np.concatenate(
            [
                obs,
                self.goals(commands).astype(np.float32),
                self.objects(commands).astype(np.float32),
            ],
            axis=1,
        )
        return self.agent.act(revealed, deterministic=True)  # acts without gradients


COMMANDS = ("goal", "velocity")
"""The ways to command the skill (the module doc)."""


def _command_space(width: int) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, shape=(width,), dtype=np.float32)


class Targets:
    """The commands of N envs: the actions themselves (``"goal"``) or a target point the
    actions move (``"velocity"``; restarts at the box's centre, 0, with each episode)."""

    def __init__(self, n: int, command: str, speed: float) -> None:
        if command not in COMMANDS:
            raise ValueError(f"command: got {command!r}; allowed: {', '.join(COMMANDS)}")
        if not (isinstance(speed, (int, float)) and 0.0 < speed <= 1.0):
            raise ValueError(
                f"speed: got {speed!r}; allowed: a number in (0, 1] (the fraction of the goal "
                "box's half-width a target moves per step at full action)"
            )
        self.velocity = command == "velocity"
        self.speed = float(speed)
        self.target = np.zeros((n, 3))

    def restart(self, rows: np.ndarray | slice) -> None:
        """New episodes in ``rows``: their targets go back to the centre."""
        self.target[rows] = 0.0

    def commands(self, actions: np.ndarray, moving: np.ndarray | None = None) -> np.ndarray:
        """The commands ``(N, W)`` for actions ``(N, W)``: the goal's 3 columns as the mode
        says (in velocity mode only the ``moving`` rows, default all, not those being reset,
        move their targets), the others (object features) as they are."""
        n = self.target.shape[0]
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(n, -1), -1, 1)
        if not self.velocity:
            return a
        goal = a[:, :3]
        step = self.speed * goal if moving is None else self.speed * goal * moving[:, None]
        self.target = np.clip(self.target + step, -1.0, 1.0)
        return np.concatenate([self.target, a[:, 3:]], axis=1)

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """``obs`` with the targets appended in velocity mode (float32)."""
        if not self.velocity:
            return obs
        return np.concatenate([obs, self.target.astype(np.float32)], axis=-1)

    def space(self, hidden: Any) -> Any:
        """The observation space for the hidden observation space ``hidden``."""
        if not self.velocity:
            return hidden
        dim = int(np.prod(hidden.shape or (0,))) + 3
        return spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)

    def slices(self, hidden: dict[str, slice]) -> dict[str, slice]:
        """Named observation slices: the hidden ones, and ``command`` in velocity mode."""
        out = dict(hidden)
        if self.velocity:
            end = max(sl.stop for sl in hidden.values())
            out["command"] = slice(end, end + 3)
        return out


class CommandedPickPlaceEnv(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """``metarl/PickPlaceCommanded-v0``: pick-place whose action is a goal command (module doc).

    Arguments: ``skill`` (default :data:`DEFAULT_SKILL`), ``command`` (``"goal"`` or
    ``"velocity"``), ``speed`` (velocity mode: the fraction of the box's half-width the target
    moves per step at full action, default 0.05), ``object_command`` (the object features the
    action also names, default none) and every argument of ``metarl/PickPlace-v0`` except
    ``reveal_task`` (the goal is hidden: that is the task). Observation (plus the target in
    velocity mode), reward, ``info`` and episode end are pick-place's; the action is in
    [-1, 1]^W, ``W = commander.width`` (3, plus the named feature columns). The task protocol
    (``task_distribution``, ``set_task``) is the wrapped env's.
    """

    def __init__(
        self,
        skill: str = DEFAULT_SKILL,
        command: str = "goal",
        speed: float = 0.05,
        object_command: Any = (),
        **kwargs: Any,
    ) -> None:
        from envs.pick_place import PickPlaceEnv

        env = PickPlaceEnv(**_hidden(kwargs))
        super().__init__(env)
        self.targets = Targets(1, command, speed)
        self.commander = Commander.for_env(
            skill, env.task_distribution, env.observation_space, object_command
        )
        self.action_space = _command_space(self.commander.width)
        self.observation_space = self.targets.space(env.observation_space)
        self.obs_slices = self.targets.slices(env.obs_slices)
        self._obs: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        self.targets.restart(slice(None))
        return self.targets.observe(obs[None])[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("step() called before reset(): call env.reset() first")
        command = self.targets.commands(np.asarray(action).reshape(1, -1))
        arm = self.commander.actions(self._obs[None], command)[0]
        obs, reward, terminated, truncated, info = self.env.step(arm)
        self._obs = obs
        info["command_goal"] = self.commander.goals(command)[0]
        return self.targets.observe(obs[None])[0], float(reward), terminated, truncated, info


class CommandedVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """The batched simulator of ``metarl/PickPlaceCommanded-v0``: ``num_envs`` commanded envs.

    Wraps the batched pick-place simulator (``envs.batched.BatchedArmEnv``, goal hidden) and
    turns the ``(num_envs, W)`` actions into the skill's arm actions for all sub-envs in one
    forward pass; reset, next-step autoreset (a sub-env's target restarts with its new episode),
    tasks (``set_tasks``, ``task_distribution``, ``tasks``), ``info`` and rendering are the
    wrapped simulator's, step for step. Arguments as :class:`CommandedPickPlaceEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        skill: str = DEFAULT_SKILL,
        command: str = "goal",
        speed: float = 0.05,
        object_command: Any = (),
        num_threads: int | None = None,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        from envs.batched import make_batched

        hidden = _hidden(kwargs)
        self.targets = Targets(num_envs, command, speed)
        self.inner = make_batched(
            _SKILL_ENV,
            num_envs,
            num_threads=num_threads,
            max_episode_steps=max_episode_steps,
            **hidden,
        )
        self.commander = Commander.for_env(
            skill, self.inner.task_distribution, self.inner.single_observation_space, object_command
        )
        self.num_envs = num_envs
        self.metadata = self.inner.metadata
        self.render_mode = self.inner.render_mode
        self.single_observation_space = self.targets.space(self.inner.single_observation_space)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.single_action_space = _command_space(self.commander.width)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.obs_slices = self.targets.slices(self.inner.obs_slices)
        self._obs: np.ndarray | None = None
        self._ended = np.zeros(num_envs, dtype=bool)

    @property
    def task_distribution(self) -> Any:
        return self.inner.task_distribution

    @property
    def tasks(self) -> list[Any]:
        return self.inner.tasks

    def set_tasks(self, tasks: Any) -> None:
        """Pin one task per sub-env from the next reset on (the simulator's ``set_tasks``)."""
        self.inner.set_tasks(tasks)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.inner.reset(seed=seed, options=options)
        self._obs = obs
        self._ended[:] = False
        self.targets.restart(slice(None))
        return self.targets.observe(obs), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("step() called before reset(): call envs.reset() first")
        # Sub-envs whose episode ended last step are reset by this one (not stepped).
        self.targets.restart(self._ended)
        commands = self.targets.commands(actions, moving=~self._ended)
        arm = self.commander.actions(self._obs, commands)
        obs, reward, terminated, truncated, info = self.inner.step(arm)
        self._obs = obs
        self._ended = np.asarray(terminated) | np.asarray(truncated)
        return self.targets.observe(obs), reward, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        return self.inner.render()

    def close_extras(self, **kwargs: Any) -> None:
        self.inner.close()


def make_commanded_vector(num_envs: int, **kwargs: Any) -> CommandedVectorEnv:
    """``gymnasium.make_vec("metarl/PickPlaceCommanded-v0", n)`` and the trainer's vector env."""
    return CommandedVectorEnv(num_envs, **kwargs)
