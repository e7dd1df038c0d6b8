"""The one trial loop (meta_rl.trial.run_trial): what training and evaluation each count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from helpers.toy_family import TOY_ID
from meta_rl.task_envs.vector import TaskVectorEnvLike, make_task_vector_env
from meta_rl.trial import Step, run_trial


class _Recorder:
    """A fixed-action agent that keeps what the loop hands it (mask included)."""

    def __init__(self) -> None:
        self.trials = 0
        self.episodes_ended = 0
        self.masks: list[np.ndarray] = []

    def begin_trial(self, num_envs: int) -> None:
        self.trials += 1

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        return np.zeros((obs.shape[0], 2), dtype=np.float32)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> None:
        assert mask is not None, "an agent whose observe takes mask gets it"
        self.masks.append(mask.copy())

    def end_episode(self) -> None:
        self.episodes_ended += 1


def _env(**kwargs: Any) -> TaskVectorEnvLike:
    venv = make_task_vector_env(TOY_ID, 2, **kwargs)
    venv.set_tasks(venv.task_distribution.sample(2, "train", np.random.default_rng(0)))
    return venv


def test_fixed_length_fills_the_slot_after_an_early_end() -> None:
    agent = _Recorder()
    steps: list[Step] = []
    out = run_trial(
        _env(end_at=3),
        agent,
        episodes=2,
        deterministic=True,
        seed=0,
        episode_steps=6,
        fixed_length=True,
        on_step=steps.append,
    )
    assert len(steps) == 12 and all(isinstance(s, Step) for s in steps)
    # Step 2 ends the episode early, step 3 is the autoreset (masked), the new episode counts.
    np.testing.assert_array_equal([s.mask[0] for s in steps[:6]], [1, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal([s.done[0] for s in steps[:6]], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(out.lengths, np.full((2, 2), 5.0))
    assert out.physics_errors == 4  # two sub-envs x two episodes
    assert agent.trials == 1 and agent.episodes_ended == 2
    assert [m[0] for m in agent.masks[:6]] == [s.mask[0] for s in steps[:6]]


def test_evaluation_counts_an_episode_until_its_first_end() -> None:
    agent = _Recorder()
    out = run_trial(_env(end_at=3), agent, episodes=2, deterministic=True, seed=0)
    # Every sub-env ends at step 3: the episode of the trial ends with them.
    assert len(agent.masks) == 2 * 3
    np.testing.assert_array_equal(out.lengths, np.full((2, 2), 3.0))
    returns = out.returns.copy()
    again = run_trial(_env(end_at=3), _Recorder(), episodes=2, deterministic=True, seed=0)
    np.testing.assert_array_equal(again.returns, returns)  # the seed fixes the trial


def test_episode_steps_cut_episodes_and_shapes_are_per_env_and_episode() -> None:
    out = run_trial(_env(), _Recorder(), episodes=3, deterministic=True, seed=1, episode_steps=4)
    assert out.success.shape == out.returns.shape == (2, 3)
    np.testing.assert_array_equal(out.lengths, np.full((2, 3), 4.0))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"fixed_length needs episode_steps"):
        run_trial(_env(), _Recorder(), episodes=1, deterministic=True, seed=0, fixed_length=True)
    with pytest.raises(ValueError, match=r"episodes: got 0"):
        run_trial(_env(), _Recorder(), episodes=0, deterministic=True, seed=0)
