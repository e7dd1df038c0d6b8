"""Ablations of the MAML integration: train the full agent and its ablations with one budget,
then compare them on held-out tasks.

:func:`bench_ablations` trains each of ``configs/ablations/<name>.yaml`` (``full``,
``context_only``, ``maml_only``) with the same budget and tabulates held-out success and return
per episode of a trial (:func:`ablation_table`, also written as ``ablations.md``); given an
evaluation config it then evaluates every trained agent and its zero-shot control under one
protocol (:func:`evaluate_ablations`: the same M held-out tasks, bootstrap intervals, the table
in ``eval/eval.md``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.report import EvalReport
from meta_rl.logging import read_metrics
from meta_rl.training.benchmark import exit_with_parent, short_run_config, timed_train

__all__ = [
    "ABLATION_CONFIGS",
    "ablation_table",
    "bench_ablations",
    "evaluate_ablations",
    "paired_table",
    "pool_paired_differences",
    "pool_training_seeds",
    "seeds_table",
]

ABLATION_CONFIGS: dict[str, str] = {
    "full": "ablations/full.yaml",
    "context_only": "ablations/context_only.yaml",
    "maml_only": "ablations/maml_only.yaml",
}


def _final_eval(run_dir: Path) -> dict[str, Any]:
    """Held-out success and return per episode of a trial at the run's last evaluation."""
    records = [r for r in read_metrics(run_dir) if "adapt/return_ep1" in r]
    if not records:
        raise ValueError(f"run {str(run_dir)!r} logged no held-out evaluation")
    last = records[-1]
    k = max(int(key.removeprefix("adapt/return_ep")) for key in last if "adapt/return_ep" in key)
    return {
        "iteration": int(last["iteration"]),
        "env_steps": int(last["env_steps"]),
        "success": [float(last[f"adapt/success_ep{i}"]) for i in range(1, k + 1)],
        "return": [float(last[f"adapt/return_ep{i}"]) for i in range(1, k + 1)],
        "first_eval_return": [float(records[0][f"adapt/return_ep{i}"]) for i in range(1, k + 1)],
    }


def ablation_table(results: dict[str, dict[str, Any]]) -> str:
    """A markdown table: held-out success and return of each episode of a trial per ablation."""
    k = max(len(r["success"]) for r in results.values())
    head = (
        "| agent | env steps | "
        + " | ".join(f"success ep{i}" for i in range(1, k + 1))
        + " | "
        + " | ".join(f"return ep{i}" for i in range(1, k + 1))
        + " | wall s |"
    )
    lines = [head, "|" + " --- |" * (2 * k + 3)]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['env_steps']} | "
            + " | ".join(f"{v:.2f}" for v in r["success"])
            + " | "
            + " | ".join(f"{v:.1f}" for v in r["return"])
            + f" | {r['wall_s']:.0f} |"
        )
    return "\n".join(lines)


