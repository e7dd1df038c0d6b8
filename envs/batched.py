"""The batched simulator: N arm envs stepped together by ``mujoco.rollout`` in one process.

Each sub-env owns a copy of the compiled model carrying its task's parameters; one persistent
``mujoco.rollout.Rollout`` thread pool steps all of them ``frame_skip`` physics steps per env
step, taking the gripper controls and mocap targets as its open-loop control. Observations,
rewards and success are then computed for all N at once with the same vectorised functions as the
single env (``envs.scene`` and the variant's ``dense_terms``), so Python costs almost nothing per
sub-env step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import mujoco.rollout
import numpy as np
from gymnasium.utils.seeding import np_random
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs import scene as sc
from envs.base import ArmEnv
from envs.tasks import Task, TaskDistribution

__all__ = ["BatchedArmEnv", "make_batched"]

_CONTROL_SPEC = int(mujoco.mjtState.mjSTATE_CTRL) | int(mujoco.mjtState.mjSTATE_MOCAP_POS)
_FULL = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)


class BatchedArmEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """A ``gymnasium.vector.VectorEnv`` of ``num_envs`` arm envs of one id, one task each.

    Behaves like ``num_envs`` copies of ``gymnasium.make(env_id, **env_kwargs)`` in a
    ``SyncVectorEnv`` with next-step autoreset, step for step and bit for bit on the same seeds
    and tasks: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``; a sub-env whose episode
    ended (time limit or physics error) is reset by the following ``step``, which returns its
    first observation with reward 0 and does not step it.

    ``set_tasks(tasks)`` pins one task per sub-env (``None`` unpins it: it draws from the split
    again) from the next reset on. ``info`` holds the single env's keys as arrays of length
    ``num_envs`` (``success``, ``physics_error``, ``reward_<term>``), with Gymnasium's ``_key``
    masks (False for sub-envs that were reset instead of stepped).

    ``state`` is the (num_envs, nstate) MuJoCo full physics state of every sub-env
    (``mjSTATE_FULLPHYSICS``; ``qpos_slice`` and ``qvel_slice`` locate its joint positions and
    velocities); ``num_threads`` (default: the CPU count, at most ``num_envs``)
    sets the rollout thread pool (0 steps on the calling thread).
    """

    metadata: dict[str, Any] = {  # noqa: RUF012
        "autoreset_mode": AutoresetMode.NEXT_STEP,
        "render_modes": ["rgb_array"],
    }

    def __init__(
        self,
        env_cls: type[ArmEnv],
        num_envs: int,
        *,
        max_episode_steps: int,
        num_threads: int | None = None,
        **env_kwargs: Any,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: got {num_envs!r}; allowed: an integer >= 1")
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps: got {max_episode_steps!r}; allowed: an integer >= 1"
            )
        if num_threads is None:
            num_threads = min(num_envs, os.cpu_count() or 1)
        if not isinstance(num_threads, int) or num_threads < 0:
            raise ValueError(f"num_threads: got {num_threads!r}; allowed: an integer >= 0")
        # The template env holds the configuration, reward terms and task distribution; it is
        # never stepped.
        self.template = env_cls(**env_kwargs)
        self.num_envs = num_envs
        self.num_threads = num_threads
        self.max_episode_steps = max_episode_steps
        self.render_mode = self.template.render_mode
        self.single_observation_space = self.template.observation_space
        self.single_action_space = self.template.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.obs_slices = self.template.obs_slices

        self.models = [sc.load_model() for _ in range(num_envs)]
        self._scratch = mujoco.MjData(self.models[0])
        self._datas = [mujoco.MjData(self.models[0]) for _ in range(max(1, num_threads))]
        self._rollout = mujoco.rollout.Rollout(nthread=num_threads)
        self._renderer: mujoco.Renderer | None = None

        n, m0 = num_envs, self.models[0]
        nstate = mujoco.mj_stateSize(m0, _FULL)
        self.qpos_slice = slice(
            mujoco.mj_stateSize(m0, int(mujoco.mjtState.mjSTATE_TIME)),
            mujoco.mj_stateSize(m0, int(mujoco.mjtState.mjSTATE_TIME)) + m0.nq,
        )
        self.qvel_slice = slice(self.qpos_slice.stop, self.qpos_slice.stop + m0.nv)
        self.state = np.zeros((n, nstate))
        self._sensordata = np.zeros((n, m0.nsensordata))
        self._mocap = np.tile(sc.HOME, (n, 1))
        self._control = np.zeros((n, sc.FRAME_SKIP, m0.nu + 3))
        self._out_state = np.zeros((n, sc.FRAME_SKIP, nstate))
        self._out_sensor = np.zeros((n, sc.FRAME_SKIP, m0.nsensordata))
        self._prev_action = np.zeros((n, sc.ACTION_DIM))
        self._goal = np.zeros((n, 3))
        self._mirror = np.zeros((n, 3))
        self._size = np.zeros(n)
        nfeat = len(Task("box", 0.02, 0.1, 1.0, (0.0, 0.0), 0.0, (0.0, 0.0, 0.1)).features())
        self._features = np.zeros((n, nfeat), dtype=np.float32)
        self._elapsed = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._pinned: list[Task | None] = [None] * n
        self._applied: list[Task | None] = [None] * n
        self.tasks: list[Task | None] = [None] * n
        self._rngs = [np_random(None)[0] for _ in range(n)]
        self._was_reset = False

    # ---------------------------------------------------------------------------------------
    # Tasks

    @property
    def task_distribution(self) -> TaskDistribution:
        return self.template.task_distribution

    def set_tasks(self, tasks: Sequence[Task | None]) -> None:
        """Pin one task per sub-env from the next reset on (None unpins that sub-env)."""
        tasks = list(tasks)
        if len(tasks) != self.num_envs:
            raise ValueError(
                f"tasks: got {len(tasks)} tasks; expected one per sub-env ({self.num_envs})"
            )
        for t in tasks:
            if t is not None and not isinstance(t, Task):
                raise ValueError(f"tasks: got {type(t).__name__}; allowed: Task or None")
        self._pinned = tasks

    def _reset_one(self, i: int) -> None:
        task = self._pinned[i]
        if task is None:
            task = self.task_distribution.sample(1, self.template.split, self._rngs[i])[0]
        model, data = self.models[i], self._scratch
        if task != self._applied[i]:
            sc.apply_task(model, data, task)
            self._applied[i] = task
        self.tasks[i] = task
        sc.start_episode(model, data, task)
        mujoco.mj_getState(model, data, self.state[i], _FULL)
        self._sensordata[i] = data.sensordata
        self._mocap[i] = sc.HOME
        self._prev_action[i] = 0.0
        self._goal[i] = task.goal
        self._mirror[i] = task.mirror_goal()
        self._size[i] = task.size
        self._features[i] = task.features()
        self._elapsed[i] = 0
        self._autoreset[i] = False

    # ---------------------------------------------------------------------------------------
    # Gymnasium vector API

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else seed
            seeds = list(seeds)
            if len(seeds) != self.num_envs:
                raise ValueError(
                    f"seed: got {len(seeds)} seeds; expected an int or {self.num_envs} seeds"
                )
            for i, s in enumerate(seeds):
                if s is not None:
                    self._rngs[i] = np_random(s)[0]
        for i in range(self.num_envs):
            self._reset_one(i)
        self._was_reset = True
        obs = self._observe(sc.read_sensors(self._sensordata))
        return obs, {}

    def _observe(self, readings: sc.Readings) -> np.ndarray:
        features = self._features if self.template.reveal_task else None
        return sc.build_obs(readings, self._prev_action, features)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._was_reset:
            raise RuntimeError("step() called before reset(): call envs.reset() first")
        n = self.num_envs
        a = sc.validate_actions(actions, n)
        resetting = self._autoreset.copy()
        for i in np.flatnonzero(resetting):
            self._reset_one(int(i))
        stepped = ~resetting
        # A slice when every sub-env steps (the common case): views instead of fancy-index copies.
        idx: np.ndarray | slice = slice(None) if not resetting.any() else np.flatnonzero(stepped)
        if not isinstance(idx, np.ndarray) or len(idx):
            self._advance(idx, a[idx])
        readings = sc.read_sensors(self._sensordata)
        error = sc.physics_error(self.state[:, self.qvel_slice], readings.object_pos)
        error &= stepped
        obs = self._observe(readings)
        reward, terms, success = self.template.masked_outcome(
            readings, self._goal, self._size, self._mirror, stepped & ~error
        )
        self._elapsed[idx] += 1
        truncated = stepped & ((self._elapsed >= self.max_episode_steps) | error)
        terminated = np.zeros(n, dtype=bool)
        self._autoreset = truncated.copy()
        info: dict[str, Any] = {"success": success, "physics_error": error}
        for name, value in terms.items():
            info[f"reward_{name}"] = value
        for key in list(info):
            info["_" + key] = stepped
        return obs, reward, terminated, truncated, info

    def _advance(self, idx: np.ndarray | slice, a: np.ndarray) -> None:
        """Step the sub-envs ``idx`` (all of them: ``slice(None)``) by ``frame_skip`` physics
        steps under actions ``a``."""
        self._mocap[idx] = sc.mocap_targets(self._mocap[idx], a)
        self._prev_action[idx] = a
        if isinstance(idx, slice):
            models: list[mujoco.MjModel] = self.models
            initial = self.state
        else:
            models = [self.models[i] for i in idx]
            initial = self.state[idx]  # fancy indexing: already a contiguous copy
        # Leading rows of the preallocated buffers serve a subset of the sub-envs too.
        k = len(models)
        control, out_state, out_sensor = (
            self._control[:k],
            self._out_state[:k],
            self._out_sensor[:k],
        )
        nu = control.shape[2] - 3
        control[:, :, :nu] = sc.gripper_ctrl(a)[:, None, :]
        control[:, :, nu:] = self._mocap[idx, None, :]
        self._rollout.rollout(
            models,
            self._datas,
            initial,
            control,
            control_spec=_CONTROL_SPEC,
            skip_checks=True,
            nstep=sc.FRAME_SKIP,
            state=out_state,
            sensordata=out_sensor,
        )
        self.state[idx] = out_state[:, -1]
        self._sensordata[idx] = out_sensor[:, -1]

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One frame per sub-env (``render_mode="rgb_array"``), from the template's camera."""
        if self.render_mode != "rgb_array":
            return None
        t = self.template
        model, data = t.model, t.data  # the never-stepped template serves as the canvas
        if self._renderer is None:
            self._renderer = mujoco.Renderer(model, t.height, t.width)
        frames = []
        for i, task in enumerate(self.tasks):
            if task is None:
                raise RuntimeError("render() called before reset(): call envs.reset() first")
            t._use_task(task)
            mujoco.mj_setState(model, data, self.state[i], _FULL)
            data.mocap_pos[0] = self._mocap[i]
            mujoco.mj_forward(model, data)
            self._renderer.update_scene(data, camera=t.camera_name)
            frames.append(self._renderer.render())
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        self._rollout.close()
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.template.close()


