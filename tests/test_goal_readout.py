"""The goal readout (meta_rl.evaluation.goal_readout): the scripted tour, its readings, the fit,
and the command (scripts/goal_readout.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meta_rl.evaluation import goal_readout as gr

ROOT = Path(__file__).resolve().parents[1]


def test_the_tour_lifts_the_object_through_its_waypoints_and_reads_the_place_term() -> None:
    disp, place, goals = gr.tours(3.0, 6, seed=1)
    steps = -(-150 // gr.EVERY)
    assert disp.shape == (6, steps, 3) and place.shape == (6, steps) and goals.shape == (6, 3)
    # The readings are the place term of the object's distance to the goal (same frame).
    d = np.linalg.norm(disp - goals[:, None, :], axis=-1)
    np.testing.assert_allclose(place, 0.6 * (1.0 - np.tanh(3.0 * d)), atol=1e-5)
    # Every object is carried: held near the last waypoint at the end of the episode.
    np.testing.assert_allclose(disp[:, -1], np.broadcast_to(gr.TOUR[-1], (6, 3)), atol=0.03)


def test_the_fit_learns_a_readable_target_and_not_an_unreadable_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    y = x[:, :3] * 0.1  # readable from x
    assert gr.fit_error(x, y, 500, seed=0, steps=400) < 0.03
    noise = rng.normal(size=(600, 3)) * 0.1  # not readable
    assert gr.fit_error(x, noise, 500, seed=0, steps=400) > 0.12


def test_the_readout_refuses_too_few_tours_to_fit_and_score() -> None:
    with pytest.raises(ValueError, match=r"tasks: got 9; allowed: >= 10"):
        gr.goal_readout(10.0, tasks=9)


def test_goal_readout_command(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "scripts/goal_readout.py"), "--place-scales", "10"]
    done = subprocess.run(
        [*cmd, "--tasks", "20", "--fit-steps", "5"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[0] == "10"
    bad = subprocess.run([*cmd, "--tasks", "3"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--tasks: got 3; allowed: >= 10" in bad.stderr
