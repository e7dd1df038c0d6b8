"""Evaluation reports: per-method adaptation curves with CIs -> ``eval.json`` and a markdown table.

The keys of ``eval.json`` are documented in docs/evaluation.md; bump :data:`SCHEMA_VERSION` when
they change.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meta_rl.evaluation.protocol import TrialResults
from meta_rl.evaluation.stats import Summary, summarize, summarize_per_episode
from meta_rl.evaluation.video import describe_object, describe_task

__all__ = [
    "METRICS",
    "SCHEMA_VERSION",
    "EvalReport",
    "MethodResult",
    "attach_paired_differences",
    "identical_seeds_note",
    "load_eval_json",
    "markdown_table",
    "summarize_method",
    "trials_text",
]

SCHEMA_VERSION = 3
METRICS = ("success", "success_final", "return")


@dataclass
class MethodResult:
    """One evaluated method: its trials and a per-episode :class:`Summary` for each metric."""

    name: str
    kind: str  # agent | ablation | zero_shot | multitask | oracle | scratch | other
    source: str | None
    results: TrialResults
    curves: dict[str, list[Summary]]
    gains: dict[str, Summary]
    """Per metric: the paired difference episode K minus episode 1 of each trial (empty when
    K = 1). Its interval is much tighter than comparing the two episodes' own intervals,
    because a task that is hard in episode 1 is hard in episode K too."""
    breakdown: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Success by object: factor -> group -> summary
    (:func:`meta_rl.evaluation.breakdown.success_breakdown`; empty when the tasks have no
    shape, size, mass or friction)."""
    reference: str | None = None
    """The method :attr:`vs_reference` compares against (None: no comparison)."""
    vs_reference: dict[str, list[Summary]] = field(default_factory=dict)
    """Per metric and episode k: this method minus :attr:`reference`, trial by trial (the
    protocol gives both the same tasks, seeds and initial states), bootstrapped like the
    episodes (:func:`attach_paired_differences`). Much tighter than comparing the two
    methods' own intervals, because a hard task is hard for both."""

    @property
    def seeds_identical(self) -> bool:
        """True when every seed of every task gave the same returns (deterministic resets and
        actions): the S seeds then add no information, and the intervals are over tasks."""
        returns = self.results.by_task_and_seed("return")
        return bool(np.allclose(returns, returns[:, :1], rtol=0.0, atol=1e-9))

    @property
    def distinct_trials(self) -> int:
        """Trials that differ: the number of tasks when the seeds were identical."""
        if self.seeds_identical:
            return int(self.results.task_index.max()) + 1
        return self.results.num_trials

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "physics_errors": self.results.physics_errors,
            "seeds_identical": self.seeds_identical,
            "distinct_trials": self.distinct_trials,
        }
        for metric, summaries in self.curves.items():
            out[metric] = _per_episode(summaries)
        out["gain"] = {metric: g.to_dict() for metric, g in self.gains.items()}
        out["breakdown"] = self.breakdown
        out["vs_reference"] = (
            {}
            if self.reference is None
            else {
                "method": self.reference,
                **{metric: _per_episode(d) for metric, d in self.vs_reference.items()},
            }
        )
        out["per_trial"] = {
            "task_index": self.results.task_index.tolist(),
            "seed_index": self.results.seed_index.tolist(),
            **{m: self.results.metric(m).tolist() for m in METRICS},
        }
        return out


def _per_episode(summaries: Sequence[Summary]) -> list[dict[str, Any]]:
    """Per-episode summaries as ``eval.json`` lists them: ``{episode, mean, ci_low, ...}``."""
    return [{"episode": k + 1, **s.to_dict()} for k, s in enumerate(summaries)]


def summarize_method(
    name: str,
    kind: str,
    source: str | None,
    results: TrialResults,
    *,
    confidence_level: float,
    num_bootstrap: int,
    bootstrap_seed: int,
) -> MethodResult:
    """Bootstrap every metric of ``results`` per episode index, over tasks then seeds.

    Each metric restarts the generator from ``bootstrap_seed``: all methods are resampled with
    the same indices (paired resampling), and a report is reproducible from its seed. With
    K >= 2 episodes, ``gains`` bootstraps each trial's episode K minus episode 1 the same way.
    """
    curves: dict[str, list[Summary]] = {}
    gains: dict[str, Summary] = {}
    for metric in METRICS:
        values = results.by_task_and_seed(metric)
        curves[metric] = summarize_per_episode(
            values,
            np.random.default_rng(bootstrap_seed),
            confidence_level=confidence_level,
            num_resamples=num_bootstrap,
        )
        if values.shape[-1] >= 2:
            gains[metric] = summarize(
                values[..., -1] - values[..., 0],
                np.random.default_rng(bootstrap_seed),
                confidence_level=confidence_level,
                num_resamples=num_bootstrap,
            )
    return MethodResult(
        name=name, kind=kind, source=source, results=results, curves=curves, gains=gains
    )


