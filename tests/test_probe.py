"""The belief probe (meta_rl.evaluation.probe): the ridge maths, the contract, and a sanity
check: a goal that is in the observation is read off it exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meta_rl.evaluation.probe import belief_probe, ridge_fit

SMOKE = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"


def test_ridge_fit_recovers_a_linear_map_with_its_intercept() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    w, b = rng.normal(size=(4, 2)), np.array([0.5, -2.0])
    weights = ridge_fit(x, x @ w + b, alpha=1e-9)
    np.testing.assert_allclose(weights[:-1], w, atol=1e-6)
    np.testing.assert_allclose(weights[-1], b, atol=1e-6)  # the intercept is not penalised
    shrunk = ridge_fit(x, x @ w + b, alpha=1e4)
    assert np.abs(shrunk[:-1]).sum() < np.abs(w).sum() / 10


def _run(tmp_path: Path, *overrides: str) -> Path:
    from meta_rl.experiment import load_experiment
    from meta_rl.training.trainer import train

    cfg = load_experiment(SMOKE, [f"runs_dir={tmp_path}", "train.iterations=1", *overrides])
    return train(cfg)


def test_a_goal_in_the_observation_is_read_off_it_and_the_prior_adds_nothing(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, "env.kwargs.reveal_task=true")
    result = belief_probe(run, num_train=48, num_test=16, features=slice(0, 3), steps=[0, 5, 12])
    assert result.steps == [0, 5, 12] and result.running == [(48, 16)] * 3
    assert max(result.obs_only) < 0.01  # the goal is in the observation
    assert result.chance > 0.3
    # At step 0 the belief is the prior (constant): it adds nothing to the observation.
    assert result.with_belief[0] == pytest.approx(result.obs_only[0])
    assert "| 12 | 2 | 48, 16 |" in result.table()  # step 12 is in episode 2 (10 steps each)


def test_the_probe_refuses_steps_outside_the_trial_and_an_empty_feature_slice(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    with pytest.raises(ValueError, match=r"steps: got \[20\]; allowed: 0 to 19"):
        belief_probe(run, num_train=4, num_test=2, steps=[20])
    with pytest.raises(ValueError, match=r"features: got slice\(5, 5, None\)"):
        belief_probe(run, num_train=4, num_test=2, steps=[0], features=slice(5, 5))
    with pytest.raises(ValueError, match=r"num_train, num_test: got 1, 2"):
        belief_probe(run, num_train=1, num_test=2)
