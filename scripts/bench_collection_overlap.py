"""Can collection hide the agent behind the physics, and how fast can the learner be? (issue 14)

``python scripts/bench_collection_overlap.py [--config configs/pick_place.yaml] [--rounds 3]
[--groups 2] [--learner] [--out runs/collection_overlap] [section.key=value ...]``

The measurements and what each figure means: :mod:`meta_rl.training.collection_overlap`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from meta_rl.experiment import load_experiment
from meta_rl.training.collection_overlap import measure_collection, measure_learner

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "pick_place.yaml"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--learner", action="store_true", help="also time the PPO MLP floor")
    parser.add_argument("--out", default=None, help="folder for collection_overlap.json")
    parser.add_argument("overrides", nargs="*", help="config overrides (section.key=value)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: got {args.rounds}; allowed: >= 1")
    torch.set_num_threads(1)
    cfg = load_experiment(args.config, args.overrides)
    result = measure_collection(cfg, rounds=args.rounds, groups=args.groups)
    print(json.dumps({k: result[k] for k in ("setup", "steps_per_s", "ms_per_step")}, indent=1))
    print("ratios:", json.dumps(result["ratios"], indent=1))
    print(
        "grouped collection against one-env collection, largest difference:",
        result["grouped_max_diff"],
    )
    if args.learner:
        setup = result["setup"]
        result["learner"] = measure_learner(
            cfg, setup["obs_dim"], setup["action_dim"], setup["env_steps_per_trial"], args.rounds
        )
        print("PPO MLP floor, s per iteration:", result["learner"])
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "collection_overlap.json").write_text(json.dumps(result, indent=1))
        print(f"wrote {out / 'collection_overlap.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
