"""The one trial loop: K consecutive episodes of an agent on the pinned tasks of a vector env.

Training (:func:`meta_rl.training.rollout.collect_trials`) and evaluation
(:func:`meta_rl.evaluation.protocol.run_trials`) both drive their agent through
:func:`run_trial`; they differ only in what they record per step (``on_step``) and in
``fixed_length``:

- ``fixed_length=True`` (training): every episode lasts exactly ``episode_steps`` steps, so a
  trial is a ``(K * episode_steps, N)`` block. After an early end (a physics error, or a family
  that terminates), Gymnasium's next-step autoreset step is masked out and the sub-environment's
  new episode fills the rest of the slot (its steps count, mask true).
- ``fixed_length=False`` (evaluation): a sub-environment's episode ends at its first end; its
  later steps are masked out and not counted, and the episode of the trial ends when every
  sub-environment has ended it (or after ``episode_steps``, when given).

Episode k of a trial succeeds when ``info["success"]`` is reached at any of its counted steps
(``success``); ``success_final`` is ``info["success"]`` at the step that ended it (with
``fixed_length``: at the slot's last step, 0 when that step is masked).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "MAX_EPISODE_STEPS",
    "AdaptiveAgent",
    "Step",
    "TrialOutcome",
    "VectorEnvLike",
    "info_array",
    "run_trial",
    "torch_threads",
]

MAX_EPISODE_STEPS = 100_000
"""An episode longer than this means the env never ends its episodes: refuse rather than hang."""


@runtime_checkable
class AdaptiveAgent(Protocol):
    """What the trial loop drives: an agent batched over the N sub-environments of a vector env."""

    def begin_trial(self, num_envs: int) -> None:
        """New tasks: reset the belief and the adapted parameters."""

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions ``(N, act_dim)`` for observations ``(N, obs_dim)``."""
        ...

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
    ) -> None:
        """Record one batched transition (update the context)."""

    def end_episode(self) -> None:
        """All N episodes ended: adapt if configured."""


class VectorEnvLike(Protocol):
    """What the trial loop steps: N sub-environments with their tasks pinned, reset together
    (sub-env i seeded with ``seed + i``) and stepped with one action each."""

    num_envs: int

    def reset(self, *, seed: int | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, actions: np.ndarray) -> tuple[Any, Any, Any, Any, dict[str, Any]]: ...


@dataclass(frozen=True)
class Step:
    """One batched transition as the loop saw it (what ``on_step`` receives).

    ``reward`` is zero on masked rows; ``done`` marks the counted step that ends each row's
    episode (all rows on an episode's last step); ``mask`` is false on rows whose step is not
    part of the trial (the autoreset step after an early end, or after the end when
    ``fixed_length`` is false).
    """

    episode: int
    t: int
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray
    mask: np.ndarray
    success: np.ndarray


@dataclass(frozen=True)
class TrialOutcome:
    """Per sub-environment and episode, arrays ``(N, K)``: ``success`` (reached at any counted
    step), ``success_final`` (at the step that ended it), ``returns`` (sum of the counted
    rewards), ``lengths`` (counted steps); ``physics_errors`` counts episodes cut short by a
    diverged simulation (``info["physics_error"]``)."""

    success: np.ndarray
    success_final: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    physics_errors: int


