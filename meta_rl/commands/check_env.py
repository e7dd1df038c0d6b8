"""``metarl check-env``: what a task family lacks for meta-training, before a long run starts."""

from __future__ import annotations

import argparse

from meta_rl.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--module",
        default=None,
        help="Module that registers the id (as env.module), e.g. examples.hidden_pendulum.",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="YAML",
        help="Check the env section of this experiment YAML (id, module, kwargs, episode_steps).",
    )
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="ID | key=value",
        help="The env id (or module:id), and experiment overrides (env.kwargs.x=1, "
        "env.episode_steps=100).",
    )


def run(args: argparse.Namespace) -> int:
    from meta_rl.experiment import load_experiment
    from meta_rl.task_envs.env_checker import check_task_family

    ids = [t for t in args.targets if "=" not in t]
    overrides = [t for t in args.targets if "=" in t]
    if len(ids) > 1:
        raise UsageError(f"check-env: one env id please, got {', '.join(ids)}")
    if not ids and args.config is None and not any(o.startswith("env.id=") for o in overrides):
        raise UsageError("check-env: pass an env id (metarl check-env ns/Name-v0) or --config")
    if ids:
        overrides.append(f"env.id={ids[0]}")
    if args.module is not None:
        overrides.append(f"env.module={args.module}")
    env = load_experiment(args.config, overrides).env
    report = check_task_family(
        env.id, module=env.module, env_kwargs=env.kwargs, episode_steps=env.episode_steps
    )
    print(report.format())
    return 0 if report.ok else 1