def make_batched(
    env_id: str,
    num_envs: int,
    *,
    num_threads: int | None = None,
    max_episode_steps: int | None = None,
    **env_kwargs: Any,
) -> BatchedArmEnv:
    """The batched simulator of a registered ``metarl/`` id (``max_episode_steps`` defaults to
    the id's)."""
    import envs

    if env_id not in envs.ENV_IDS:
        raise ValueError(f"env_id: got {env_id!r}; allowed: {', '.join(envs.ENV_IDS)}")
    spec = gym.spec(env_id)
    env_cls: Any = gym.envs.registration.load_env_creator(str(spec.entry_point))
    steps = spec.max_episode_steps if max_episode_steps is None else max_episode_steps
    assert isinstance(env_cls, type) and issubclass(env_cls, ArmEnv)
    assert steps is not None
    return BatchedArmEnv(
        env_cls, num_envs, max_episode_steps=steps, num_threads=num_threads, **env_kwargs
    )


def vector_entry_point_ReachEnv(num_envs: int, **kwargs: Any) -> BatchedArmEnv:
    """``gymnasium.make_vec("metarl/Reach-v0", n)``."""
    return make_batched("metarl/Reach-v0", num_envs, **kwargs)


def vector_entry_point_PushEnv(num_envs: int, **kwargs: Any) -> BatchedArmEnv:
    """``gymnasium.make_vec("metarl/Push-v0", n)``."""
    return make_batched("metarl/Push-v0", num_envs, **kwargs)


def vector_entry_point_PickPlaceEnv(num_envs: int, **kwargs: Any) -> BatchedArmEnv:
    """``gymnasium.make_vec("metarl/PickPlace-v0", n)``."""
    return make_batched("metarl/PickPlace-v0", num_envs, **kwargs)
