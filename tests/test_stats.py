"""Bootstrap intervals and the interquartile mean, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from meta_rl.evaluation.stats import (
    bootstrap_ci,
    hierarchical_bootstrap_ci,
    iqm,
    summarize,
    summarize_per_episode,
)


def test_iqm_equals_hand_computation() -> None:
    # n = 8: drop the 2 lowest and the 2 highest, average the middle 4.
    assert iqm([100, 0, 0, 4, 3, 2, 1, 100]) == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)
    # n = 5: floor(5 / 4) = 1 value dropped at each end.
    assert iqm([10, 1, 2, 3, 4]) == pytest.approx((2 + 3 + 4) / 3)
    # fewer than 4 values: nothing dropped.
    assert iqm([1.0, 5.0]) == pytest.approx(3.0)


@pytest.mark.parametrize("n", [4, 7, 10, 33])
def test_iqm_matches_scipy_trim_mean(n: int) -> None:
    x = np.random.default_rng(n).normal(size=n)
    assert iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25))


def test_iqm_ignores_outliers_the_mean_does_not() -> None:
    x = np.r_[np.ones(18), [1e6, 5e5]]
    assert iqm(x) == pytest.approx(1.0)
    assert abs(x.mean() - 1.0) > 0.1


def test_bootstrap_ci_covers_the_mean_and_is_reproducible() -> None:
    x = np.random.default_rng(0).normal(2.0, 1.0, size=40)
    ci = bootstrap_ci(x, np.random.default_rng(1), num_resamples=1000)
    assert ci.low < x.mean() < ci.high
    again = bootstrap_ci(x, np.random.default_rng(1), num_resamples=1000)
    assert (again.low, again.high) == (ci.low, ci.high)


def test_bootstrap_ci_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(3)
    widths = []
    for n in (10, 100, 1000):
        x = rng.normal(size=n)
        ci = bootstrap_ci(x, np.random.default_rng(0), num_resamples=1000)
        widths.append(ci.high - ci.low)
    assert widths[0] > widths[1] > widths[2]
    # The width of a mean's interval falls like 1/sqrt(n): about 10x from n=10 to n=1000.
    assert 5.0 < widths[0] / widths[2] < 20.0


def test_bootstrap_ci_widens_with_the_confidence_level() -> None:
    x = np.random.default_rng(4).normal(size=50)
    narrow = bootstrap_ci(x, np.random.default_rng(0), confidence_level=0.5)
    wide = bootstrap_ci(x, np.random.default_rng(0), confidence_level=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_bootstrap_ci_has_roughly_nominal_coverage() -> None:
    # 95% intervals of the mean of N(0, 1) samples contain 0 in about 95% of datasets.
    rng = np.random.default_rng(5)
    hits = 0
    trials = 200
    for _ in range(trials):
        ci = bootstrap_ci(rng.normal(size=40), rng, num_resamples=400)
        hits += ci.low <= 0.0 <= ci.high
    assert 0.86 <= hits / trials <= 0.99


def test_constant_values_give_a_degenerate_interval() -> None:
    ci = bootstrap_ci(np.zeros(12), np.random.default_rng(0))
    assert ci.low == ci.high == 0.0


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([], r"at least one value"),
        ([[1.0, 2.0]], r"1-D array"),
        ([1.0, float("nan")], r"finite"),
    ],
)
def test_bad_values_are_refused(values: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(np.asarray(values), np.random.default_rng(0))


def test_bad_confidence_level_is_refused() -> None:
    with pytest.raises(ValueError, match=r"confidence_level: got 1\.5"):
        bootstrap_ci([1.0, 2.0], np.random.default_rng(0), confidence_level=1.5)


def test_summarize_per_episode_gives_one_summary_per_column() -> None:
    values = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    out = summarize_per_episode(values, np.random.default_rng(0), num_resamples=200)
    assert [s.mean for s in out] == pytest.approx([0.25, 0.75, 1.0])
    assert all(s.n == 4 for s in out)
    assert all(s.ci_low <= s.mean <= s.ci_high for s in out)
    single = summarize(values[:, 1], np.random.default_rng(0), num_resamples=200)
    assert single.iqm == pytest.approx(iqm(values[:, 1]))
    with pytest.raises(ValueError, match=r"num_trials, num_episodes"):
        summarize_per_episode(values[:, 0], np.random.default_rng(0))


def test_hierarchical_bootstrap_is_not_fooled_by_repeated_seeds() -> None:
    # 6 tasks, each repeated identically over 10 seeds (deterministic resets and actions): the
    # evidence is 6 values, not 60. Resampling trials as independent gives a too-narrow interval.
    per_task = np.random.default_rng(0).normal(size=6)
    repeated = np.repeat(per_task[:, None], 10, axis=1)
    nested = hierarchical_bootstrap_ci(repeated, np.random.default_rng(1), num_resamples=2000)
    flat = bootstrap_ci(repeated.reshape(-1), np.random.default_rng(1), num_resamples=2000)
    tasks_only = bootstrap_ci(per_task, np.random.default_rng(1), num_resamples=2000)
    assert nested.low < per_task.mean() < nested.high
    assert (flat.high - flat.low) < 0.6 * (nested.high - nested.low)
    assert nested.high - nested.low == pytest.approx(tasks_only.high - tasks_only.low, rel=0.15)


def test_hierarchical_bootstrap_shrinks_with_more_tasks() -> None:
    rng = np.random.default_rng(7)
    widths = []
    for m in (5, 50, 500):
        x = rng.normal(size=(m, 1)) + rng.normal(scale=0.3, size=(m, 3))
        ci = hierarchical_bootstrap_ci(x, np.random.default_rng(0), num_resamples=500)
        assert ci.low < x.mean() < ci.high
        widths.append(ci.high - ci.low)
    assert widths[0] > widths[1] > widths[2]


def test_summarize_per_episode_accepts_tasks_by_seeds() -> None:
    values = np.zeros((3, 2, 4))
    values[:, :, 3] = 1.0
    values[0, 1, 1] = 1.0
    out = summarize_per_episode(values, np.random.default_rng(0), num_resamples=200)
    assert [s.mean for s in out] == pytest.approx([0.0, 1 / 6, 0.0, 1.0])
    assert [s.n for s in out] == [6, 6, 6, 6]
    with pytest.raises(ValueError, match=r"non-empty \(num_tasks, num_seeds\)"):
        hierarchical_bootstrap_ci(np.zeros((0, 3)), np.random.default_rng(0))
