"""What a sampling student does in the first episode of a trial, and on what evidence (issue 27:
"show that nothing scripted is replayed").

:func:`trace_exploration` runs episode 1 of a trial on each of M held-out tasks and records, at
every step, the action, the task hypothesis the policy read (a student that draws hypotheses:
``privileged.hypotheses`` other than ``mean``), the particle posterior's effective number of
particles (``exp`` of its entropy; with ``hypotheses: particles``) and the reward so far.
:func:`exploration_table` summarises it at a few steps: the spread of actions and hypotheses
across tasks (a replayed tour gives the same action at the same step whatever the task, a
spread near 0) beside the hypothesis' distance to the task's own features and the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from meta_rl.evaluation.protocol import make_eval_env, sample_tasks, set_env_tasks
from meta_rl.task_envs.family import task_features_of
from meta_rl.trial import Step, run_trial

__all__ = [
    "ExplorationTrace",
    "exploration_table",
    "feature_correlations",
    "trace_checkpoint",
    "trace_exploration",
]


@dataclass(frozen=True)
class ExplorationTrace:
    """Episode 1 of M trials, arrays over ``(M, T, ...)``: ``actions`` ``(M, T, A)``,
    ``hypotheses`` ``(M, T, F)`` standardised as the teacher read them (None for an agent that
    draws none), ``features`` ``(M, F)`` the tasks' own, standardised alike (None likewise),
    ``particles`` ``(M, T)`` the effective number of particles after the step's evidence (None
    without a particle posterior), ``reward_so_far`` ``(M, T)``, ``success`` ``(M,)``."""

    actions: np.ndarray
    hypotheses: np.ndarray | None
    features: np.ndarray | None
    particles: np.ndarray | None
    reward_so_far: np.ndarray
    success: np.ndarray


def trace_exploration(
    agent: Any,
    env_id: str,
    *,
    num_tasks: int,
    split: str = "test",
    task_seed: int = 0,
    env_seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    episode_steps: int | None = None,
) -> ExplorationTrace:
    """Episode 1 of a trial (deterministic actions; hypotheses are still drawn) of ``agent``
    (a :class:`~meta_rl.agent.meta_agent.MetaAgent`) on ``num_tasks`` tasks of ``split`` drawn
    with ``task_seed``."""
    kwargs = {**(env_kwargs or {}), "split": split}
    tasks = sample_tasks(env_id, num_tasks, split, np.random.default_rng(task_seed), kwargs)
    env = make_eval_env(env_id, num_tasks, seed=env_seed, env_kwargs=kwargs)
    nets = agent.networks
    actions: list[np.ndarray] = []
    hypotheses: list[np.ndarray] = []
    particles: list[np.ndarray] = []
    rewards: list[np.ndarray] = []

    def act(obs: np.ndarray, deterministic: bool) -> np.ndarray:
        out = agent.step(obs, deterministic)
        drawn = nets.recorded_hypotheses(out.belief)
        if drawn is not None:
            hypotheses.append(drawn.cpu().numpy().copy())
        actions.append(np.asarray(out.env_action).copy())
        return np.asarray(out.env_action)

    def on_step(step: Step) -> None:
        rewards.append(np.asarray(step.reward, dtype=np.float64).copy())
        size = agent.effective_particles()
        if size is not None:
            particles.append(size)

    try:
        set_env_tasks(env, tasks)
        outcome = run_trial(
            env,
            agent,
            episodes=1,
            deterministic=True,
            seed=env_seed,
            episode_steps=episode_steps,
            act=act,
            on_step=on_step,
        )
        features = None
        if hypotheses and nets.task_head is not None:
            raw = torch.as_tensor(
                np.stack([task_features_of(t, "the exploration trace") for t in tasks])
            )
            features = nets.task_head.targets(raw.to(torch.float32)).cpu().numpy()
    finally:
        env.close()
    return ExplorationTrace(
        actions=np.stack(actions, axis=1),
        hypotheses=np.stack(hypotheses, axis=1) if hypotheses else None,
        features=features,
        particles=np.stack(particles, axis=1) if particles else None,
        reward_so_far=np.cumsum(np.stack(rewards, axis=1), axis=1),
        success=outcome.success[:, 0],
    )


def feature_correlations(hypotheses: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Per feature, the Pearson correlation across tasks of hypotheses ``(M, F)`` with the
    tasks' features ``(M, F)``; ``nan`` for a feature constant in either."""
    h = hypotheses - hypotheses.mean(axis=0)
    f = features - features.mean(axis=0)
    denom = np.sqrt((h**2).sum(axis=0) * (f**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 1e-12, (h * f).sum(axis=0) / denom, np.nan)


def exploration_table(trace: ExplorationTrace, at: Sequence[int] | None = None) -> str:
    """A markdown table of ``trace`` at steps ``at`` (default: 6 steps spread over the
    episode): per step, the spread across tasks (standard deviation, averaged over dimensions)
    of the actions and of the hypotheses, the correlation across tasks of each hypothesised
    feature with the task's own (``nan`` where either is constant), the mean effective number of
    particles and the mean reward so far."""
    steps = trace.actions.shape[1]
    at = list(at) if at is not None else sorted({int(t) for t in np.linspace(0, steps - 1, 6)})
    lines = [
        "| step | action spread across tasks | hypothesis spread across tasks | correlation "
        "of each hypothesised feature with the task's | effective particles | reward so far |",
        "|---|---|---|---|---|---|",
    ]
    for t in at:
        act_spread = float(trace.actions[:, t].std(axis=0).mean())
        cells = [f"{t + 1}", f"{act_spread:.3f}"]
        if trace.hypotheses is not None and trace.features is not None:
            h = trace.hypotheses[:, t]
            cells.append(f"{float(h.std(axis=0).mean()):.3f}")
            cells.append(" ".join(f"{c:+.2f}" for c in feature_correlations(h, trace.features)))
        else:
            cells += ["-", "-"]
        size = None if trace.particles is None else float(trace.particles[:, t].mean())
        cells.append("-" if size is None else f"{size:.1f}")
        cells.append(f"{float(trace.reward_so_far[:, t].mean()):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trace_checkpoint(
    checkpoint: str,
    *,
    num_tasks: int,
    split: str = "test",
    task_seed: int = 0,
    env_seed: int = 0,
) -> ExplorationTrace:
    """:func:`trace_exploration` of a run directory's or checkpoint file's agent (its best
    checkpoint), on its own env and env arguments and episode length."""
    from meta_rl.checkpoint import locate
    from meta_rl.evaluation.runner import clean_env_kwargs, family_of, load_meta_agent

    agent = load_meta_agent(locate(checkpoint).file, "cpu")
    return trace_exploration(
        agent,
        family_of(agent),
        num_tasks=num_tasks,
        split=split,
        task_seed=task_seed,
        env_seed=env_seed,
        env_kwargs=clean_env_kwargs(agent.env_kwargs),
        episode_steps=agent.config.env.episode_steps,
    )
