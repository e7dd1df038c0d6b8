"""What a sampling student does in episode 1, and on what evidence (meta_rl.evaluation.exploration):

python scripts/exploration_trace.py runs/<run> [--tasks 200] [--task-seed 1234] [--split test]
"""

from __future__ import annotations

import argparse

from meta_rl.evaluation.exploration import exploration_table, trace_checkpoint

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="Run directory or checkpoint file.")
    parser.add_argument("--tasks", type=int, default=200, help="Held-out tasks.")
    parser.add_argument("--task-seed", type=int, default=1234, help="Seed of the task draw.")
    parser.add_argument("--split", default="test", help="Split of the tasks.")
    args = parser.parse_args()
    trace = trace_checkpoint(
        args.checkpoint, num_tasks=args.tasks, split=args.split, task_seed=args.task_seed
    )
    print(exploration_table(trace))
    print(f"episode-1 success: {trace.success.mean():.2f} on {len(trace.success)} tasks")
