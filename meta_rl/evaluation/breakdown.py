"""Success broken down by object: per shape, and per size, mass and friction bin.

A user sees which unseen objects fail and whether adaptation fixes them (episode 1 vs episode K).
Works on any task with the fields ``shape`` (a string) and numeric ``size``, ``mass``,
``friction``; factors a task lacks are left out. Numeric factors are binned against the training
range when the env's task distribution states it (``splits["train"].<factor>``: ranges as
``((lo, hi), ...)``, as ``envs.tasks.SPLITS``): ``below train``, ``in train``, ``above train``,
and, given the test split's ranges too, ``below test`` and ``above test`` for values beyond
those (the edge split); otherwise in three quantile bins of the evaluated tasks. Each label
carries the value range of its tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: never open a window

import matplotlib.pyplot as plt
import numpy as np

from meta_rl.evaluation.protocol import TrialResults

__all__ = [
    "FACTORS",
    "breakdown_table",
    "plot_breakdown",
    "success_breakdown",
    "task_groups",
    "train_ranges",
]

FACTORS = ("shape", "size", "mass", "friction")
_NUMERIC = ("size", "mass", "friction")


def train_ranges(task_distribution: Any, split: str = "train") -> dict[str, tuple[float, float]]:
    """``factor -> (lo, hi)`` of ``split`` (the train split by default), when the distribution
    states it (else ``{}``)."""
    splits = getattr(task_distribution, "splits", None)
    train = splits.get(split) if isinstance(splits, Mapping) else None
    out: dict[str, tuple[float, float]] = {}
    for name in _NUMERIC:
        ranges = getattr(train, name, None)
        try:
            arr = np.asarray(ranges, dtype=float).reshape(-1, 2)
        except (TypeError, ValueError):
            continue
        if arr.size:
            out[name] = (float(arr[:, 0].min()), float(arr[:, 1].max()))
    return out


_BIN_ORDER = (
    "below test",
    "below train",
    "in train",
    "above train",
    "above test",
    "low",
    "mid",
    "high",
)


def _group_key(label: str) -> tuple[int, str]:
    """Bins in their natural order (smallest values first), shapes by name."""
    prefix = label.split(" (")[0]
    return (_BIN_ORDER.index(prefix) if prefix in _BIN_ORDER else len(_BIN_ORDER), label)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def task_groups(
    tasks: Sequence[Any],
    ranges: Mapping[str, tuple[float, float]] | None = None,
    test_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, list[str]]:
    """``factor -> one group label per task`` for the factors every task has; ``ranges`` are
    the train split's, ``test_ranges`` (optional) the test split's."""
    ranges, test_ranges = ranges or {}, test_ranges or {}
    out: dict[str, list[str]] = {}
    shapes = [getattr(t, "shape", None) for t in tasks]
    if tasks and all(isinstance(s, str) for s in shapes):
        out["shape"] = [str(s) for s in shapes]
    for name in _NUMERIC:
        raw = [getattr(t, name, None) for t in tasks]
        if not tasks or not all(isinstance(v, (int, float)) for v in raw):
            continue
        values = np.asarray(raw, dtype=float)
        if name in ranges:
            lo, hi = ranges[name]
            tlo, thi = test_ranges.get(name, (-np.inf, np.inf))
            bins = np.select(
                [values < min(lo, tlo), values < lo, values <= hi, values <= max(hi, thi)],
                [0, 1, 2, 3],
                4,
            )
            names: tuple[str, ...] = (
                "below test",
                "below train",
                "in train",
                "above train",
                "above test",
            )
        else:
            edges = np.quantile(values, [1 / 3, 2 / 3])
            bins = np.searchsorted(edges, values, side="right")
            names = ("low", "mid", "high")
        labels = {}
        for b in np.unique(bins):
            sel = values[bins == b]
            labels[int(b)] = f"{names[int(b)]} ({_fmt(sel.min())}-{_fmt(sel.max())})"
        out[name] = [labels[int(b)] for b in bins]
    return out


def success_breakdown(
    results: TrialResults, groups: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """``factor -> group -> {"tasks", "trials", "success": per-episode mean, "gain"}``.

    ``gain`` is the mean of episode K minus episode 1 (0 when K = 1); means are over all
    trials (tasks x seeds) of the group's tasks.
    """
    success = results.metric("success")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for factor, labels in groups.items():
        per_trial = np.asarray(labels, dtype=object)[results.task_index]
        rows: dict[str, dict[str, Any]] = {}
        for label in sorted(set(labels), key=_group_key):
            sel = per_trial == label
            curve = success[sel].mean(axis=0)
            rows[label] = {
                "tasks": int(sum(lab == label for lab in labels)),
                "trials": int(sel.sum()),
                "success": [float(v) for v in curve],
                "gain": float(curve[-1] - curve[0]),
            }
        out[factor] = rows
    return out


def breakdown_table(breakdowns: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown: per factor, one row per (method, group) with the success of episode 1 and K
    and the gain. ``breakdowns``: method name -> :func:`success_breakdown`."""
    lines = ["## Success by object (held-out breakdown)", ""]
    factors = [f for f in FACTORS if any(f in b for b in breakdowns.values())]
    if not factors:
        return ""
    for factor in factors:
        k = 0
        for b in breakdowns.values():
            for row in b.get(factor, {}).values():
                k = len(row["success"])
        lines += [
            f"**by {factor}**: success rate per episode (mean over trials)",
            "",
            f"| method | {factor} | tasks | k=1 | k={k} | gain |",
            "|---|---|---|---|---|---|",
        ]
        for method, b in breakdowns.items():
            for label, row in b.get(factor, {}).items():
                s = row["success"]
                lines.append(
                    f"| {method} | {label} | {row['tasks']} | {s[0]:.2f} | {s[-1]:.2f} | "
                    f"{row['gain']:+.2f} |"
                )
        lines.append("")
    return "\n".join(lines)


def plot_breakdown(
    breakdowns: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path, title: str = ""
) -> Path | None:
    """One panel per factor: bars of episode-K success per group and method, a black mark at
    episode 1. None (no file) when the tasks have none of the factors."""
    factors = [f for f in FACTORS if any(f in b for b in breakdowns.values())]
    if not factors:
        return None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(factors), figsize=(4.2 * len(factors), 4.2), dpi=100)
    axes_list = np.atleast_1d(axes).tolist()
    try:
        methods = list(breakdowns)
        width = 0.8 / max(len(methods), 1)
        for ax, factor in zip(axes_list, factors, strict=True):
            labels = sorted(
                {g for b in breakdowns.values() for g in b.get(factor, {})}, key=_group_key
            )
            x = np.arange(len(labels))
            for i, method in enumerate(methods):
                rows = breakdowns[method].get(factor, {})
                last = [rows[g]["success"][-1] if g in rows else np.nan for g in labels]
                first = [rows[g]["success"][0] if g in rows else np.nan for g in labels]
                pos = x - 0.4 + width * (i + 0.5)
                ax.bar(pos, last, width, label=method)
                ax.scatter(pos, first, color="black", marker="_", s=200, zorder=3)
            ax.set_xticks(x)
            ax.set_xticklabels(labels, rotation=35, ha="right", fontsize="small")
            ax.set_ylim(0.0, 1.03)
            ax.set_title(f"by {factor}", fontsize="medium")
            ax.grid(axis="y", alpha=0.3)
        axes_list[0].set_ylabel("success rate")
        axes_list[-1].legend(loc="best", fontsize="small")
        key = "bar: last episode of the trial; black mark: episode 1"
        fig.suptitle(f"{title}\n{key}" if title else key, fontsize="medium")
        fig.tight_layout()
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
