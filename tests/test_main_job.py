"""The README's main job (``metarl run``), end to end on a tiny budget, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from meta_rl.commands.run import split_overrides, teacher_overrides

REPO = Path(__file__).resolve().parents[1]


def test_eval_overrides_are_split_from_experiment_overrides() -> None:
    given = ["train.seed=1", "eval.num_tasks=3", "ppo.lr=1e-3", "teacher.train.seed=2"]
    assert split_overrides(given) == (["train.seed=1", "ppo.lr=1e-3"], ["num_tasks=3"])
    assert teacher_overrides(given) == ["train.seed=2"]


@pytest.mark.slow
def test_main_job_writes_a_complete_run_directory(tmp_path: Path) -> None:
    """The main job, ending with a showcase of another trained agent (the README's job shows
    the shipped pick-place agent; here a one-iteration smoke run stands in for it)."""
    from meta_rl.experiment import load_experiment
    from meta_rl.training.trainer import train

    shown = train(
        load_experiment(
            REPO / "configs" / "smoke.yaml",
            ["train.iterations=1", "logging.wandb_mode=disabled", f"runs_dir={tmp_path / 'shown'}"],
        )
    )
    shown_files = sorted(p.relative_to(shown) for p in shown.rglob("*"))
    runs = tmp_path / "runs"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "meta_rl",
            "run",
            "--config",
            "configs/smoke.yaml",
            "--eval-config",
            "configs/eval/smoke.yaml",
            "--showcase",
            str(shown),
            "--showcase-config",
            "configs/eval/smoke.yaml",
            f"runs_dir={runs}",
            "logging.wandb_mode=offline",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    assert run_dir.name.startswith("smoke__0__")
    assert (run_dir / "config.yaml").is_file()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 2 and all(isinstance(json.loads(line), dict) for line in lines)
    assert list((run_dir / "checkpoints").glob("*.pt"))
    report = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert set(report["methods"]) >= {"meta-agent", "zero-shot"}
    pngs = list((run_dir / "eval").glob("*.png"))
    assert pngs and iio.imread(pngs[0]).std() > 1.0
    (video, *_) = sorted(run_dir.rglob("*.mp4"))
    frames = iio.imread(video)
    assert frames.ndim == 4 and float(np.std(frames[0])) > 1.0
    assert list((run_dir / "wandb").glob("offline-run-*"))
    # The showcase: its own evaluation and video in the run, nothing written beside the agent.
    shown_report = json.loads((run_dir / "showcase" / "eval.json").read_text())
    assert set(shown_report["methods"]) >= {"meta-agent", "zero-shot"}
    assert shown_report["checkpoint"].startswith(str(shown))
    assert list((run_dir / "showcase" / "videos").glob("*.mp4"))
    assert "showcase:" in result.stdout
    assert sorted(p.relative_to(shown) for p in shown.rglob("*")) == shown_files


def test_the_main_job_trains_its_teacher_first_then_the_student(tmp_path: Path) -> None:
    """``metarl run --teacher-config``: the teacher's run, then the student's with
    ``privileged.teacher`` naming it, then the student's evaluation (the README's main job
    shape, on the smoke budget)."""
    import argparse

    from meta_rl.commands.run import run
    from meta_rl.experiment import load_experiment

    smoke = REPO / "configs" / "smoke.yaml"
    teacher_yaml = tmp_path / "teacher.yaml"
    teacher_yaml.write_text(
        f"base: {smoke}\nexperiment: teacher\nruns_dir: {tmp_path / 'teachers'}\n"
        "env:\n  kwargs: {reveal_task: true}\nencoder:\n  use_context: false\n"
        "task_model:\n  updates_per_iteration: 0\n"
    )
    student_yaml = tmp_path / "student.yaml"
    student_yaml.write_text(
        f"base: {smoke}\nexperiment: student\ntask_model:\n  updates_per_iteration: 0\n"
        "privileged:\n  teacher: nowhere\n  hypotheses: particles\n  particles: 8\n"
        "  reward_model_hidden: [8]\n  teacher_freeze_iterations: 100\n"
    )
    args = argparse.Namespace(
        config=str(student_yaml),
        eval_config=str(REPO / "configs" / "eval" / "smoke.yaml"),
        teacher_config=str(teacher_yaml),
        showcase=None,
        showcase_config=None,
        overrides=[
            "teacher.train.seed=3",
            f"runs_dir={tmp_path / 'runs'}",
            "eval.num_videos=0",
            "eval.wandb_mode=disabled",
        ],
    )
    assert run(args) == 0
    (teacher,) = (tmp_path / "teachers").iterdir()
    (student,) = (tmp_path / "runs").iterdir()
    cfg = load_experiment(student / "config.yaml")
    assert cfg.privileged.teacher == str(teacher)
    assert load_experiment(teacher / "config.yaml").train.seed == 3
    assert teacher.name.startswith("teacher__3__")
    report = json.loads((student / "eval" / "eval.json").read_text())
    assert set(report["methods"]) >= {"meta-agent", "zero-shot"}


@pytest.mark.slow
def test_the_main_job_as_shipped_runs_end_to_end(tmp_path: Path) -> None:
    """``bash scripts/demo.sh``'s command (``metarl run --config configs/default.yaml
    --teacher-config configs/reach_teacher.yaml --showcase pretrained/pick_place_particles``),
    its budget cut by overrides only, from the repository's shipped files: the teacher's run,
    the student's run with its evaluation (eval.json, eval.md, the curves, a video), and the
    showcase of the shipped agent with its own video."""
    demo = (REPO / "scripts" / "demo.sh").read_text()
    shipped = (
        "metarl run --config configs/default.yaml --teacher-config configs/reach_teacher.yaml "
        "\\\n  --showcase pretrained/pick_place_particles"
    )
    assert shipped in demo
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "WANDB_MODE": "offline"}
    runs = tmp_path / "runs"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "meta_rl",
            "run",
            "--config",
            "configs/default.yaml",
            "--teacher-config",
            "configs/reach_teacher.yaml",
            "--showcase",
            "pretrained/pick_place_particles",
            f"runs_dir={runs}",
            "train.iterations=2",
            "train.eval_every=1",
            "env.tasks_per_batch=8",
            "env.eval_tasks=4",
            f"teacher.runs_dir={runs}",
            "teacher.train.iterations=2",
            "teacher.env.tasks_per_batch=8",
            "teacher.env.eval_tasks=4",
            "eval.num_tasks=3",
            "eval.num_videos=1",
            "eval.video_size=[96,96]",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in runs.iterdir())
    assert [n.split("__")[0] for n in names] == ["default", "reach_teacher"], names
    student = next(runs.glob("default__0__*"))
    report = json.loads((student / "eval" / "eval.json").read_text())
    assert set(report["methods"]) == {"meta-agent", "zero-shot"}
    assert report["protocol"]["num_tasks"] == 3
    for name in ("eval.md", "adaptation_curve.png", "return_curve.png"):
        assert (student / "eval" / name).stat().st_size > 0, name
    assert list((student / "eval" / "videos").glob("*.mp4"))
    showcase = json.loads((student / "showcase" / "eval.json").read_text())
    assert showcase["checkpoint"].endswith("pick_place_particles/best.pt")
    assert showcase["protocol"]["num_tasks"] == 200 and showcase["protocol"]["task_seed"] == 1234
    assert list((student / "showcase" / "videos").glob("*.mp4"))
    assert "showcase:" in result.stdout
