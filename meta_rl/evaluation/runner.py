"""One evaluation end to end: tasks, trials of every method, statistics, files, videos, W&B.

:func:`evaluate_methods` evaluates any :class:`AdaptiveAgent`\\ s under the same protocol;
:func:`evaluate_checkpoint` builds the methods from a meta-RL checkpoint (the agent, its
zero-shot ablation, the SB3 baselines) and calls it. Outputs go to ``<run_dir>/eval/`` (or
``out_dir``): ``eval.json``, ``eval.md``, ``adaptation_curve.png``, ``return_curve.png`` and
``videos/*.mp4``; the W&B run goes to ``<run_dir>/wandb/``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from meta_rl.checkpoint import locate
from meta_rl.config import to_dict
from meta_rl.evaluation.breakdown import (
    breakdown_table,
    plot_breakdown,
    success_breakdown,
    task_groups,
    train_ranges,
)
from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.plots import plot_adaptation_curve
from meta_rl.evaluation.protocol import (
    AdaptiveAgent,
    make_eval_env,
    run_trials,
    sample_tasks,
    set_env_tasks,
    torch_threads,
)
from meta_rl.evaluation.report import (
    EvalReport,
    MethodResult,
    attach_paired_differences,
    identical_seeds_note,
    markdown_table,
    summarize_method,
    trials_text,
)
from meta_rl.evaluation.video import describe_task, render_adaptation_video
from meta_rl.evaluation.wandb_log import log_evaluation
from meta_rl.task_envs.family import (
    find_task_env,
    make_env,
    register_family,
    resolve_episode_steps,
)
from meta_rl.task_envs.vector import repeat_per_rollout

__all__ = [
    "DEFAULT_WANDB_PROJECT",
    "Method",
    "clean_env_kwargs",
    "control_methods",
    "control_names",
    "evaluate_checkpoint",
    "evaluate_methods",
    "family_of",
    "load_meta_agent",
    "render_checkpoint_video",
    "with_training_episode_steps",
]

DEFAULT_WANDB_PROJECT = "metarl-arms"
# Env arguments that evaluation sets itself: never carried over from a training config.
_EVAL_OWNED_KWARGS = ("split", "render_mode")


@dataclass
class Method:
    """An agent to evaluate, with the env arguments it needs (e.g. ``reveal_task`` for the
    oracle) on top of the shared ones; ``deterministic`` None takes the config's."""

    name: str
    agent: AdaptiveAgent
    kind: str = "other"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    deterministic: bool | None = None
    source: str | None = None


def clean_env_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A training run's env arguments without those that evaluation sets itself."""
    return {k: v for k, v in kwargs.items() if k not in _EVAL_OWNED_KWARGS}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "task"


def evaluate_methods(
    methods: Sequence[Method],
    *,
    env_id: str,
    cfg: EvalConfig,
    out_dir: str | Path,
    env_kwargs: Mapping[str, Any] | None = None,
    checkpoint: str | None = None,
    wandb_root: str | Path | None = None,
    wandb_project: str = DEFAULT_WANDB_PROJECT,
) -> EvalReport:
    """Evaluate ``methods`` on the same M tasks x S seeds x K episodes; write every output.

    The first method is the one filmed. Raises ``ValueError`` for an empty method list,
    duplicate names or a split without tasks.
    """
    with torch_threads(cfg.torch_threads):
        return _evaluate_methods(
            methods,
            env_id=env_id,
            cfg=cfg,
            out_dir=out_dir,
            env_kwargs=env_kwargs,
            checkpoint=checkpoint,
            wandb_root=wandb_root,
            wandb_project=wandb_project,
        )


