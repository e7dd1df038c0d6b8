"""Statistics of adaptation curves: percentile-bootstrap confidence intervals and the IQM.

Every resampling draws from an explicit :class:`numpy.random.Generator`, so a report is
reproducible from its seed. The interquartile mean (IQM) is the mean of the middle 50 % of the
values (Agarwal et al., 2021): robust to a few outlier trials, yet less noisy than the median.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interval",
    "Summary",
    "bootstrap_ci",
    "hierarchical_bootstrap_ci",
    "iqm",
    "summarize",
    "summarize_per_episode",
]

Statistic = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``[low, high]`` at ``level`` (e.g. 0.95)."""

    low: float
    high: float
    level: float


@dataclass(frozen=True)
class Summary:
    """Point estimates and the bootstrap interval of the mean of ``n`` values."""

    mean: float
    ci_low: float
    ci_high: float
    iqm: float
    std: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "iqm": self.iqm,
            "std": self.std,
            "n": self.n,
        }


def _as_1d(values: np.ndarray | list[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of values, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name}: needs at least one value, got an empty array")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: values must be finite (no NaN or inf)")
    return x


def iqm(values: np.ndarray | list[float]) -> float:
    """Interquartile mean: drop ``floor(n / 4)`` values at each end of the sorted values, average
    the rest.

    This is rliable's definition (``scipy.stats.trim_mean(x, 0.25)``); with fewer than 4 values
    nothing is dropped and the IQM is the mean.
    """
    x = np.sort(_as_1d(values, "iqm"))
    cut = x.size // 4
    return float(x[cut : x.size - cut].mean())


def _batched_mean(samples: np.ndarray) -> np.ndarray:
    return np.asarray(samples.mean(axis=-1))


def bootstrap_ci(
    values: np.ndarray | list[float],
    rng: np.random.Generator,
    *,
    confidence_level: float = 0.95,
    num_resamples: int = 2000,
    statistic: Statistic = _batched_mean,
) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` (default: the mean) of ``values``.

    ``statistic`` maps a ``(num_resamples, n)`` array to ``(num_resamples,)``. Resamples draw
    ``n`` indices with replacement from ``rng``; the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled statistic.
    """
    x = _as_1d(values, "bootstrap_ci")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: got {confidence_level}; allowed: 0 < level < 1")
    if num_resamples < 1:
        raise ValueError(f"num_resamples: got {num_resamples}; allowed: >= 1")
    idx = rng.integers(0, x.size, size=(num_resamples, x.size))
    stats = np.asarray(statistic(x[idx]), dtype=np.float64)
    alpha = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(low=float(low), high=float(high), level=confidence_level)


def hierarchical_bootstrap_ci(
    values: np.ndarray,
    rng: np.random.Generator,
    *,
    confidence_level: float = 0.95,
    num_resamples: int = 2000,
) -> Interval:
    """Two-stage percentile bootstrap of the grand mean of a ``(num_tasks, num_seeds)`` array.

    Each resample draws ``num_tasks`` tasks (rows) with replacement, then ``num_seeds`` seeds
    with replacement within each drawn task. Trials of one task are correlated (with
    deterministic resets and actions they are identical), so resampling trials as if they were
    independent would give intervals that are too narrow; this one is over tasks and seeds.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(
            f"hierarchical_bootstrap_ci: expected a non-empty (num_tasks, num_seeds) array, "
            f"got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("hierarchical_bootstrap_ci: values must be finite (no NaN or inf)")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: got {confidence_level}; allowed: 0 < level < 1")
    if num_resamples < 1:
        raise ValueError(f"num_resamples: got {num_resamples}; allowed: >= 1")
    m, s = x.shape
    tasks = rng.integers(0, m, size=(num_resamples, m))
    seeds = rng.integers(0, s, size=(num_resamples, m, s))
    stats = x[tasks[..., None], seeds].mean(axis=(1, 2))
    alpha = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(low=float(low), high=float(high), level=confidence_level)


def summarize(
    values: np.ndarray | list[float],
    rng: np.random.Generator,
    *,
    confidence_level: float = 0.95,
    num_resamples: int = 2000,
) -> Summary:
    """Mean, bootstrap interval of the mean, IQM and standard deviation of ``values``.

    A 1-D array is resampled value by value (:func:`bootstrap_ci`); a ``(num_tasks,
    num_seeds)`` array task by task, then seed by seed (:func:`hierarchical_bootstrap_ci`).
    The IQM and the standard deviation are over all values.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2:
        ci = hierarchical_bootstrap_ci(
            arr, rng, confidence_level=confidence_level, num_resamples=num_resamples
        )
        x = arr.reshape(-1)
    else:
        x = _as_1d(arr, "summarize")
        ci = bootstrap_ci(x, rng, confidence_level=confidence_level, num_resamples=num_resamples)
    return Summary(
        mean=float(x.mean()),
        ci_low=ci.low,
        ci_high=ci.high,
        iqm=iqm(x),
        std=float(x.std()),
        n=int(x.size),
    )


def summarize_per_episode(
    values: np.ndarray,
    rng: np.random.Generator,
    *,
    confidence_level: float = 0.95,
    num_resamples: int = 2000,
) -> list[Summary]:
    """One :class:`Summary` per episode index k (the last axis).

    ``values`` is ``(num_tasks, num_seeds, num_episodes)`` (hierarchical bootstrap over tasks,
    then seeds) or ``(num_trials, num_episodes)`` (trials resampled as independent).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(
            "summarize_per_episode: expected (num_tasks, num_seeds, num_episodes) or "
            f"(num_trials, num_episodes), got shape {arr.shape}"
        )
    return [
        summarize(arr[..., k], rng, confidence_level=confidence_level, num_resamples=num_resamples)
        for k in range(arr.shape[-1])
    ]
