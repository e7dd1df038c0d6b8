"""The arm env: the scene, the task handling, stepping and rendering shared by every variant.

A variant (``reach.py``, ``push.py``, ``pick_place.py``) subclasses :class:`ArmEnv` and defines
its dense reward terms and success as vectorised functions of the sensor readings
(:meth:`ArmEnv.dense_terms`), which the batched simulator calls too.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs import scene as sc
from envs.tasks import Task, TaskDistribution

__all__ = ["REWARD_TYPES", "ArmEnv", "RewardOut"]

REWARD_TYPES = ("dense", "sparse")
RewardOut = tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]
"""(reward (N,), terms name -> (N,), success (N,) as float 0/1)."""


class ArmEnv(gym.Env[np.ndarray, np.ndarray]):
    """Base of the pick-and-place family; see the variants' docstrings for the spec.

    Shared arguments: ``split`` ("train", "test" or "edge": where tasks are drawn from when none
    is pinned), ``reveal_task`` (append goal and object properties to the observation),
    ``reward_type`` ("dense" or "sparse"), ``render_mode`` (None or "rgb_array"),
    ``camera_name`` ("front", "side" or "top"), ``width`` and ``height`` of rendered frames,
    ``goal_sector`` (push and pick-place: goals within this many degrees of +x, away from the
    arm, seen from the object's start; None: any direction), ``side_goals`` (push and
    pick-place: goals this many metres to the left or right of the object's start; see
    :class:`envs.tasks.TaskDistribution` for both).
    """

    metadata: ClassVar[dict[str, Any]] = {  # type: ignore[misc]
        "render_modes": ["rgb_array"],
        "render_fps": round(1.0 / sc.CONTROL_DT),
    }
    variant: ClassVar[str] = "pick_place"

    def __init__(
        self,
        *,
        split: str = "train",
        reveal_task: bool = False,
        reward_type: str = "dense",
        render_mode: str | None = None,
        camera_name: str = "front",
        width: int = 480,
        height: int = 480,
        goal_sector: float | None = None,
        side_goals: float | None = None,
    ) -> None:
        self.task_distribution = TaskDistribution(
            self.variant, goal_sector=goal_sector, side_goals=side_goals
        )
        if split not in self.task_distribution.splits:
            raise ValueError(
                f"split: got {split!r}; allowed: {', '.join(self.task_distribution.splits)}"
            )
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward_type: got {reward_type!r}; allowed: dense, sparse")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: got {render_mode!r}; allowed: None, 'rgb_array'")
        for name, v in (("width", width), ("height", height)):
            if not isinstance(v, int) or not 16 <= v <= 960:
                raise ValueError(f"{name}: got {v!r}; allowed: an integer in [16, 960]")
        self.split = split
        self.reveal_task = bool(reveal_task)
        self.reward_type = reward_type
        self.render_mode = render_mode
        self.width, self.height = width, height

        self.model = sc.load_model()
        self.data = mujoco.MjData(self.model)
        cameras = [self.model.camera(i).name for i in range(self.model.ncam)]
        if camera_name not in cameras:
            raise ValueError(f"camera_name: got {camera_name!r}; allowed: {', '.join(cameras)}")
        self.camera_name = camera_name
        self._renderer: mujoco.Renderer | None = None

        self.obs_slices: dict[str, slice] = sc.obs_slices(self.reveal_task)
        obs_dim = max(s.stop for s in self.obs_slices.values())
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(sc.ACTION_DIM,), dtype=np.float32)

        self._pinned: Task | None = None
        self._applied: Task | None = None
        self.task: Task | None = None
        self._features: np.ndarray | None = None
        self._goal = np.zeros((1, 3))
        self._mirror = np.zeros((1, 3))
        self._size = np.zeros(1)
        self._prev_action = np.zeros((1, sc.ACTION_DIM))

    # ---------------------------------------------------------------------------------------
    # Tasks

    def set_task(self, task: Task | None) -> None:
        """Pin ``task`` for every later reset (None unpins: resets draw from ``split`` again).

        The task takes effect at the next reset."""
        if task is not None and not isinstance(task, Task):
            raise ValueError(
                f"task: got {type(task).__name__}; allowed: an envs.tasks.Task or None"
            )
        self._pinned = task

    def _use_task(self, task: Task) -> None:
        if task != self._applied:
            sc.apply_task(self.model, self.data, task)
            self._applied = task
        self.task = task
        self._features = task.features()[None] if self.reveal_task else None
        self._goal = np.array([task.goal])
        self._mirror = np.array([task.mirror_goal()])
        self._size = np.array([task.size])

    # ---------------------------------------------------------------------------------------
    # Reward: variants define dense_terms; sparse is shared.

    def dense_terms(
        self, r: sc.Readings, goal: np.ndarray, size: np.ndarray, mirror: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Dense reward terms and success (N,) of N envs (goal and its mirror image through the
        object's start (N, 3), object size (N,)); overridden by each variant."""
        raise NotImplementedError

    def reward_and_success(
        self, r: sc.Readings, goal: np.ndarray, size: np.ndarray, mirror: np.ndarray
    ) -> RewardOut:
        """Reward, its terms and success of N envs (arguments as in :meth:`dense_terms`)."""
        terms, success = self.dense_terms(r, goal, size, mirror)
        if self.reward_type == "sparse":
            terms = {"success": success.copy()}
        values = iter(terms.values())
        reward = next(values).copy()
        for v in values:
            reward += v
        return reward, terms, success

    def masked_outcome(
        self,
        r: sc.Readings,
        goal: np.ndarray,
        size: np.ndarray,
        mirror: np.ndarray,
        valid: np.ndarray,
    ) -> RewardOut:
        """:meth:`reward_and_success` with every value zeroed where ``valid`` (N,) is false
        (a physics error, or a sub-env that was resetting)."""
        reward, terms, success = self.reward_and_success(r, goal, size, mirror)
        return (
            np.where(valid, reward, 0.0),
            {name: np.where(valid, value, 0.0) for name, value in terms.items()},
            np.where(valid, success, 0.0),
        )

    # ---------------------------------------------------------------------------------------
    # Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        task = self._pinned
        if task is None:
            task = self.task_distribution.sample(1, self.split, self.np_random)[0]
        self._use_task(task)
        d = self.data
        sc.start_episode(self.model, d, task)
        self._prev_action = np.zeros((1, sc.ACTION_DIM))
        readings = sc.read_sensors(d.sensordata[None])
        obs = sc.build_obs(readings, self._prev_action, self._features)
        return obs[0], {"task": task}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise RuntimeError("step() called before reset(): call env.reset() first")
        a = sc.validate_actions(action, None)[None]
        m, d = self.model, self.data
        d.mocap_pos = sc.mocap_targets(d.mocap_pos, a)
        d.ctrl = sc.gripper_ctrl(a)[0]
        mujoco.mj_step(m, d, nstep=sc.FRAME_SKIP)
        self._prev_action = a
        readings = sc.read_sensors(d.sensordata[None])
        error = bool(sc.physics_error(d.qvel[None], readings.object_pos)[0])
        obs = sc.build_obs(readings, a, self._features)
        reward, terms, success = self.masked_outcome(
            readings, self._goal, self._size, self._mirror, np.array([not error])
        )
        info: dict[str, Any] = {"success": float(success[0]), "physics_error": error}
        for name, value in terms.items():
            info[f"reward_{name}"] = float(value[0])
        return obs[0], float(reward[0]), False, error, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data, camera=self.camera_name)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