def _evaluate_methods(
    methods: Sequence[Method],
    *,
    env_id: str,
    cfg: EvalConfig,
    out_dir: str | Path,
    env_kwargs: Mapping[str, Any] | None,
    checkpoint: str | None,
    wandb_root: str | Path | None,
    wandb_project: str,
) -> EvalReport:
    if not methods:
        raise ValueError("methods: need at least one method to evaluate")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"methods: names must be unique, got {names}")
    out = Path(out_dir).resolve()
    base_kwargs = clean_env_kwargs(env_kwargs or {})
    # env_id is what the report records (maybe module:id); the bare id makes the envs.
    bare_id = register_family(env_id)
    if cfg.episode_steps is not None:
        resolve_episode_steps(bare_id, cfg.episode_steps, "episode_steps")
    tasks = sample_tasks(
        bare_id, cfg.num_tasks, cfg.split, np.random.default_rng(cfg.task_seed), base_kwargs
    )
    trial_tasks = tasks * cfg.num_seeds
    num_trials = len(trial_tasks)
    split_kwargs = {**base_kwargs, "split": cfg.split}
    groups = task_groups(
        tasks, _train_ranges(bare_id, split_kwargs), _train_ranges(bare_id, split_kwargs, "test")
    )

    summaries = []
    for method in methods:
        kwargs = {**base_kwargs, **clean_env_kwargs(method.env_kwargs), "split": cfg.split}
        # An agent that adapts on several parallel rollouts of a task gets them: each trial's
        # task in that many consecutive sub-envs, its metrics the means over them.
        rollouts = int(getattr(method.agent, "rollouts_per_task", 1))
        env = make_eval_env(bare_id, num_trials * rollouts, seed=cfg.env_seed, env_kwargs=kwargs)
        try:
            set_env_tasks(env, repeat_per_rollout(trial_tasks, rollouts))
            results = run_trials(
                method.agent,
                env,
                num_tasks=cfg.num_tasks,
                num_seeds=cfg.num_seeds,
                num_episodes=cfg.num_episodes,
                deterministic=cfg.deterministic
                if method.deterministic is None
                else method.deterministic,
                env_seed=cfg.env_seed,
                progress=cfg.progress_bar,
                desc=f"{method.name}: {cfg.num_tasks} tasks x {cfg.num_seeds} seeds",
                episode_steps=cfg.episode_steps,
                rollouts_per_trial=rollouts,
            )
        finally:
            env.close()
        summaries.append(
            summarize_method(
                method.name,
                method.kind,
                method.source,
                results,
                confidence_level=cfg.confidence_level,
                num_bootstrap=cfg.num_bootstrap,
                bootstrap_seed=cfg.bootstrap_seed,
            )
        )
        summaries[-1].breakdown = success_breakdown(results, groups)
    attach_paired_differences(
        summaries,
        confidence_level=cfg.confidence_level,
        num_bootstrap=cfg.num_bootstrap,
        bootstrap_seed=cfg.bootstrap_seed,
    )

    out.mkdir(parents=True, exist_ok=True)
    report = EvalReport(
        env_id=env_id,
        split=cfg.split,
        checkpoint=checkpoint,
        tasks=tasks,
        methods=summaries,
        protocol={
            "num_tasks": cfg.num_tasks,
            "num_seeds": cfg.num_seeds,
            "num_episodes": cfg.num_episodes,
            "num_trials": num_trials,
            "episode_steps": cfg.episode_steps,
            "deterministic": cfg.deterministic,
            "task_seed": cfg.task_seed,
            "env_seed": cfg.env_seed,
            "confidence_level": cfg.confidence_level,
            "num_bootstrap": cfg.num_bootstrap,
            "bootstrap_seed": cfg.bootstrap_seed,
            "env_kwargs": base_kwargs,
        },
        config=to_dict(cfg),
    )
    title = f"{env_id} ({cfg.split} split): {trials_text(summaries, cfg.num_tasks, cfg.num_seeds)}"
    plot_files = (("success", "adaptation_curve.png"), ("return", "return_curve.png"))
    plots = {
        metric: plot_adaptation_curve(
            {m.name: m.curves[metric] for m in summaries},
            out / filename,
            metric=metric,
            title=title,
            confidence_level=cfg.confidence_level,
        )
        for metric, filename in plot_files
    }
    breakdowns = {m.name: m.breakdown for m in summaries}
    by_object = plot_breakdown(breakdowns, out / "success_by_object.png", title=title)
    table_path = out / "eval.md"
    table_path.write_text(
        markdown_table(summaries, confidence_level=cfg.confidence_level, title=title)
        + identical_seeds_note(summaries, cfg.num_tasks, cfg.num_seeds)
        + "\n"
        + breakdown_table(breakdowns)
    )
    plot_names = {metric: p.name for metric, p in plots.items()}
    if by_object is not None:
        plot_names["by_object"] = by_object.name
    report.files = {
        "out_dir": str(out),
        "eval_json": "eval.json",
        "table": table_path.name,
        "plots": plot_names,
        "videos": [],
        "videos_skipped": [],
        "wandb_run": None,
    }
    # The results are on disk before any video is rendered: a video never costs them.
    report.write_json(out / "eval.json")

    videos: list[tuple[str, Path]] = []
    video_info: list[dict[str, Any]] = []
    filmed = methods[0]
    num_videos = min(cfg.num_videos, len(tasks))
    video_kwargs = {**base_kwargs, **clean_env_kwargs(filmed.env_kwargs), "split": cfg.split}
    skipped: list[dict[str, Any]] = []
    filmed_tasks = _filmed_tasks(summaries[0], len(tasks), num_videos, cfg.video_tasks)
    for i in tqdm(filmed_tasks, desc="videos", unit="task", disable=not cfg.progress_bar):
        obj = describe_task(tasks[i])
        if skipped:  # the env could not film the first one: the others would fail alike
            skipped.append({"task_index": i, "error": skipped[0]["error"]})
            continue
        try:
            path, success = render_adaptation_video(
                filmed.agent,
                bare_id,
                tasks[i],
                out / "videos" / f"task{i:02d}_{_slug(obj)}_ep1_vs_ep{cfg.num_episodes}.mp4",
                num_episodes=cfg.num_episodes,
                env_kwargs=video_kwargs,
                deterministic=cfg.deterministic
                if filmed.deterministic is None
                else filmed.deterministic,
                seed=cfg.env_seed + i,
                fps=cfg.video_fps,
                camera_name=cfg.camera_name,
                size=cfg.video_size,
                episode_steps=cfg.episode_steps,
                title=filmed.name,
            )
        except Exception as e:  # any failure to film must not cost the results
            reason = f"{type(e).__name__}: {e}"
            warnings.warn(
                f"video of task {i} skipped ({reason}); eval.json holds the results. Set "
                "num_videos=0 to skip videos, or give the env render_mode='rgb_array' support",
                stacklevel=2,
            )
            skipped.append({"task_index": i, "error": reason})
            continue
        caption = (
            f"{filmed.name}, task {i} ({obj}): episode 1 (success {success[0]:.0f}) vs episode "
            f"{cfg.num_episodes} (success {success[-1]:.0f})"
        )
        videos.append((caption, path))
        video_info.append({"task_index": i, "object": obj, "path": path.name, "success": success})

    report.files["videos"] = [{**v, "path": f"videos/{v['path']}"} for v in video_info]
    report.files["videos_skipped"] = skipped
    report.write_json(out / "eval.json")
    wandb_run = log_evaluation(
        report,
        run_dir=wandb_root if wandb_root is not None else out,
        project=wandb_project,
        mode=cfg.wandb_mode,
        plots=plots,
        videos=videos,
    )
    if wandb_run is not None:
        report.files["wandb_run"] = str(wandb_run.resolve())
        report.write_json(out / "eval.json")
    return report


