"""How well the place reward locates a hidden pick-place goal: an identifiability check.

The tours, the fits and the maths are :mod:`meta_rl.evaluation.goal_readout`.

    python scripts/goal_readout.py --place-scales 10 3 [--tasks 3000]

Prints, per ``place_scale``, the mean goal error (cm) of both predictors on the held-out tours.
"""

from __future__ import annotations

import argparse

from meta_rl.evaluation.goal_readout import MIN_TOURS, TABLE_HEADER, goal_readout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--place-scales", type=float, nargs="+", default=[10.0, 3.0])
    parser.add_argument("--tasks", type=int, default=3000, help="Tours per scale (80%% fit).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-steps", type=int, default=3000, help="Adam steps per fit.")
    args = parser.parse_args()
    if args.tasks < MIN_TOURS:
        parser.error(f"--tasks: got {args.tasks}; allowed: >= {MIN_TOURS}")
    print(TABLE_HEADER)
    for scale in args.place_scales:
        errors = goal_readout(scale, tasks=args.tasks, seed=args.seed, fit_steps=args.fit_steps)
        print(errors.row())


if __name__ == "__main__":
    main()
