"""``metarl bench-train``: meta-training throughput and held-out learning curves per variant."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from meta_rl.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/bench_train", help="Output folder (JSON, PNG).")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["reach", "push", "pick_place"],
        help="Task variants to run (configs/<variant>.yaml each).",
    )
    parser.add_argument("--iterations", type=int, default=30, help="Iterations per variant.")
    parser.add_argument("--eval-every", type=int, default=5, help="Held-out evaluation period.")
    parser.add_argument("--config-dir", default="configs", help="Folder of the variant YAMLs.")
    parser.add_argument(
        "--ablations",
        nargs="+",
        default=None,
        help="Instead of variants: train these agents (configs/ablations/<name>.yaml: full, "
        "context_only, maml_only) and print the held-out comparison table.",
    )
    parser.add_argument(
        "--meta-update-cost",
        action="store_true",
        help="With --ablations: also time the outer update with and without the inner loop "
        "(on the 'full' config with the overrides) and print the ratio.",
    )
    parser.add_argument(
        "--eval-config",
        default=None,
        metavar="YAML",
        help="With --ablations: then evaluate every trained agent and its zero-shot control "
        "under this evaluation protocol (configs/eval/ablations.yaml) into <out>/eval.",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=None,
        metavar="NAME=RUN_DIR[,RUN_DIR...]",
        help="Instead of training: evaluate these trained runs (their last checkpoints, e.g. "
        "other seeds or settings) and their zero-shot controls together under --eval-config, "
        "into <out>/eval, and print the table (repeatable). Runs joined by commas under one "
        "name are training seeds of one configuration: each is evaluated (as 'NAME #i') and "
        "they are also pooled (<out>/eval/seeds.md, seeds.json and seeds.png). <out>/eval/"
        "paired.md pairs each configuration with its controls and the first configuration with "
        "each other one of as many runs (run i with run i: give the same training seeds in the "
        "same order). The positional overrides then change the evaluation protocol (e.g. "
        "num_tasks=300).",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="With --ablations: train this many agents at once, one process each (set "
        "train.torch_threads so that jobs x threads fits the cores).",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="Instead of training runs: time each phase of --iterations iterations (after one "
        "warm-up) of each variant, print where an iteration spends its time and write "
        "<out>/profile.json (nothing else is written; try --iterations 5).",
    )
    parser.add_argument(
        "overrides", nargs="*", help="Overrides for every variant (e.g. env.tasks_per_batch=8)."
    )


def _compare_runs(args: argparse.Namespace) -> int:
    from meta_rl.config import load_config
    from meta_rl.evaluation.ablations import (
        evaluate_ablations,
        paired_table,
        pool_paired_differences,
        pool_training_seeds,
        seeds_table,
    )
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.plots import plot_adaptation_curve
    from meta_rl.evaluation.runner import control_names
    from meta_rl.evaluation.stats import Summary

    if args.ablations is not None or args.meta_update_cost or args.jobs != 1:
        raise UsageError(
            "--compare evaluates trained runs: drop --ablations, --jobs and --meta-update-cost"
        )
    if not args.eval_config:
        raise UsageError("--compare needs --eval-config (e.g. configs/eval/ablations.yaml)")
    runs: dict[str, Path] = {}
    groups: dict[str, list[str]] = {}
    for item in args.compare:
        name, sep, run_dirs = item.partition("=")
        dirs = run_dirs.split(",")
        if not sep or not name or not all(dirs):
            raise UsageError(f"--compare: got {item!r}; allowed: NAME=RUN_DIR[,RUN_DIR...]")
        if name in groups:
            raise UsageError(f"--compare: the name {name!r} is given twice; names must be unique")
        # Several runs under one name are training seeds of one configuration.
        groups[name] = [name] if len(dirs) == 1 else [f"{name} #{i}" for i in range(len(dirs))]
        runs.update(zip(groups[name], map(Path, dirs), strict=True))
    out = Path(args.out) / "eval"
    # The positional overrides are the evaluation protocol's here (e.g. num_tasks=300).
    eval_cfg = load_config(EvalConfig, args.eval_config, list(args.overrides))
    report = evaluate_ablations(runs, eval_cfg, out)
    print((out / "eval.md").read_text())
    print(f"wrote {out / 'eval.json'} and eval.md")
    controls = control_names(eval_cfg)
    # The first configuration against each other one of as many runs (the same training seeds,
    # in order), then each configuration against each of its controls (the same networks).
    (first, first_members), *others = groups.items()
    pairs = {
        f"{first} - {n}": (first_members, ms) for n, ms in others if len(ms) == len(first_members)
    }
    pairs.update(
        {f"{n} - {c}": (ms, [f"{m} {c}" for m in ms]) for n, ms in groups.items() for c in controls}
    )
    if pairs:
        paired = pool_paired_differences(
            report,
            pairs,
            confidence_level=eval_cfg.confidence_level,
            num_resamples=eval_cfg.num_bootstrap,
        )
        (out / "paired.json").write_text(json.dumps(paired, indent=2))
        (out / "paired.md").write_text(
            "Success per episode, the first configuration minus each other one (run i against "
            "run i) and each configuration minus its control (the same networks), paired over "
            "tasks and training seeds: mean "
            f"[{round(eval_cfg.confidence_level * 100)}% interval] (each seed's).\n\n"
            + paired_table(paired)
            + "\n"
        )
        print(paired_table(paired))
        print(f"wrote {out / 'paired.json'} and paired.md")
    if any(len(members) > 1 for members in groups.values()):
        groups.update(
            {
                f"{n} {c}": [f"{m} {c}" for m in ms]
                for n, ms in list(groups.items())
                for c in controls
            }
        )
        pooled = pool_training_seeds(
            report,
            groups,
            confidence_level=eval_cfg.confidence_level,
            num_resamples=eval_cfg.num_bootstrap,
        )
        table = seeds_table(pooled)
        curves = {
            f"{name} ({p['seeds']} seed{'s' * (p['seeds'] > 1)})": [
                Summary(**s) for s in p["success"]
            ]
            for name, p in pooled.items()
        }
        plot_adaptation_curve(
            curves,
            out / "seeds.png",
            title="held-out success, pooled over training seeds",
            confidence_level=eval_cfg.confidence_level,
        )
        (out / "seeds.json").write_text(json.dumps(pooled, indent=2))
        (out / "seeds.md").write_text(
            "Success per episode pooled over training seeds: mean "
            f"[{round(eval_cfg.confidence_level * 100)}% interval over tasks and training seeds] "
            "(each seed's mean).\n\n" + table + "\n"
        )
        print(table)
        print(f"wrote {out / 'seeds.json'}, seeds.md and seeds.png")
    return 0


def _run_ablations(args: argparse.Namespace) -> int:
    from meta_rl.config import load_config
    from meta_rl.evaluation.ablations import ABLATION_CONFIGS, bench_ablations
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.experiment import load_experiment
    from meta_rl.training.benchmark import bench_meta_update

    out = Path(args.out)
    eval_cfg = load_config(EvalConfig, args.eval_config) if args.eval_config else None
    if args.meta_update_cost:
        cfg = load_experiment(
            Path(args.config_dir) / ABLATION_CONFIGS["full"],
            ["logging.wandb_mode=disabled", *args.overrides],
        )
        cost = bench_meta_update(cfg, out / "meta_update")
        print(
            f"outer update on {cost['samples']:.0f} samples: plain {cost['plain_s'] * 1e3:.0f} "
            f"ms, with the inner loop {cost['maml_s'] * 1e3:.0f} ms "
            f"(x{cost['ratio_maml_to_plain']:.2f}), first order "
            f"{cost['maml_first_order_s'] * 1e3:.0f} ms "
            f"(x{cost['ratio_first_order_to_plain']:.2f})"
        )
    summary = bench_ablations(
        out,
        ablations=args.ablations,
        iterations=args.iterations,
        eval_every=args.eval_every,
        config_dir=Path(args.config_dir),
        overrides=args.overrides,
        eval_cfg=eval_cfg,
        jobs=args.jobs,
    )
    print(summary["table"])
    if "eval_table" in summary:
        print(summary["eval_table"])
        print(summary["paired_table"])
    print(f"wrote {out / 'ablations.json'} and ablations.md")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from meta_rl.experiment import load_experiment
    from meta_rl.training.benchmark import VARIANT_CONFIGS
    from meta_rl.training.profile import format_profile, profile_training

    for flag, value in (
        ("--ablations", args.ablations is not None),
        ("--compare", args.compare is not None),
        ("--meta-update-cost", args.meta_update_cost),
        ("--eval-config", args.eval_config),
        ("--jobs", args.jobs != 1),
    ):
        if value:
            raise UsageError(f"--profile times the variants' training: drop {flag}")
    if args.iterations < 1:
        raise UsageError(f"--iterations: got {args.iterations}; allowed: >= 1")
    unknown = [v for v in args.variants if v not in VARIANT_CONFIGS]
    if unknown:
        raise UsageError(f"--variants: got {unknown[0]!r}; allowed: {', '.join(VARIANT_CONFIGS)}")
    results = {}
    for name in args.variants:
        cfg = load_experiment(
            Path(args.config_dir) / VARIANT_CONFIGS[name],
            ["logging.wandb_mode=disabled", "logging.progress_bar=false", *args.overrides],
        )
        results[name] = profile_training(cfg, iterations=args.iterations)
        print(format_profile(name, results[name]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"variants": results, "overrides": list(args.overrides)}
    (out / "profile.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'profile.json'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from meta_rl.training.benchmark import bench_train

    if args.profile:
        return _profile(args)
    if args.compare is not None:
        return _compare_runs(args)
    if args.ablations is not None:
        return _run_ablations(args)
    for flag, value in (
        ("--meta-update-cost", args.meta_update_cost),
        ("--eval-config", args.eval_config),
    ):
        if value:
            raise UsageError(f"{flag} needs --ablations")
    if args.jobs != 1:
        raise UsageError("--jobs needs --ablations")
    summary = bench_train(
        Path(args.out),
        variants=args.variants,
        iterations=args.iterations,
        eval_every=args.eval_every,
        config_dir=Path(args.config_dir),
        overrides=args.overrides,
    )
    for name, res in summary["variants"].items():
        last = res["curve"][-1] if res["curve"] else {}
        print(
            f"{name:>11}: {res['env_steps_per_s']:.0f} env steps/s collecting, "
            f"{res['overall_steps_per_s']:.0f} overall, {res['env_steps']} steps; held-out "
            f"success ep1 {last.get('success_first_episode', float('nan')):.2f} -> "
            f"ep{res['episodes_per_trial']} {last.get('success_last_episode', float('nan')):.2f}"
        )
    print(f"wrote {Path(args.out) / 'bench_train.json'} and bench_train.png")
    return 0