def _train_ranges(
    env_id: str, env_kwargs: Mapping[str, Any], split: str = "train"
) -> dict[str, tuple[float, float]]:
    """A split's size, mass and friction ranges (the train split's by default), when the family
    states them."""
    env = make_env(env_id, **env_kwargs)
    try:
        return train_ranges(find_task_env(env, env_id).task_distribution, split)
    finally:
        env.close()


# --------------------------------------------------------------------------------------------
# Checkpoints of the meta-RL agent


def load_meta_agent(checkpoint_file: Path, device: str, *, use_context: bool = True) -> Any:
    """A :class:`~meta_rl.agent.meta_agent.MetaAgent` from a checkpoint file, context as
    trained (``use_context``) or off. An agent trained with ``encoder.use_context: false`` never
    runs its encoder: its policy only ever saw the prior belief.

    A checkpoint whose networks do not fit this version of the agent's code is refused with a
    ``ValueError`` (not a traceback from inside ``load_state_dict``).
    """
    from meta_rl.agent.meta_agent import MetaAgent

    try:
        agent = MetaAgent.from_checkpoint(checkpoint_file, device=device)
    except (RuntimeError, KeyError) as e:
        raise ValueError(
            f"checkpoint {str(checkpoint_file)!r} cannot be loaded by this version of the agent "
            f"(was it written by older code?): {e}"
        ) from e
    agent.use_context = use_context and agent.config.encoder.use_context
    return agent


