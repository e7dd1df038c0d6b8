"""The exploration trace (meta_rl/evaluation/exploration.py): what a student does in episode 1
and on what evidence."""

from __future__ import annotations

import numpy as np
import pytest

from meta_rl.evaluation.exploration import (
    ExplorationTrace,
    exploration_table,
    feature_correlations,
)


def test_feature_correlations_are_pearsons_feature_by_feature() -> None:
    f = np.array([[0.0, 1.0, 5.0], [1.0, 1.0, 6.0], [2.0, 1.0, 7.0], [3.0, 1.0, 9.0]])
    h = np.array([[0.0, 2.0, 1.0], [2.0, 3.0, 0.0], [4.0, 4.0, 1.0], [6.0, 5.0, 0.0]])
    c = feature_correlations(h, f)
    assert c[0] == pytest.approx(1.0)  # h = 2 f
    assert np.isnan(c[1])  # the task's feature is constant
    expected = np.corrcoef(h[:, 2], f[:, 2])[0, 1]
    assert c[2] == pytest.approx(expected)


def test_the_table_shows_a_replayed_tour_as_no_spread_across_tasks() -> None:
    """A tour replayed whatever the task: the same actions at a step, spread 0; a posterior
    that has found each task: hypotheses equal to the features, correlation 1."""
    m, t = 4, 3
    features = np.arange(m * 2, dtype=float).reshape(m, 2) ** 1.5
    trace = ExplorationTrace(
        actions=np.tile(np.array([0.5, -0.5]), (m, t, 1)),
        hypotheses=np.repeat(features[:, None, :], t, axis=1),
        features=features,
        particles=np.full((m, t), 3.0),
        reward_so_far=np.cumsum(np.ones((m, t)), axis=1),
        success=np.ones(m),
    )
    table = exploration_table(trace, at=[0, 2])
    rows = table.splitlines()[2:]
    assert rows[0].startswith("| 1 | 0.000 | ") and "+1.00 +1.00" in rows[0]
    assert rows[1].endswith("| 3.0 | 3.00 |")
