"""A scripted searcher on the commanded pick-place family: how far a hand-written adaptive
controller gets with the shipped skill and the reward alone (docs/pick_place.md).

Episode 1 carries the object on a tour of the goal box (the skill does the manipulation, the
searcher only names the points), reads the place term off the reward while the object is held
and lifted (the reward minus the reach, grasp and lift terms, which the observation gives), turns
each reading into a distance to the goal (the place term's inverse) and locates the goal by least
squares over a grid of the goal box. The rest of episode 1 and episodes 2 and 3 command the
estimate. The goal never reaches the searcher: it reads the reward, as a meta-agent does.

    python scripts/commanded_search.py --tasks 200 --place-scale 10
    python scripts/commanded_search.py --tasks 200 --told --object-command size  # the true size
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs import rewards as rw
from envs import scene as sc
from envs.pick_place import LIFT_HEIGHT, PickPlaceEnv
from meta_rl.evaluation.stats import bootstrap_ci
from meta_rl.skills.commanded import COMMANDED_ID, CommandedVectorEnv
from meta_rl.task_envs.vector import make_task_vector_env

TOUR = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.7, 0.0, 0.0],
        [0.0, 0.7, 0.0],
        [-0.7, 0.0, 0.0],
        [0.0, -0.7, 0.0],
        [0.0, 0.0, 0.7],
    ]
)
"""Tour waypoints in command units (the goal box's half-widths)."""
SLICES = sc.obs_slices(False)
"""The hidden observation's named columns."""


def tour_command(t: int, start: int, hold: int) -> np.ndarray:
    """The tour's command at step ``t`` of episode 1 (the centre before ``start``)."""
    k = 0 if t < start else min((t - start) // hold + 1, len(TOUR) - 1)
    return TOUR[k]


def place_readings(
    obs: np.ndarray, reward: np.ndarray, rest_z: np.ndarray, weights: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """The place term ``(N,)`` of each reward and whether it is readable (the object held and
    lifted past the lift term's saturation, so every other term is known)."""
    reach_w, grasp_w, lift_w = weights
    sl = SLICES
    force = np.arctanh(np.clip(obs[:, sl["finger_contact"]], 0.0, 0.999999)) * sc.TOUCH_SCALE
    held = (force > rw.GRASP_FORCE).all(axis=1)
    lifted = obs[:, sl["object_pos"]][:, 2] > rest_z + LIFT_HEIGHT + 0.005
    reach = reach_w * rw.closeness(np.linalg.norm(obs[:, sl["object_rel_pos"]], axis=1))
    place = reward - reach - grasp_w - lift_w
    return place, held & lifted


def locate(points: np.ndarray, dists: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The grid point ``(3,)`` whose distances to ``points`` ``(M, 3)`` best match ``dists``."""
    d = np.linalg.norm(grid[:, None, :] - points[None, :, :], axis=-1)
    return grid[np.argmin(((d - dists[None, :]) ** 2).sum(axis=1))]


Recorder = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool], None]
"""``record(obs, command, reward, next_obs, episode_end)``: one batched step of the trials."""


def run(
    tasks: int,
    place_scale: float,
    split: str,
    seed: int,
    hold: int,
    start: int,
    record: Recorder | None = None,
    num_threads: int | None = None,
    told: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One 3-episode trial of the searcher on each of ``tasks`` tasks of ``split`` (drawn with
    ``seed``); ``record`` sees every step. ``told``: no search, the true goal is commanded from
    the first step (the family's ceiling: the skill's own success). ``env_kwargs``: more
    arguments of the env; where its commands also name object features (``object_command``),
    the searcher names their training means (what the skill reads by default), or the true ones
    when ``told``. Returns the success
    ``(3, tasks)``, how many goals were located and how well, and the tasks."""
    venv = make_task_vector_env(
        COMMANDED_ID,
        tasks,
        num_threads=num_threads,
        **{**(env_kwargs or {}), "place_scale": place_scale},
    )
    assert isinstance(venv, CommandedVectorEnv)
    c = venv.commander
    neutral = np.tile(c.feature_commands(c.object_features[None]), (tasks, 1))
    template = venv.inner.template
    assert isinstance(template, PickPlaceEnv)
    weights = (template.reach_weight, template.grasp_weight, template.lift_weight)
    place_w = template.place_weight
    task_list = venv.task_distribution.sample(tasks, split, np.random.default_rng(seed))
    venv.set_tasks(task_list)
    obs, _ = venv.reset(seed=0)
    steps = 150
    axes = [np.linspace(-1, 1, 23)] * 3
    grid = c.goals(np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3))
    object_pos = SLICES["object_pos"]
    rest_z = obs[:, object_pos][:, 2].copy()
    readings: list[list[tuple[np.ndarray, float]]] = [[] for _ in range(tasks)]
    estimate = np.zeros((tasks, 3))
    located = np.zeros(tasks, dtype=bool)
    tour_end = start + hold * (len(TOUR) - 1)
    success = np.zeros((3, tasks))
    if told:
        estimate[:] = np.array([t.goal for t in task_list])
        located[:] = True
        tour_end = 0
        neutral = c.feature_commands(np.array([t.features()[3:] for t in task_list]))
    for k in range(3):
        for t in range(steps):
            if k == 0 and t < tour_end:
                cmd = np.tile(tour_command(t, start, hold), (tasks, 1))
            else:
                if k == 0 and t == tour_end and not told:
                    for i in range(tasks):
                        if len(readings[i]) >= 4:
                            pts = np.array([p for p, _ in readings[i]])
                            dist = np.array([d for _, d in readings[i]])
                            estimate[i] = locate(pts, dist, grid)
                            located[i] = True
                    estimate[~located] = c.centre
                cmd = (estimate - c.centre) / c.half_width
            cmd = np.concatenate([cmd, neutral], axis=1)
            before = obs
            obs, reward, _, _, info = venv.step(cmd)
            if record is not None:
                record(before, cmd, reward, obs, t == steps - 1)
            if k == 0 and t < tour_end:
                place, ok = place_readings(obs, reward, rest_z, weights)
                frac = np.clip(1.0 - place / place_w, 0.0, 1.0 - 1e-6)
                dist = np.arctanh(frac) / place_scale
                usable = ok & (place > 0.02 * place_w)  # beyond this the term is flat
                for row in np.flatnonzero(usable):
                    readings[row].append((obs[row, object_pos], dist[row]))
            success[k] = np.maximum(success[k], info["success"])
        if k < 2:
            obs, _ = venv.reset(seed=0)
    goals = np.array([t.goal for t in task_list])
    error = np.linalg.norm(estimate - goals, axis=1)
    venv.close()
    return {
        "success": success,
        "located": located.mean(),
        "median_error_cm": 100 * float(np.median(error[located])) if located.any() else None,
        "within_5cm": float((error < 0.05).mean()),
        "tasks": task_list,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--place-scale", type=float, nargs="+", default=[10.0])
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--hold", type=int, default=15, help="Steps per tour waypoint.")
    p.add_argument("--start", type=int, default=40, help="Steps at the centre before the tour.")
    p.add_argument(
        "--told", action="store_true", help="Add a row with the true goal commanded (the ceiling)."
    )
    p.add_argument(
        "--object-command",
        nargs="*",
        default=[],
        help="Object features the commands also name (env object_command): the searcher names "
        "their training means, the told row the true ones.",
    )
    args = p.parse_args(argv)
    print(
        "| place_scale | tasks | goal located | median error | within 5 cm | success k=1 | k=2 "
        "| k=3 | gain k=3 - k=1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    runs = [(scale, False) for scale in args.place_scale]
    if args.told:
        runs.append((args.place_scale[0], True))
    told_label = " and ".join(["told the goal", *args.object_command])
    for scale, told in runs:
        r = run(
            args.tasks,
            scale,
            args.split,
            args.seed,
            args.hold,
            args.start,
            told=told,
            env_kwargs={"object_command": args.object_command},
        )
        s = r["success"]
        cells = []
        for values in (*s, s[2] - s[0]):
            ci = bootstrap_ci(values, rng)
            cells.append(f"{values.mean():.2f} [{ci.low:.2f}, {ci.high:.2f}]")
        err = "-" if r["median_error_cm"] is None else f"{r['median_error_cm']:.1f} cm"
        print(
            f"| {told_label if told else f'{scale:g}'} | {args.tasks} ({args.split}) | "
            f"{r['located']:.2f} | {err} | "
            f"{r['within_5cm']:.2f} | " + " | ".join(cells) + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