def family_of(agent: Any) -> str:
    """Register the env family a checkpoint's agent was trained on (its ``env.module`` or
    ``module:id``, from the run's config) and return the bare registered id."""
    module = getattr(getattr(getattr(agent, "config", None), "env", None), "module", None)
    return register_family(agent.env_id, module)


def with_training_episode_steps(cfg: EvalConfig, agent: Any) -> EvalConfig:
    """``cfg`` with the episode length the agent was trained with, unless one is set."""
    if cfg.episode_steps is not None:
        return cfg
    steps = getattr(getattr(getattr(agent, "config", None), "env", None), "episode_steps", None)
    return cfg.replace(episode_steps=steps) if isinstance(steps, int) else cfg


def evaluate_checkpoint(
    checkpoint: str | Path,
    cfg: EvalConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    wandb_root: str | Path | None = None,
) -> EvalReport:
    """Evaluate a meta-RL checkpoint and the configured baselines under one protocol.

    Results go to ``out_dir`` (default ``<run_dir>/eval``), the W&B run to ``wandb_root``
    (default the checkpoint's run directory, beside its training run).

    Methods: ``meta-agent`` (adapting), ``zero-shot`` (same agent, context encoder off) when
    ``cfg.zero_shot``, ``no-maml`` (same agent, MAML's inner loop off) when ``cfg.no_maml``,
    ``no-refine`` (same agent, the particles' refinement off) when ``cfg.no_refine``,
    every SB3 baseline in ``cfg.baselines``, and ``scratch-ppo`` when ``cfg.scratch_ppo``.
    Raises ``FileNotFoundError`` for a missing checkpoint or baseline and
    ``ValueError`` for one of another environment than ``cfg.env_id`` (or the agent's).
    """
    cfg = cfg or EvalConfig()
    found = locate(checkpoint)
    file = found.file
    agent = load_meta_agent(file, cfg.device)
    env_id: str = agent.env_id
    if cfg.env_id is not None and cfg.env_id != env_id:
        raise ValueError(
            f"env_id: checkpoint {str(file)!r} was trained on {env_id!r}, but the evaluation "
            f"asks for {cfg.env_id!r}; pass a checkpoint of {cfg.env_id!r} or set env_id: null"
        )
    # The family's module, recorded in the run, registers a user's env id again.
    bare_id = family_of(agent)
    env_kwargs = clean_env_kwargs(agent.env_kwargs)
    cfg = with_training_episode_steps(cfg, agent)
    run_dir = found.run_dir
    methods = [Method("meta-agent", agent, kind="agent", source=str(file))]
    methods += control_methods(agent, cfg, str(file))
    from meta_rl.baselines.train import load_baseline

    for path in cfg.baselines:
        baseline = load_baseline(path, device=cfg.device, seed=cfg.env_seed)
        if baseline.env_id != env_id:
            raise ValueError(
                f"baselines: {path!r} was trained on {baseline.env_id!r}, the checkpoint on "
                f"{env_id!r}; evaluate baselines of the same environment"
            )
        name = baseline.name
        suffix = 2
        while any(m.name == name for m in methods):
            name, suffix = f"{baseline.name}-{suffix}", suffix + 1
        methods.append(
            Method(
                name,
                baseline.agent,
                kind=baseline.kind,
                env_kwargs=baseline.env_kwargs,
                source=baseline.source,
            )
        )
    if cfg.scratch_ppo:
        methods.append(_scratch_method(bare_id, env_kwargs, cfg))
    project = str(
        cfg.wandb_project
        or getattr(getattr(agent.config, "logging", None), "wandb_project", None)
        or DEFAULT_WANDB_PROJECT
    )
    return evaluate_methods(
        methods,
        env_id=env_id,
        cfg=cfg,
        out_dir=Path(out_dir) if out_dir is not None else run_dir / "eval",
        env_kwargs=env_kwargs,
        checkpoint=str(file),
        wandb_root=wandb_root if wandb_root is not None else run_dir,
        wandb_project=project,
    )