def attach_paired_differences(
    methods: Sequence[MethodResult],
    *,
    confidence_level: float,
    num_bootstrap: int,
    bootstrap_seed: int,
) -> MethodResult | None:
    """Compare every method with the first of kind ``agent`` (the reference), in place.

    Sets each other method's :attr:`MethodResult.reference` and
    :attr:`~MethodResult.vs_reference`: per metric, the per-episode summaries of its trials
    minus the reference's same trials (tasks, then seeds, resampled with the generator
    restarted from ``bootstrap_seed``, as the curves are). Returns the reference (None, and
    nothing compared, when no method is an agent).
    """
    reference = next((m for m in methods if m.kind == "agent"), None)
    if reference is None:
        return None
    theirs_by_metric = {metric: reference.results.by_task_and_seed(metric) for metric in METRICS}
    for method in methods:
        if method is reference:
            continue
        diffs: dict[str, list[Summary]] = {}
        for metric, theirs in theirs_by_metric.items():
            mine = method.results.by_task_and_seed(metric)
            if mine.shape != theirs.shape:
                raise ValueError(
                    f"paired differences: {method.name!r} has trials {mine.shape} (tasks, seeds, "
                    f"episodes), {reference.name!r} {theirs.shape}; both need the same protocol"
                )
            diffs[metric] = summarize_per_episode(
                mine - theirs,
                np.random.default_rng(bootstrap_seed),
                confidence_level=confidence_level,
                num_resamples=num_bootstrap,
            )
        method.reference, method.vs_reference = reference.name, diffs
    return reference


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


@dataclass
class EvalReport:
    """Everything one evaluation produced; :meth:`to_dict` is the content of ``eval.json``."""

    env_id: str
    split: str
    checkpoint: str | None
    tasks: list[Any]
    methods: list[MethodResult]
    protocol: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.methods)
        raise KeyError(f"method {name!r} was not evaluated; evaluated: {names}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "env_id": self.env_id,
            "split": self.split,
            "checkpoint": self.checkpoint,
            "protocol": _plain(self.protocol),
            "tasks": [
                {
                    "index": i,
                    "object": describe_task(t),
                    "description": describe_object(t),
                    "task": _plain(t),
                }
                for i, t in enumerate(self.tasks)
            ],
            "methods": {m.name: m.to_dict() for m in self.methods},
            "files": _plain(self.files),
            "config": _plain(self.config),
        }

    def write_json(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out


def load_eval_json(path: str | Path) -> dict[str, Any]:
    """Read an ``eval.json`` back, checking its schema version."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path}: not an eval.json of schema version {SCHEMA_VERSION} "
            f"(got {data.get('schema_version') if isinstance(data, dict) else type(data)})"
        )
    return data


def _cell(s: Summary, digits: int, sign: str = "") -> str:
    return f"{s.mean:{sign}.{digits}f} [{s.ci_low:{sign}.{digits}f}, {s.ci_high:{sign}.{digits}f}]"


def trials_text(methods: Sequence[MethodResult], num_tasks: int, num_seeds: int) -> str:
    """``"8 tasks x 3 seeds"``, saying so when the seeds gave identical trials for every method
    (an env whose resets ignore the seed, deterministic actions): then only the tasks differ."""
    text = f"{num_tasks} tasks x {num_seeds} seeds"
    if num_seeds > 1 and methods and all(m.seeds_identical for m in methods):
        text += f" (identical seeds: {num_tasks} distinct trials)"
    return text


def identical_seeds_note(methods: Sequence[MethodResult], num_tasks: int, num_seeds: int) -> str:
    """A markdown note naming the methods whose seeds gave identical trials (empty if none)."""
    same = [m.name for m in methods if m.seeds_identical]
    if num_seeds < 2 or not same:
        return ""
    return (
        f"\nThe {num_seeds} seeds gave identical trials for {', '.join(same)}: "
        f"{num_tasks} distinct trials, not {num_tasks * num_seeds} (the env's resets ignore "
        "the seed, or nothing random is left); their intervals are over tasks only.\n"
    )


def markdown_table(
    methods: Sequence[MethodResult], *, confidence_level: float = 0.95, title: str = ""
) -> str:
    """Markdown tables of success rate and mean return per episode k: mean [CI low, CI high],
    then the IQM at the first and last episode and (K >= 2) the paired gain, episode K minus
    episode 1, with its interval; then, when methods were compared with a reference
    (:func:`attach_paired_differences`), their paired success differences per episode."""
    if not methods:
        raise ValueError("markdown_table: no methods to tabulate")
    k = len(methods[0].curves["success"])
    pct = round(confidence_level * 100)
    gain_head = f" gain k={k} - k=1 |" if k >= 2 else ""
    lines = [f"## {title}", ""] if title else []
    for metric, label, digits in (("success", "Success rate", 2), ("return", "Mean return", 1)):
        head = " | ".join(f"k={i}" for i in range(1, k + 1))
        lines += [
            f"**{label}** per episode k of the trial, mean [{pct}% bootstrap CI]",
            "",
            f"| method | {head} | IQM k=1 | IQM k={k} |{gain_head}",
            "|---" * (k + 3 + (k >= 2)) + "|",
        ]
        for m in methods:
            cells = " | ".join(_cell(s, digits) for s in m.curves[metric])
            first, last = m.curves[metric][0], m.curves[metric][-1]
            row = f"| {m.name} | {cells} | {first.iqm:.{digits}f} | {last.iqm:.{digits}f} |"
            if k >= 2:
                row += f" {_cell(m.gains[metric], digits, '+')} |"
            lines.append(row)
        lines.append("")
    compared = [m for m in methods if m.reference is not None]
    if compared:
        ref = compared[0].reference
        head = " | ".join(f"k={i}" for i in range(1, k + 1))
        lines += [
            f"**Success rate, paired difference to {ref}**: each method's trials minus "
            f"{ref}'s on the same tasks, seeds and initial states, mean [{pct}% bootstrap CI]",
            "",
            f"| method | {head} |",
            "|---" * (k + 1) + "|",
        ]
        for m in compared:
            cells = " | ".join(_cell(d, 3, "+") for d in m.vs_reference["success"])
            lines.append(f"| {m.name} - {ref} | {cells} |")
        lines.append("")
    return "\n".join(lines)