def info_array(info: Mapping[str, Any], key: str, n: int, *, required: bool) -> np.ndarray:
    """``info[key]`` of a vector env's step as ``(n,)`` floats (0 where its ``_key`` mask is off).

    A missing key is 0 unless ``required`` (then a ``ValueError`` that says what to report).
    """
    value = info.get(key)
    if value is None:
        if required:
            raise ValueError(
                f"the env's step info has no {key!r}: every step of a task family must report "
                f"info[{key!r}] (float 0/1; docs/design.md, 'Tasks'), else success is never "
                "measured"
            )
        return np.zeros(n, dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    mask = info.get("_" + key)
    if mask is not None:
        arr = np.where(np.asarray(mask, dtype=bool).reshape(-1), arr, 0.0)
    if arr.shape != (n,):
        raise ValueError(f"info[{key!r}]: expected {n} values, got shape {arr.shape}")
    return arr


def _observe_takes_mask(agent: Any) -> bool:
    try:
        return "mask" in inspect.signature(agent.observe).parameters
    except (TypeError, ValueError):
        return False


def run_trial(
    env: VectorEnvLike,
    agent: AdaptiveAgent,
    *,
    episodes: int,
    deterministic: bool,
    seed: int | None,
    episode_steps: int | None = None,
    fixed_length: bool = False,
    act: Callable[[np.ndarray, bool], np.ndarray] | None = None,
    on_step: Callable[[Step], None] | None = None,
    on_episode_end: Callable[[int, TrialOutcome], None] | None = None,
) -> TrialOutcome:
    """One trial of ``episodes`` episodes in every sub-environment of ``env`` (tasks pinned).

    ``seed`` seeds the trial's first reset (sub-env i gets ``seed + i``), so a trial's start
    depends only on it. ``episode_steps`` ends every episode after that many steps (None: when
    the env ends them; required with ``fixed_length``). ``act`` replaces ``agent.act`` (the
    trainer records what its agent's ``step`` returns); agents whose ``observe`` takes a ``mask``
    keyword get it. ``on_step`` sees every :class:`Step`; ``on_episode_end(k, outcome so far)``
    runs after episode k.
    """
    n = env.num_envs
    if episodes < 1:
        raise ValueError(f"episodes: got {episodes}; allowed: >= 1")
    if episode_steps is not None and episode_steps < 1:
        raise ValueError(f"episode_steps: got {episode_steps}; allowed: >= 1 or None")
    if fixed_length and episode_steps is None:
        raise ValueError("run_trial: fixed_length needs episode_steps")
    act_fn = act if act is not None else agent.act
    takes_mask = _observe_takes_mask(agent)
    outcome = TrialOutcome(
        success=np.zeros((n, episodes)),
        success_final=np.zeros((n, episodes)),
        returns=np.zeros((n, episodes)),
        lengths=np.zeros((n, episodes)),
        physics_errors=0,
    )
    physics_errors = 0
    agent.begin_trial(n)
    for k in range(episodes):
        obs, _ = env.reset(seed=seed if k == 0 else None)
        obs = np.asarray(obs, dtype=np.float32)
        active = np.ones(n, dtype=bool)  # rows whose step counts
        pending_reset = np.zeros(n, dtype=bool)  # fixed_length: the next step is an autoreset
        t = 0
        while True:
            action = np.asarray(act_fn(obs, deterministic))
            if action.shape[0] != n:
                raise ValueError(
                    f"agent.act returned {action.shape[0]} actions for {n} sub-environments"
                )
            next_obs, reward, terminated, truncated, info = env.step(action)
            next_obs = np.asarray(next_obs, dtype=np.float32)
            valid = active & ~pending_reset
            ended = (np.asarray(terminated, bool) | np.asarray(truncated, bool)).reshape(n)
            last = episode_steps is not None and t + 1 >= episode_steps
            done = np.ones(n, dtype=bool) if last else ended & valid
            raw_reward = np.where(valid, np.asarray(reward, dtype=np.float64).reshape(n), 0.0)
            reward = raw_reward.astype(np.float32)
            # On a step where every sub-env autoresets, the info holds only the resets' (empty).
            succ = info_array(info, "success", n, required=bool(valid.any())) * valid
            outcome.returns[:, k] += raw_reward
            outcome.lengths[valid, k] += 1
            outcome.success[:, k] = np.maximum(outcome.success[:, k], succ)
            if not fixed_length:
                final = done & active
                outcome.success_final[final, k] = succ[final]
            elif last:
                outcome.success_final[:, k] = succ
            if "physics_error" in info:
                errors = info_array(info, "physics_error", n, required=False)
                physics_errors += int(np.sum(errors[ended & valid]))
            if takes_mask:
                agent.observe(obs, action, reward, next_obs, done, mask=valid)  # type: ignore[call-arg]
            else:
                agent.observe(obs, action, reward, next_obs, done)
            if on_step is not None:
                on_step(Step(k, t, obs, action, reward, next_obs, done, valid, succ))
            if fixed_length:
                pending_reset = ended & valid & (not last)
            else:
                active &= ~done
            obs = next_obs
            t += 1
            if last or (not fixed_length and not active.any()):
                break
            if t > MAX_EPISODE_STEPS:
                raise RuntimeError(
                    f"an episode ran past {MAX_EPISODE_STEPS} steps: the env must truncate "
                    "its episodes (max_episode_steps)"
                )
        agent.end_episode()
        if on_episode_end is not None:
            on_episode_end(k, outcome)
    return TrialOutcome(
        success=outcome.success,
        success_final=outcome.success_final,
        returns=outcome.returns,
        lengths=outcome.lengths,
        physics_errors=physics_errors,
    )


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(num_threads)`` (None: unchanged), then restore."""
    import torch

    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