def control_names(cfg: EvalConfig) -> list[str]:
    """The names of the controls ``cfg`` asks for, in the order :func:`control_methods` builds
    them: ``zero-shot``, ``no-maml``, ``no-refine``, ``refine-every-<k>``."""
    return [
        name
        for name, on in (
            ("zero-shot", cfg.zero_shot),
            ("no-maml", cfg.no_maml),
            ("no-refine", cfg.no_refine),
            (f"refine-every-{cfg.refine_every}", cfg.refine_every is not None),
        )
        if on
    ]


def control_methods(agent: Any, cfg: EvalConfig, source: str, prefix: str = "") -> list[Method]:
    """The controls of one meta-agent that ``cfg`` asks for (:func:`control_names`), each the
    same networks with one part of adaptation changed: ``zero-shot`` (``cfg.zero_shot``: no
    context), ``no-maml`` (``cfg.no_maml``: no inner step), ``no-refine`` (``cfg.no_refine``: no
    refinement of the particles) and ``refine-every-<k>`` (``cfg.refine_every``: refinement also
    every k steps within each episode), named ``prefix`` + the control. Raises ``ValueError``
    for a control the agent lacks the part of."""
    out = []
    if cfg.zero_shot:
        out.append(Method(f"{prefix}zero-shot", agent.zero_shot(), kind="zero_shot", source=source))
    if cfg.no_maml:
        if agent.networks.maml is None:
            raise ValueError(
                f"no_maml: checkpoint {source!r} was trained without MAML (maml.enabled "
                "false); set no_maml: false"
            )
        out.append(Method(f"{prefix}no-maml", agent.without_maml(), kind="ablation", source=source))
    if cfg.no_refine:
        if agent.refine_steps < 1:
            raise ValueError(
                f"no_refine: checkpoint {source!r} does not refine its particles "
                "(privileged.refine_steps 0); set no_refine: false"
            )
        out.append(
            Method(f"{prefix}no-refine", agent.without_refinement(), kind="ablation", source=source)
        )
    if cfg.refine_every is not None:
        if agent.refine_steps < 1:
            raise ValueError(
                f"refine_every: checkpoint {source!r} does not refine its particles "
                "(privileged.refine_steps 0); set refine_every: null"
            )
        every = agent.with_refine_every(cfg.refine_every)
        name = f"{prefix}refine-every-{cfg.refine_every}"
        out.append(Method(name, every, kind="ablation", source=source))
    return out


