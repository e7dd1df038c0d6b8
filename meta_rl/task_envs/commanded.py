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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

__all__ = [
    "COMMANDED_ID",
    "DEFAULT_SKILL",
    "CommandedPickPlaceEnv",
    "CommandedVectorEnv",
    "Commander",
    "goal_box",
    "make_commanded_vector",
]

COMMANDED_ID = "metarl/PickPlaceCommanded-v0"
DEFAULT_SKILL = "pretrained/pick_place_revealed"
"""The shipped revealed pick-place policy (a path relative to the working directory)."""
GOAL_BOX_PAD = 0.02
"""Metres added on each side of the goals' bounding box."""
_SKILL_ENV = "metarl/PickPlace-v0"


def goal_box(task_distribution: Any, pad: float = GOAL_BOX_PAD) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` (3,) of the goals of every split of ``task_distribution`` (4,096 tasks of
    each, drawn with a fixed seed), padded by ``pad`` metres."""
    goals = [
        np.array([t.goal for t in task_distribution.sample(4096, split, np.random.default_rng(0))])
        for split in task_distribution.splits
    ]
    every = np.concatenate(goals)
    return every.min(axis=0) - pad, every.max(axis=0) + pad


class Commander:
    """The frozen skill: arm actions ``(N, 4)`` from hidden observations and commands.

    ``skill`` is a run directory or checkpoint of a ``metarl/PickPlace-v0`` policy trained with
    ``reveal_task: true`` and the context off (its observation is the hidden one followed by the
    task features: goal, shape geometry, size, mass, friction). It acts deterministically (its
    mean action) on ``[obs, goal(command), object features' training means]``.
    ``low``/``high`` bound the goal box that commands in [-1, 1] span.
    """

    def __init__(self, skill: str | Path, hidden_dim: int, low: np.ndarray, high: np.ndarray):
        from meta_rl.agent.meta_agent import MetaAgent
        from meta_rl.training.checkpoint import locate

        path = Path(skill)
        if not path.exists() and not path.is_absolute():
            # The shipped skill from anywhere: relative paths also resolve in the project root.
            in_project = Path(__file__).resolve().parents[2] / path
            path = in_project if in_project.exists() else path
        if not path.exists():
            raise ValueError(
                f"skill: got {str(skill)!r}, which does not exist; allowed: a run directory or "
                f"checkpoint of a revealed {_SKILL_ENV} policy (the shipped one: {DEFAULT_SKILL})"
            )
        try:
            agent = MetaAgent.from_checkpoint(locate(path).file, device="cpu")
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
        self.path = path
        self.hidden_dim = hidden_dim
        self.centre = (np.asarray(high) + np.asarray(low)) / 2.0
        self.half_width = (np.asarray(high) - np.asarray(low)) / 2.0
        self.object_features = norm.mean[hidden_dim + 3 :].numpy().astype(np.float32)
        self._n = -1

    def goals(self, commands: np.ndarray) -> np.ndarray:
        """Goal points ``(N, 3)`` of commands ``(N, 3)`` (clipped to [-1, 1] first)."""
        return self.centre + self.half_width * np.clip(commands, -1.0, 1.0)

    def actions(self, obs: np.ndarray, commands: np.ndarray) -> np.ndarray:
        """The skill's arm actions ``(N, 4)`` for hidden observations ``(N, hidden_dim)``."""
        n = obs.shape[0]
        if n != self._n:
            self.agent.begin_trial(n)
            self._n = n
        revealed = np.concatenate(
            [
                obs,
                self.goals(commands).astype(np.float32),
                np.broadcast_to(self.object_features, (n, self.object_features.shape[0])),
            ],
            axis=1,
        )
        with torch.no_grad():
            return self.agent.act(revealed, deterministic=True)


def _command_space() -> spaces.Box:
    return spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)


class CommandedPickPlaceEnv(gym.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """``metarl/PickPlaceCommanded-v0``: pick-place whose action is a goal command (module doc).

    Arguments: ``skill`` (default :data:`DEFAULT_SKILL`) and every argument of
    ``metarl/PickPlace-v0`` except ``reveal_task`` (the goal is hidden: that is the task).
    Observation, reward, ``info`` and episode end are pick-place's; the action is a command in
    [-1, 1]^3. The task protocol (``task_distribution``, ``set_task``) is the wrapped env's.
    """

    def __init__(self, skill: str = DEFAULT_SKILL, **kwargs: Any) -> None:
        from envs.pick_place import PickPlaceEnv

        if kwargs.get("reveal_task"):
            raise ValueError(
                "reveal_task: got True; allowed: false (the commanded family hides the goal; "
                f"train {_SKILL_ENV} for the revealed setting)"
            )
        kwargs.pop("reveal_task", None)
        env = PickPlaceEnv(**kwargs)
        super().__init__(env)
        low, high = goal_box(env.task_distribution)
        hidden_dim = int(np.prod(env.observation_space.shape or (0,)))
        self.commander = Commander(skill, hidden_dim, low, high)
        self.action_space = _command_space()
        self._obs: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs = obs
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("step() called before reset(): call env.reset() first")
        command = np.asarray(action, dtype=np.float64).reshape(1, 3)
        arm = self.commander.actions(self._obs[None], command)[0]
        obs, reward, terminated, truncated, info = self.env.step(arm)
        self._obs = obs
        info["command_goal"] = self.commander.goals(command)[0]
        return obs, float(reward), terminated, truncated, info


class CommandedVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """The batched simulator of ``metarl/PickPlaceCommanded-v0``: ``num_envs`` commanded envs.

    Wraps the batched pick-place simulator (``envs.batched.BatchedArmEnv``, goal hidden) and
    turns the ``(num_envs, 3)`` commands into the skill's arm actions for all sub-envs in one
    forward pass; reset, autoreset, tasks (``set_tasks``, ``task_distribution``, ``tasks``),
    ``info`` and rendering are the wrapped simulator's, step for step.
    """

    def __init__(
        self,
        num_envs: int,
        *,
        skill: str = DEFAULT_SKILL,
        num_threads: int | None = None,
        max_episode_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        from envs.batched import make_batched

        if kwargs.get("reveal_task"):
            raise ValueError(
                "reveal_task: got True; allowed: false (the commanded family hides the goal)"
            )
        kwargs.pop("reveal_task", None)
        self.inner = make_batched(
            _SKILL_ENV,
            num_envs,
            num_threads=num_threads,
            max_episode_steps=max_episode_steps,
            **kwargs,
        )
        low, high = goal_box(self.inner.task_distribution)
        hidden_dim = int(np.prod(self.inner.single_observation_space.shape or (0,)))
        self.commander = Commander(skill, hidden_dim, low, high)
        self.num_envs = num_envs
        self.metadata = self.inner.metadata
        self.render_mode = self.inner.render_mode
        self.single_observation_space = self.inner.single_observation_space
        self.observation_space = self.inner.observation_space
        self.single_action_space = _command_space()
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.obs_slices = self.inner.obs_slices
        self._obs: np.ndarray | None = None

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
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("step() called before reset(): call envs.reset() first")
        commands = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 3)
        arm = self.commander.actions(self._obs, commands)
        obs, reward, terminated, truncated, info = self.inner.step(arm)
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        return self.inner.render()

    def close_extras(self, **kwargs: Any) -> None:
        self.inner.close()


def make_commanded_vector(num_envs: int, **kwargs: Any) -> CommandedVectorEnv:
    """``gymnasium.make_vec("metarl/PickPlaceCommanded-v0", n)`` and the trainer's vector env."""
    return CommandedVectorEnv(num_envs, **kwargs)