def bench_ablations(
    out_dir: Path,
    *,
    ablations: Sequence[str] = tuple(ABLATION_CONFIGS),
    iterations: int = 30,
    eval_every: int = 10,
    config_dir: Path = Path("configs"),
    overrides: Sequence[str] = (),
    eval_cfg: EvalConfig | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Train each ablation with the same budget and overrides; compare on held-out tasks.

    Returns ``{"ablations": {name: final evaluation + wall_s + run_dir}, "table": markdown}``
    and writes ``ablations.json`` and ``ablations.md`` under ``out_dir``. Every run uses the
    same seed, so the held-out tasks are the same for all. With ``eval_cfg`` the trained agents
    are then evaluated together (:func:`evaluate_ablations`, into ``out_dir/eval``) and the
    summary gains ``"eval_table"`` (its markdown) and ``"eval"`` (per method: success and return
    per episode with their intervals), ``"paired"`` and ``"paired_table"``
    (:func:`ablation_pairs`: the first agent against each other one, and each agent against its
    controls, per task; also written to ``paired.md``).

    ``jobs`` > 1 trains that many agents at once, each in its own process (spawned, so the
    trainings share nothing); every run's result is the same as when trained alone, only its
    ``wall_s`` then includes the contention for the cores. The workers end with this process,
    even when it is killed.
    """
    unknown = [a for a in ablations if a not in ABLATION_CONFIGS]
    if unknown:
        raise ValueError(f"ablations: got {unknown[0]!r}; allowed: {', '.join(ABLATION_CONFIGS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: got {jobs!r}; allowed: an integer >= 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = {
        name: short_run_config(
            Path(config_dir) / ABLATION_CONFIGS[name],
            f"ablation-{name}",
            iterations,
            eval_every,
            out_dir,
            ["logging.progress_bar=false", *overrides],
        )
        for name in ablations
    }
    if jobs == 1:
        trained = [timed_train(cfg) for cfg in configs.values()]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=exit_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            trained = list(pool.map(timed_train, configs.values()))
    results: dict[str, dict[str, Any]] = {}
    for name, (run_dir, wall) in zip(configs, trained, strict=True):
        results[name] = {**_final_eval(run_dir), "wall_s": wall, "run_dir": str(run_dir)}
    table = ablation_table(results)
    summary: dict[str, Any] = {
        "ablations": results,
        "table": table,
        "iterations": iterations,
        "overrides": list(overrides),
        "jobs": jobs,
    }
    if eval_cfg is not None:
        report = evaluate_ablations(
            {name: Path(r["run_dir"]) for name, r in results.items()}, eval_cfg, out_dir / "eval"
        )
        summary["eval_table"] = (out_dir / "eval" / "eval.md").read_text()
        summary["eval"] = {
            m.name: {metric: [c.to_dict() for c in m.curves[metric]] for metric in m.curves}
            for m in report.methods
        }
        pairs = ablation_pairs(list(results), [m.name for m in report.methods])
        paired = pool_paired_differences(report, pairs)
        table_md = paired_table(paired)
        summary["paired"] = paired
        summary["paired_table"] = table_md
        (out_dir / "paired.md").write_text(table_md + "\n")
    (out_dir / "ablations.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "ablations.md").write_text(table + "\n")
    return summary


def ablation_pairs(
    names: list[str], evaluated: Sequence[str]
) -> dict[str, tuple[list[str], list[str]]]:
    """The paired comparisons of one ablation evaluation: the first agent (the full one) against
    each other agent, then every agent against each of its controls that was ``evaluated``
    (``"<name> zero-shot"`` and the like), labelled ``"a - b"``."""
    first, *others = names
    pairs = {f"{first} - {other}": ([first], [other]) for other in others}
    for name in names:
        for control in evaluated:
            if control.startswith(f"{name} "):
                pairs[f"{name} - {control}"] = ([name], [control])
    return pairs


def evaluate_ablations(
    run_dirs: dict[str, Path], eval_cfg: EvalConfig, out_dir: Path
) -> EvalReport:
    """Every trained agent (its last checkpoint: ``best.pt`` was chosen on held-out tasks, so it
    would flatter the agents) and the controls ``eval_cfg`` asks for (its zero-shot control;
    ``no_maml``, ``no_refine``: :func:`~meta_rl.evaluation.runner.control_methods`, named
    ``<name> <control>``), under one protocol: the same held-out
    tasks, seeds and bootstrap, one table and one plot.

    ``run_dirs`` maps a name to a training run directory; all runs must share the env id and its
    arguments (else ``ValueError``). The control ``<name> zero-shot`` is the same networks with
    adaptation off (:meth:`~meta_rl.agent.meta_agent.MetaAgent.zero_shot`), so each row pair
    isolates what
    the trial's earlier episodes contribute. Only the first agent is filmed.
    """
    from meta_rl.checkpoint import locate
    from meta_rl.evaluation.runner import (
        Method,
        clean_env_kwargs,
        control_methods,
        evaluate_methods,
        family_of,
        load_meta_agent,
        with_training_episode_steps,
    )

    if not run_dirs:
        raise ValueError("run_dirs: need at least one trained run to evaluate")
    methods: list[Method] = []
    env: tuple[str, dict[str, Any]] | None = None
    cfg = eval_cfg
    for i, (name, run_dir) in enumerate(run_dirs.items()):
        file = locate(run_dir, prefer="latest").file
        agent = load_meta_agent(file, eval_cfg.device)
        family_of(agent)  # a user's family: its env.module registers the id first
        this = (agent.env_id, clean_env_kwargs(agent.env_kwargs))
        if env is None:
            env, cfg = this, with_training_episode_steps(eval_cfg, agent)
        elif this != env:
            raise ValueError(
                f"run_dirs: {name!r} was trained on {this[0]!r} with {this[1]}, the first run on "
                f"{env[0]!r} with {env[1]}; compare runs of the same environment"
            )
        kind = "agent" if i == 0 else "ablation"
        methods.append(Method(name, agent, kind=kind, source=str(file)))
        methods += control_methods(agent, eval_cfg, str(file), prefix=f"{name} ")
    assert env is not None
    return evaluate_methods(methods, env_id=env[0], cfg=cfg, out_dir=out_dir, env_kwargs=env[1])


def pool_training_seeds(
    report: EvalReport,
    groups: dict[str, list[str]],
    *,
    confidence_level: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Pool the runs of one configuration trained with different seeds.

    ``groups`` maps a configuration's name to the names of its evaluated methods in ``report``
    (one per training seed; all on the same held-out tasks). For each configuration the success
    of every episode k and the gain (episode K minus episode 1) are averaged over the env seeds
    of each task, then summarised over the ``(num_tasks, num_training_seeds)`` array: the mean
    over tasks and training seeds and a two-stage bootstrap interval (tasks, then training seeds
    within a task; :func:`~meta_rl.evaluation.stats.hierarchical_bootstrap_ci`), beside each
    seed's own mean. With a handful of seeds the interval is mostly the tasks' spread; the
    per-seed means show the seeds' own.

    Raises ``ValueError`` for an empty group, or a group whose methods saw other tasks.
    """
    from meta_rl.evaluation.stats import summarize, summarize_per_episode

    rng = np.random.default_rng(seed)
    pooled: dict[str, dict[str, Any]] = {}
    for name, members in groups.items():
        if not members:
            raise ValueError(f"groups: {name!r} names no evaluated method")
        per_task = []
        for member in members:
            by = report.method(member).results.by_task_and_seed("success")
            per_task.append(by.mean(axis=1))  # (num_tasks, K): over env seeds
        shapes = {a.shape for a in per_task}
        if len(shapes) != 1:
            raise ValueError(
                f"groups: the runs of {name!r} were evaluated on different tasks ({shapes}); "
                "pool runs of one evaluation"
            )
        x = np.stack(per_task, axis=1)  # (num_tasks, seeds, K)
        level, resamples = confidence_level, num_resamples
        gains = x[..., -1] - x[..., 0]  # (num_tasks, seeds)
        curve = summarize_per_episode(x, rng, confidence_level=level, num_resamples=resamples)
        gain = summarize(gains, rng, confidence_level=level, num_resamples=resamples)
        pooled[name] = {
            "members": list(members),
            "seeds": len(members),
            "success": [s.to_dict() for s in curve],
            "gain": gain.to_dict(),
            "per_seed_success": x.mean(axis=0).T.tolist(),  # (K, seeds)
            "per_seed_gain": gains.mean(axis=0).tolist(),
        }
    return pooled


def pool_paired_differences(
    report: EvalReport,
    pairs: dict[str, tuple[list[str], list[str]]],
    *,
    confidence_level: float = 0.95,
    num_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Paired differences of two configurations over the same tasks and training seeds.

    ``pairs`` maps a label to ``(members of A, members of B)``: the evaluated methods of each
    configuration, one per training seed, in the same order (seed i of A against seed i of B:
    the same networks with one part switched off, or two recipes trained with the same seed).
    For each episode k the success of A minus B per task and seed (averaged over env seeds) is
    summarised over the ``(num_tasks, num_training_seeds)`` array with the two-stage bootstrap,
    beside each seed's mean difference.

    Raises ``ValueError`` for pairs of unequal length or methods that saw other tasks.
    """
    from meta_rl.evaluation.stats import summarize_per_episode

    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for label, (a, b) in pairs.items():
        if not a or len(a) != len(b):
            raise ValueError(
                f"pairs: {label!r} pairs {len(a)} runs with {len(b)}; allowed: the same "
                "number, at least one"
            )
        diffs = []
        for left, right in zip(a, b, strict=True):
            x = report.method(left).results.by_task_and_seed("success").mean(axis=1)
            y = report.method(right).results.by_task_and_seed("success").mean(axis=1)
            if x.shape != y.shape:
                raise ValueError(
                    f"pairs: {left!r} and {right!r} were evaluated on different tasks "
                    f"({x.shape}, {y.shape}); pair methods of one evaluation"
                )
            diffs.append(x - y)
        d = np.stack(diffs, axis=1)  # (num_tasks, seeds, K)
        curve = summarize_per_episode(
            d, rng, confidence_level=confidence_level, num_resamples=num_resamples
        )
        out[label] = {
            "a": list(a),
            "b": list(b),
            "difference": [s.to_dict() for s in curve],
            "per_seed_difference": d.mean(axis=0).T.tolist(),  # (K, seeds)
        }
    return out


def paired_table(paired: dict[str, dict[str, Any]]) -> str:
    """A markdown table of :func:`pool_paired_differences`: per pair, the pooled difference of
    each episode's success with its interval (each seed's in brackets)."""
    k = max(len(p["difference"]) for p in paired.values())
    lines = [
        "| paired difference | " + " | ".join(f"ep{i}" for i in range(1, k + 1)) + " |",
        "|" + " --- |" * (k + 1),
    ]
    for label, p in paired.items():
        cells = []
        for i, s in enumerate(p["difference"]):
            each = ", ".join(f"{v:+.2f}" for v in p["per_seed_difference"][i])
            cells.append(f"{s['mean']:+.2f} [{s['ci_low']:+.2f}, {s['ci_high']:+.2f}] ({each})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seeds_table(pooled: dict[str, dict[str, Any]]) -> str:
    """A markdown table of :func:`pool_training_seeds`: per configuration, the seed count, the
    pooled success of each episode with its interval (each seed's in brackets) and the gain."""
    k = max(len(p["success"]) for p in pooled.values())
    lines = [
        "| configuration | training seeds | "
        + " | ".join(f"success ep{i}" for i in range(1, k + 1))
        + f" | gain ep{k} - ep1 |",
        "|" + " --- |" * (k + 3),
    ]

    def cell(s: dict[str, Any], seeds: list[float], sign: str = "") -> str:
        each = ", ".join(f"{v:{sign}.2f}" for v in seeds)
        return f"{s['mean']:{sign}.2f} [{s['ci_low']:{sign}.2f}, {s['ci_high']:{sign}.2f}] ({each})"

    for name, p in pooled.items():
        eps = [cell(s, p["per_seed_success"][i]) for i, s in enumerate(p["success"])]
        lines.append(
            f"| {name} | {p['seeds']} | "
            + " | ".join(eps)
            + f" | {cell(p['gain'], p['per_seed_gain'], '+')} |"
        )
    return "\n".join(lines)
