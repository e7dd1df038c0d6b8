"""``metarl run``: the main job. Meta-train on a config, then evaluate on unseen objects.

Training writes the run directory (config, metrics, checkpoints, W&B); evaluation adds
``eval/eval.json``, the adaptation-curve PNG, the markdown table and the videos to it.
Overrides prefixed with ``eval.`` go to the evaluation config, all others to the experiment.
With ``--teacher-config YAML`` it first trains a teacher (a revealed-task policy) on that config
and makes the run its student (docs/imitation.md).
With ``--showcase CHECKPOINT`` (the README's main job passes ``pretrained/pick_place_particles``,
the shipped pick-place agent) it then evaluates that agent too, into ``<run>/showcase/``: its
adaptation curve on unseen objects and its episode-1-beside-episode-K videos.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_EVAL_CONFIG = Path("configs/eval/default.yaml")
DEFAULT_SHOWCASE_CONFIG = Path("configs/eval/showcase.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="Experiment YAML (e.g. configs/default.yaml)."
    )
    parser.add_argument(
        "--eval-config",
        default=None,
        help=f"Evaluation YAML (default: {DEFAULT_EVAL_CONFIG} when it exists, else defaults).",
    )
    parser.add_argument(
        "--teacher-config",
        default=None,
        metavar="YAML",
        help="First train a teacher on this experiment YAML (a revealed-task policy: "
        "env.kwargs.reveal_task=true encoder.use_context=false), then the run's own config as "
        "its student (privileged.teacher set to the teacher's fresh run directory).",
    )
    parser.add_argument(
        "--showcase",
        default=None,
        metavar="CHECKPOINT",
        help="After the run's own evaluation, evaluate this trained agent too (a run directory "
        "or checkpoint, e.g. pretrained/pick_place_particles) into RUN/showcase/.",
    )
    parser.add_argument(
        "--showcase-config",
        default=None,
        help=f"Evaluation YAML of --showcase (default: {DEFAULT_SHOWCASE_CONFIG} when it exists).",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Overrides section.key=value; eval.key=value for the evaluation (eval.num_tasks=5), "
        "teacher.key=value for --teacher-config's run (teacher.train.seed=1).",
    )


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(experiment overrides, evaluation overrides without their ``eval.`` prefix); the
    teacher's (``teacher.``) are in neither (:func:`teacher_overrides`)."""
    own = [o for o in overrides if not o.startswith("teacher.")]
    experiment = [o for o in own if not o.startswith("eval.")]
    evaluation = [o.removeprefix("eval.") for o in own if o.startswith("eval.")]
    return experiment, evaluation


def teacher_overrides(overrides: list[str]) -> list[str]:
    """The overrides of ``--teacher-config``'s experiment, without their ``teacher.`` prefix."""
    return [o.removeprefix("teacher.") for o in overrides if o.startswith("teacher.")]


def run(args: argparse.Namespace) -> int:
    from meta_rl.checkpoint import locate
    from meta_rl.commands.evaluate import print_success_curves
    from meta_rl.config import load_config
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import evaluate_checkpoint
    from meta_rl.experiment import ExperimentConfig, load_experiment
    from meta_rl.training.distributed import launched_rank
    from meta_rl.training.trainer import train

    exp_overrides, eval_overrides = split_overrides(list(args.overrides))
    eval_path = args.eval_config
    if eval_path is None and DEFAULT_EVAL_CONFIG.is_file():
        eval_path = str(DEFAULT_EVAL_CONFIG)
    # Every config is checked before the (long) training starts.
    teacher_cfg = None
    if args.teacher_config is not None:
        try:
            teacher_cfg = load_experiment(args.teacher_config, teacher_overrides(args.overrides))
        except (ValueError, FileNotFoundError) as e:
            raise type(e)(f"--teacher-config: {e}") from e

    def experiment(teacher: str | None) -> ExperimentConfig:
        """The run's config; a student's with ``privileged.teacher`` set to ``teacher``."""
        student = [] if teacher is None else [f"privileged.teacher={teacher}"]
        return load_experiment(args.config, [*exp_overrides, *student])

    # A student is checked with a stand-in for the teacher it will get.
    cfg = experiment(None if teacher_cfg is None else "<the teacher run>")
    eval_cfg = load_config(EvalConfig, eval_path, eval_overrides)
    showcase_cfg = None
    if args.showcase is not None:
        # A missing agent or config is named before the training, not after it.
        try:
            locate(args.showcase)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--showcase: {e}") from e
        showcase_path = args.showcase_config
        if showcase_path is None and DEFAULT_SHOWCASE_CONFIG.is_file():
            showcase_path = str(DEFAULT_SHOWCASE_CONFIG)
        try:
            showcase_cfg = load_config(EvalConfig, showcase_path, [])
        except (ValueError, FileNotFoundError) as e:
            raise type(e)(f"--showcase-config: {e}") from e
    if teacher_cfg is not None:
        teacher_dir = train(teacher_cfg)
        if launched_rank() == 0:
            print(f"teacher run dir: {teacher_dir}")
        cfg = experiment(str(teacher_dir))
    run_dir = train(cfg)
    if launched_rank() != 0:
        return 0  # under torchrun (docs/distributed.md) rank 0 alone evaluates
    report = evaluate_checkpoint(run_dir, eval_cfg)
    print_success_curves(report)
    print(f"run dir: {run_dir}")
    for name, path in sorted(report.files.items()):
        print(f"  {name}: {path}")
    if showcase_cfg is not None:
        showcase = evaluate_checkpoint(
            args.showcase, showcase_cfg, out_dir=run_dir / "showcase", wandb_root=run_dir
        )
        print(f"showcase: {args.showcase} on unseen objects ({showcase.env_id})")
        print_success_curves(showcase)
        for name, path in sorted(showcase.files.items()):
            print(f"  {name}: {path}")
    return 0
