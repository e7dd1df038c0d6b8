"""What does the belief know about the task? A linear probe over the steps of a trial.

A meta-agent adapts only if its belief learns, over a trial, what the observation does not
show: the hidden goal, the object's mass. :func:`belief_probe` runs the agent (deterministic
actions, belief carried across episodes) on trials of train-split tasks and on trials of other,
freshly drawn tasks (of the train split by default: the probe asks what the belief knows, not
whether a linear map carries over to unseen objects, whose shifted observations a linear fit
extrapolates badly), fits at every probed step a ridge regression from the features the policy
sees to the true task features (``Task.features()``, standardised with the fitted trials'
statistics), and scores it on the other trials. Two regressors per step: the observation
alone, and the observation with the belief. Their difference is what the belief adds; a belief
that learns the task from the trial shows that difference growing from episode to episode.

Training-time information only: the probe reads the true features after the trials, the agent
never does. Features constant over the train trials are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ProbeResult", "belief_probe", "ridge_fit"]

_ALPHA = 1.0  # ridge penalty on the standardised inputs
_CLIP = 5.0  # standardised inputs are clipped to +-5


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> np.ndarray:
    """Weights ``(D + 1, F)`` of the ridge regression of ``y`` ``(N, F)`` on ``x`` ``(N, D)``
    with an intercept (the last row; not penalised)."""
    xb = np.c_[x, np.ones(len(x))]
    penalty = alpha * np.eye(xb.shape[1])
    penalty[-1, -1] = 0.0
    weights: np.ndarray = np.linalg.solve(xb.T @ xb + penalty, xb.T @ y)
    return weights


def _predict(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.c_[x, np.ones(len(x))] @ weights
    return out


@dataclass(frozen=True)
class ProbeResult:
    """Scored mean squared error of the probes (standardised task features) per probed step."""

    steps: list[int]
    """Steps of the trial (0-based; step t is the belief the policy saw before acting at t)."""
    obs_only: list[float]
    """Error of the probe on the observation alone (what the belief need not know)."""
    with_belief: list[float]
    """Error of the probe on the observation and the belief."""
    running: list[tuple[int, int]]
    """(fitted, scored) trials still running at each step: only those are used."""
    chance: float
    """Error of predicting the fitted trials' mean (about 1 on the same split)."""
    episode_steps: int

    def table(self) -> str:
        """A markdown table, one row per probed step."""
        rows = [
            "| step | episode | trials (fit, scored) | error, observation only "
            "| error, observation + belief |",
            "|---|---|---|---|---|",
        ]
        for t, a, b, (n_tr, n_te) in zip(
            self.steps, self.obs_only, self.with_belief, self.running, strict=True
        ):
            rows.append(
                f"| {t} | {t // self.episode_steps + 1} | {n_tr}, {n_te} | {a:.3f} | {b:.3f} |"
            )
        rows.append(f"\nPredicting the train mean: {self.chance:.3f}.")
        return "\n".join(rows)


