"""What the belief knows about the task over a trial (meta_rl.evaluation.probe):

python scripts/belief_probe.py runs/<run> [--train 256] [--test 200] [--seed 0]
"""

from __future__ import annotations

import argparse

from meta_rl.evaluation.probe import belief_probe

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="Run directory or checkpoint file.")
    parser.add_argument("--train", type=int, default=256, help="Train-split trials (fit).")
    parser.add_argument("--test", type=int, default=200, help="Trials of other tasks (score).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the tasks and resets.")
    parser.add_argument("--split", default="train", help="Split of the scored tasks.")
    parser.add_argument(
        "--features",
        default=None,
        help="START:STOP columns of Task.features() (pick-place goal: 0:3).",
    )
    args = parser.parse_args()
    cols = None
    if args.features is not None:
        start, _, stop = args.features.partition(":")
        cols = slice(int(start) if start else None, int(stop) if stop else None)
    result = belief_probe(
        args.checkpoint,
        num_train=args.train,
        num_test=args.test,
        features=cols,
        split=args.split,
        seed=args.seed,
    )
    print(result.table())
