"""How well the place reward locates a hidden pick-place goal: an identifiability check.

A scripted searcher (:class:`TourOracle`: the pick-place oracle, whose carry target is a fixed
tour of waypoints around the object's start instead of the goal) grasps the object and carries
it through the tour on many train-split tasks (:func:`tours`). A small MLP then learns to
predict the goal from what the tour observed: the object's displacement from its start and the
place term of the reward, every :data:`EVERY` steps (:func:`fit_error`). Its error on held-out
tours is how far the place term's readings (the only reward term that depends on the goal)
locate the goal, an upper bound for any context encoder; the same MLP without the reward
readings (object displacements only) gives the goal prior's error (:func:`goal_readout`).

Where :mod:`meta_rl.evaluation.probe` asks what a trained agent's belief knows about the task,
this asks what the reward can tell at all, without an agent.
``python scripts/goal_readout.py --place-scales 10 3`` prints :data:`TABLE_HEADER` and one
:meth:`ReadoutErrors.row` per ``place_scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from envs.batched import make_batched
from envs.oracles import PickPlaceOracle

__all__ = [
    "EVERY",
    "GRASP_STEPS",
    "LEG_STEPS",
    "MIN_TOURS",
    "TABLE_HEADER",
    "TOUR",
    "ReadoutErrors",
    "TourOracle",
    "fit_error",
    "goal_readout",
    "tours",
]

# Tour waypoints relative to the object's start, metres (the goals lie 6-22 cm above it, at
# least 8 cm from it horizontally): one leg per waypoint after the grasp.
TOUR = np.array(
    [[0.0, 0.0, 0.14], [0.12, 0.0, 0.14], [0.0, 0.12, 0.2], [-0.12, 0.0, 0.1], [0.0, -0.12, 0.2]]
)
GRASP_STEPS = 40  # steps before the tour starts (the oracle grasps within them)
LEG_STEPS = 22  # steps per waypoint
EVERY = 3  # subsampling of the readings
MIN_TOURS = 10  # fewest tours per scale: 80% fit the MLP, the rest score it
TABLE_HEADER = (
    f"{'place_scale':>11} {'prior error':>12} {'with readings':>14}  (cm, held-out tours)"
)
"""The header of the table whose rows :meth:`ReadoutErrors.row` writes."""


class TourOracle(PickPlaceOracle):
    """The pick-place oracle carrying the object through :data:`TOUR` instead of to the goal."""

    def __init__(self, obs_slices: dict[str, slice], start: np.ndarray) -> None:
        super().__init__(obs_slices)
        self.start = start
        self.t = 0

    def carry_target(self, goal: np.ndarray) -> np.ndarray:
        leg = min(max(self.t - GRASP_STEPS, 0) // LEG_STEPS, len(TOUR) - 1)
        return self.start + TOUR[leg]


def tours(place_scale: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(displacements (n, S, 3), place readings (n, S), goals relative to the start (n, 3))``
    of ``n`` tours on train-split tasks."""
    env = make_batched("metarl/PickPlace-v0", n, reveal_task=True, place_scale=place_scale)
    try:
        tasks = env.task_distribution.sample(n, "train", np.random.default_rng(seed))
        env.set_tasks(tasks)
        obs, _ = env.reset(seed=seed)
        s = env.obs_slices
        start = obs[:, s["object_pos"]].copy()
        oracle = TourOracle(s, start)
        disp, place = [], []
        for t in range(env.max_episode_steps):
            oracle.t = t
            obs, _, _, _, info = env.step(oracle(obs))
            if t % EVERY == 0:
                disp.append(obs[:, s["object_pos"]] - start)
                place.append(np.asarray(info["reward_place"]))
        goals = np.array([task.goal for task in tasks]) - start
    finally:
        env.close()
    return np.stack(disp, 1), np.stack(place, 1), goals


def fit_error(x: np.ndarray, y: np.ndarray, n_train: int, seed: int, steps: int = 3000) -> float:
    """Mean Euclidean error (m) on rows ``n_train:`` of an MLP regressing ``y`` on ``x``, fit
    with ``steps`` Adam steps on rows ``:n_train``."""
    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    mu, sd = xt[:n_train].mean(0), xt[:n_train].std(0) + 1e-6
    xt = (xt - mu) / sd
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
    net.append(nn.Linear(256, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    for _ in range(steps):
        idx = torch.randint(0, n_train, (256,))
        loss = ((net(xt[idx]) - yt[idx]) ** 2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(xt[n_train:]) - yt[n_train:]).norm(dim=-1).mean())


@dataclass(frozen=True)
class ReadoutErrors:
    """Mean goal errors (m) on the held-out tours of one ``place_scale``."""

    place_scale: float
    prior: float
    """The MLP on the object's displacements alone: what the goal prior locates."""
    with_readings: float
    """The MLP on the displacements and the place readings: what the reward adds."""

    def row(self) -> str:
        """One row of the table under :data:`TABLE_HEADER` (errors in cm)."""
        prior, readout = self.prior * 100, self.with_readings * 100
        return f"{self.place_scale:>11g} {prior:>12.1f} {readout:>14.1f}"


def goal_readout(
    place_scale: float, *, tasks: int = 3000, seed: int = 0, fit_steps: int = 3000
) -> ReadoutErrors:
    """Both predictors' errors (see the module docstring) on ``tasks`` tours of pick-place with
    this ``place_scale``: each fit with ``fit_steps`` Adam steps on the first 80% of the tours
    and scored on the rest."""
    if tasks < MIN_TOURS:
        raise ValueError(f"tasks: got {tasks}; allowed: >= {MIN_TOURS}")
    n_train = int(0.8 * tasks)
    disp, place, goals = tours(place_scale, tasks, seed)
    without = disp.reshape(len(disp), -1)
    with_readings = np.concatenate([without, place], axis=1)
    prior = fit_error(without, goals, n_train, seed, fit_steps)
    readout = fit_error(with_readings, goals, n_train, seed, fit_steps)
    return ReadoutErrors(place_scale, prior, readout)