def _trials(
    agent: Any, env_id: str, split: str, n: int, seed: int, episodes: int, steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observations and beliefs ``(T, n, ...)`` of ``n`` deterministic trials on tasks of
    ``split``, their valid-step mask ``(T, n)`` and the tasks' true features ``(n, F)``."""
    from meta_rl.evaluation.runner import clean_env_kwargs
    from meta_rl.task_envs.vector import make_task_vector_env
    from meta_rl.training.privileged import task_features
    from meta_rl.training.rollout import collect_trials

    venv = make_task_vector_env(env_id, n, **clean_env_kwargs(agent.env_kwargs))
    try:
        tasks = venv.task_distribution.sample(n, split, np.random.default_rng(seed))
        batch = collect_trials(
            venv, agent, tasks, episodes=episodes, episode_steps=steps, seed=seed,
            deterministic=True,
        )  # fmt: skip
    finally:
        venv.close()
    obs = batch.obs.cpu().numpy().astype(np.float64)
    beliefs = batch.beliefs.cpu().numpy().astype(np.float64)
    mask = batch.mask.cpu().numpy().astype(bool)
    return obs, beliefs, mask, task_features(tasks).numpy().astype(np.float64)


def belief_probe(
    checkpoint: str | Path,
    *,
    num_train: int = 256,
    num_test: int = 200,
    steps: list[int] | None = None,
    features: slice | None = None,
    split: str = "train",
    seed: int = 0,
) -> ProbeResult:
    """Probe the checkpoint's belief (see the module docstring): fit on ``num_train`` trials of
    train-split tasks, score on ``num_test`` trials of other tasks of ``split``, each of the
    run's trial length. ``steps`` default to the steps 0, 9 and 49 of every episode;
    ``features`` picks columns of ``Task.features()`` (pick-place: ``slice(0, 3)``, the goal),
    all by default."""
    from meta_rl.checkpoint import locate
    from meta_rl.evaluation.runner import family_of, load_meta_agent
    from meta_rl.task_envs.family import resolve_episode_steps

    if num_train < 2 or num_test < 1:
        raise ValueError(
            f"num_train, num_test: got {num_train}, {num_test}; allowed: >= 2 and >= 1"
        )
    torch.set_num_threads(1)
    agent = load_meta_agent(locate(checkpoint).file, "cpu")  # the context as trained
    env_id = family_of(agent)
    cfg = agent.config
    ep_steps = resolve_episode_steps(env_id, cfg.env.episode_steps, "env.episode_steps")
    k = cfg.env.episodes_per_trial
    total = k * ep_steps
    if steps is None:
        steps = sorted({e * ep_steps + min(d, ep_steps - 1) for e in range(k) for d in (0, 9, 49)})
    bad = [t for t in steps if not 0 <= t < total]
    if bad:
        raise ValueError(f"steps: got {bad}; allowed: 0 to {total - 1} (the trial's steps)")
    obs_tr, bel_tr, m_tr, f_tr = _trials(agent, env_id, "train", num_train, seed, k, ep_steps)
    obs_te, bel_te, m_te, f_te = _trials(agent, env_id, split, num_test, seed + 1, k, ep_steps)
    if features is not None:
        f_tr, f_te = f_tr[:, features], f_te[:, features]
        if f_tr.shape[1] == 0:
            raise ValueError(f"features: got {features}; it selects no task feature")
    # Features constant over the fitted trials (a shape only the test split holds) cannot be
    # learned from them: left out.
    keep = f_tr.std(0) > 1e-8
    mean, std = f_tr[:, keep].mean(0), f_tr[:, keep].std(0)
    y_tr, y_te = (f_tr[:, keep] - mean) / std, (f_te[:, keep] - mean) / std
    obs_only: list[float] = []
    with_belief: list[float] = []
    running: list[tuple[int, int]] = []
    for t in steps:
        # Only the trials still running at step t (an episode that ended early is padding).
        tr, te = m_tr[t], m_te[t]
        if tr.sum() < 2 or not te.any():
            raise ValueError(f"steps: step {t} has too few running trials to fit and score")
        running.append((int(tr.sum()), int(te.sum())))
        for with_b, out in ((False, obs_only), (True, with_belief)):
            x_tr = np.c_[obs_tr[t][tr], bel_tr[t][tr]] if with_b else obs_tr[t][tr]
            x_te = np.c_[obs_te[t][te], bel_te[t][te]] if with_b else obs_te[t][te]
            # Inputs standardised on the fit set; columns constant there carry nothing to fit.
            cols = x_tr.std(0) > 1e-6
            x_tr, x_te = x_tr[:, cols], x_te[:, cols]
            mu, sd = x_tr.mean(0), x_tr.std(0)
            # Clipped at 5 std: an object knocked far away (its position, its velocities) is
            # an outlier a linear probe would extrapolate wildly from.
            z_tr, z_te = (np.clip((x - mu) / sd, -_CLIP, _CLIP) for x in (x_tr, x_te))
            pred = _predict(ridge_fit(z_tr, y_tr[tr], alpha=_ALPHA), z_te)
            out.append(float(((pred - y_te[te]) ** 2).mean()))
    chance = float((y_te**2).mean())
    return ProbeResult(list(steps), obs_only, with_belief, running, chance, ep_steps)