def _scratch_method(env_id: str, env_kwargs: Mapping[str, Any], cfg: EvalConfig) -> Method:
    from meta_rl.baselines.agents import ScratchPPOAgent
    from meta_rl.experiment import resolve_device

    probe = gym.make(env_id, **{**env_kwargs, "split": cfg.split})
    try:
        agent = ScratchPPOAgent(
            probe.observation_space,
            probe.action_space,
            cfg.scratch,
            seed=cfg.env_seed,
            device=str(resolve_device(cfg.device)),
        )
    finally:
        probe.close()
    return Method("scratch-ppo", agent, kind="scratch", source="scratch")


def render_checkpoint_video(
    checkpoint: str | Path,
    cfg: EvalConfig | None = None,
    *,
    task_index: int = 0,
    episode: int = 1,
    out: str | Path | None = None,
    zero_shot: bool = False,
) -> tuple[Path, bool]:
    """Film episode ``episode`` of a trial of a checkpoint's agent on task ``task_index``.

    Tasks are sampled exactly as :func:`evaluate_checkpoint` samples them (``cfg.split``,
    ``cfg.task_seed``, ``cfg.num_tasks``), so task ``i`` here is task ``i`` of ``eval.json``.
    The default output is ``<run_dir>/videos/<split>_task<i>_ep<k>.mp4``. Returns the path and
    whether the episode succeeded.
    """
    cfg = cfg or EvalConfig()
    if task_index < 0:
        raise ValueError(f"task_index: got {task_index}; allowed: >= 0")
    if episode < 1:
        raise ValueError(f"episode: got {episode}; allowed: >= 1")
    found = locate(checkpoint)
    file = found.file
    agent = load_meta_agent(file, cfg.device, use_context=not zero_shot)
    env_id: str = agent.env_id
    if cfg.env_id is not None and cfg.env_id != env_id:
        raise ValueError(
            f"env_id: checkpoint {str(file)!r} was trained on {env_id!r}, not {cfg.env_id!r}"
        )
    env_id = family_of(agent)
    env_kwargs = clean_env_kwargs(agent.env_kwargs)
    cfg = with_training_episode_steps(cfg, agent)
    num_tasks = max(cfg.num_tasks, task_index + 1)
    tasks = sample_tasks(
        env_id, num_tasks, cfg.split, np.random.default_rng(cfg.task_seed), env_kwargs
    )
    path = (
        Path(out)
        if out is not None
        else found.run_dir / "videos" / f"{cfg.split}_task{task_index:02d}_ep{episode}.mp4"
    )
    from meta_rl.evaluation.video import render_episode_video

    with torch_threads(cfg.torch_threads):
        return render_episode_video(
            agent,
            env_id,
            tasks[task_index],
            path,
            episode=episode,
            num_episodes=max(cfg.num_episodes, episode),
            env_kwargs={**env_kwargs, "split": cfg.split},
            deterministic=cfg.deterministic,
            seed=cfg.env_seed + task_index,
            fps=cfg.video_fps,
            camera_name=cfg.camera_name,
            size=cfg.video_size,
            episode_steps=cfg.episode_steps,
            title="zero-shot" if zero_shot else "meta-agent",
        )


def _filmed_tasks(summary: MethodResult, num_tasks: int, count: int, choice: str) -> list[int]:
    """The ``count`` task indices to film (``EvalConfig.video_tasks``): the first ones, or
    first those whose trials failed in episode 1 and succeeded in the last episode of
    ``summary`` (any seed's trial), then the first others."""
    picked: list[int] = []
    if choice == "adapted":
        success = summary.results.metric("success")
        for task, row in zip(summary.results.task_index.tolist(), success, strict=True):
            if not row[0] and row[-1] and task not in picked:
                picked.append(int(task))
        picked = sorted(picked)[:count]
    rest = [i for i in range(num_tasks) if i not in picked]
    return picked + rest[: count - len(picked)]
