"""Adaptation curves: a metric against the episode index k, one line per method, shaded CIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never open a window

import matplotlib.pyplot as plt

from meta_rl.evaluation.stats import Summary

__all__ = ["plot_adaptation_curve"]

_LABELS = {
    "success": "success rate",
    "success_final": "success at the last step",
    "return": "mean return",
}


def plot_adaptation_curve(
    curves: Mapping[str, Sequence[Summary]],
    path: str | Path,
    *,
    metric: str = "success",
    title: str = "",
    confidence_level: float = 0.95,
) -> Path:
    """Plot ``metric`` per episode k (1-based) for each method with its CI band; save a PNG.

    ``curves`` maps a method name to one :class:`Summary` per episode index.
    """
    if not curves:
        raise ValueError("curves: need at least one method to plot")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    try:
        for name, summaries in curves.items():
            if not summaries:
                raise ValueError(f"curves[{name!r}]: no episodes to plot")
            ks = list(range(1, len(summaries) + 1))
            means = [s.mean for s in summaries]
            (line,) = ax.plot(ks, means, marker="o", label=name)
            ax.fill_between(
                ks,
                [s.ci_low for s in summaries],
                [s.ci_high for s in summaries],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        ax.set_xlabel("episode k of the trial")
        ax.set_ylabel(_LABELS.get(metric, metric))
        num_episodes = max(len(s) for s in curves.values())
        ax.set_xticks(list(range(1, num_episodes + 1)))
        if metric.startswith("success"):
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        band = f"shaded: {round(confidence_level * 100)}% bootstrap CI"
        ax.set_title(f"{title}\n{band}" if title else band, fontsize="medium")
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
