"""A user's task family from the command line: examples/hidden_pendulum.py end to end.

The example is used the way a user would: named by ``env.module`` (or Gymnasium's
``module:id``), made importable by the current directory, trained, resumed and evaluated with
the ``metarl`` command in fresh processes, with and without videos, and without any frames.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

from meta_rl.cli import main
from meta_rl.logging import read_metrics
from meta_rl.task_envs.family import (
    TaskProtocolError,
    TaskWrapper,
    find_task_env,
    register_family,
    resolve_episode_steps,
    split_env_id,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ID = "byo/HiddenPendulum-v0"
EXAMPLE_MODULE = "examples.hidden_pendulum"
TINY = [
    "env.tasks_per_batch=4",
    "env.eval_tasks=2",
    "env.episodes_per_trial=2",
    "env.episode_steps=10",
    "train.iterations=2",
    "train.eval_every=1",
    "train.checkpoint_every=1",
    "train.device=cpu",
    "train.torch_threads=1",
    "ppo.epochs=1",
    "ppo.minibatches=1",
    "task_model.updates_per_iteration=1",
    "logging.wandb_mode=disabled",
    "logging.progress_bar=false",
]
EVAL_TINY = [
    "num_tasks=2",
    "num_seeds=2",
    "num_episodes=2",
    "num_bootstrap=100",
    "wandb_mode=disabled",
    "progress_bar=false",
    "device=cpu",
]


def _metarl(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``metarl`` as a user runs it: the console script (its folder, not the current one, is on
    the import path) when installed, else ``python -m meta_rl``."""
    script = Path(sys.executable).with_name("metarl")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "meta_rl"]
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": "egl"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# ----------------------------------------------------------------------------- the module


def test_split_env_id_reads_gymnasiums_module_form() -> None:
    assert split_env_id("pkg.mod:ns/Name-v0") == ("pkg.mod", "ns/Name-v0")
    assert split_env_id("ns/Name-v0") == (None, "ns/Name-v0")


def test_register_family_imports_the_module_and_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_family_mod.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('mine/Fam-v0', entry_point='examples.hidden_pendulum:HiddenPendulumEnv',"
        " max_episode_steps=50)\n"
    )
    monkeypatch.chdir(tmp_path)  # found from the current directory, like a user's module
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.syspath_prepend(str(ROOT))
    assert register_family("mine/Fam-v0", "my_family_mod") == "mine/Fam-v0"
    assert register_family(f"{EXAMPLE_MODULE}:{EXAMPLE_ID}") == EXAMPLE_ID
    with pytest.raises(ValueError, match=r"'mine/Nope-v0' is not registered; .*mine/Fam-v0"):
        register_family("mine/Nope-v0")
    with pytest.raises(ValueError, match=r"name the module that registers it: env.module="):
        register_family("other/Nope-v0")
    with pytest.raises(ValueError, match=r"cannot import 'no_such_family_xyz'"):
        register_family("x/Y-v0", "no_such_family_xyz")
    with pytest.raises(ValueError, match=r"at most 50, the registered time limit"):
        resolve_episode_steps("mine/Fam-v0", 51, "env.episode_steps")
    assert resolve_episode_steps("mine/Fam-v0", None, "env.episode_steps") == 50


def test_task_wrapper_offers_the_protocol_under_gymnasiums_wrappers() -> None:
    register_family(EXAMPLE_ID, EXAMPLE_MODULE)
    env = gym.make(EXAMPLE_ID, split="test")
    assert isinstance(env, gym.Wrapper) and not hasattr(env.unwrapped, "task_distribution")
    task_env = find_task_env(env)
    assert isinstance(task_env, TaskWrapper)
    # Unpinned: reproducible draws from the construction split, seeded by reset.
    env.reset(seed=3)
    first = task_env.task
    env.reset(seed=3)
    assert task_env.task == first and first.gravity >= 11.0  # the test split
    task = task_env.task_distribution.sample(1, "train", np.random.default_rng(0))[0]
    task_env.set_task(task)
    for seed in (0, 1):
        env.reset(seed=seed)
        assert task_env.task == task
        inner = env.unwrapped
        assert (inner.g, inner.m, inner.l) == (task.gravity, task.mass, task.length)  # type: ignore[attr-defined]
    _, _, _, _, info = env.step(np.zeros(1, dtype=np.float32))
    assert info["success"] in (0.0, 1.0)
    env.close()
    with pytest.raises(TaskProtocolError, match=r"lacks task_distribution, set_task"):
        find_task_env(gym.make("Pendulum-v1"))


# ----------------------------------------------------------------------------- end to end


def test_example_family_trains_resumes_and_evaluates_from_the_cli(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = "configs/byo_pendulum.yaml"
    _ok(_metarl("train", "--config", config, "--run-dir", str(run), *TINY))
    assert yaml.safe_load((run / "config.yaml").read_text())["env"]["module"] == EXAMPLE_MODULE
    # A budget change on resume is accepted and recorded.
    _ok(_metarl("train", "--resume", str(run), "train.iterations=3"))
    assert [r["iteration"] for r in read_metrics(run)] == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["iterations"] == 3
    (resume,) = [json.loads(ln) for ln in (run / "resumes.jsonl").read_text().splitlines()]
    assert resume["iteration"] == 2 and resume["changes"] == {"train.iterations": [2, 3]}
    # Evaluation finds the family again from the run's config, videos included.
    out = _ok(_metarl("evaluate", "--checkpoint", str(run), "num_videos=1", *EVAL_TINY))
    assert "meta-agent: success per episode k" in out
    data = json.loads((run / "eval" / "eval.json").read_text())
    assert data["env_id"] == EXAMPLE_ID
    (video,) = data["files"]["videos"]
    assert (run / "eval" / video["path"]).stat().st_size > 1000
    assert data["files"]["videos_skipped"] == []
    # Without videos.
    _ok(
        _metarl(
            "evaluate",
            "--checkpoint",
            str(run),
            "--out",
            str(tmp_path / "e1"),
            "num_videos=0",
            *EVAL_TINY,
        )
    )
    assert json.loads((tmp_path / "e1" / "eval.json").read_text())["files"]["videos"] == []
    # Comparing trained runs finds the family from the runs' configs too.
    tiny = tmp_path / "tiny_eval.yaml"
    tiny.write_text("\n".join(o.replace("=", ": ") for o in EVAL_TINY) + "\nnum_videos: 0\n")
    out = _ok(
        _metarl(
            "bench-train",
            "--compare",
            f"pendulum={run}",
            "--eval-config",
            str(tiny),
            "--out",
            str(tmp_path / "cmp"),
        )
    )
    assert "pendulum zero-shot" in (tmp_path / "cmp" / "eval" / "eval.md").read_text()


def test_gymnasiums_module_id_form_trains_without_episode_steps_and_evaluates(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    tiny = [o for o in TINY if not o.startswith("env.episode_steps")]
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                f"env.id={EXAMPLE_MODULE}:{EXAMPLE_ID}",
                "env.batched=false",
                "train.iterations=1",
                *tiny,
            ]
        )
        == 0
    )
    out = _metarl("evaluate", "--checkpoint", str(run), "num_videos=0", *EVAL_TINY)
    _ok(out)
    data = json.loads((run / "eval" / "eval.json").read_text())
    assert data["env_id"] == f"{EXAMPLE_MODULE}:{EXAMPLE_ID}"
    assert data["methods"]["meta-agent"]["success"][0]["n"] == 4


_NO_FRAMES = textwrap.dedent(
    """
    import gymnasium as gym
    from examples.hidden_pendulum import HiddenPendulumEnv

    class NoFramesPendulum(HiddenPendulumEnv):
        def render(self):
            raise gym.error.DependencyNotInstalled("pygame is not installed")

    gym.register("byo/NoFramesPendulum-v0", entry_point=NoFramesPendulum, max_episode_steps=200)
    """
)


def test_a_family_without_frames_still_evaluates_and_the_videos_are_skipped(
    tmp_path: Path,
) -> None:
    # The user's module lives in their own folder (the current directory), not in the repo.
    (tmp_path / "no_frames.py").write_text(_NO_FRAMES)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    run = tmp_path / "run"
    _ok(
        _metarl(
            "train",
            "--run-dir",
            str(run),
            "env.id=byo/NoFramesPendulum-v0",
            "env.module=no_frames",
            "env.batched=false",
            "train.iterations=1",
            *TINY,
            cwd=tmp_path,
        )
    )
    out = _metarl("evaluate", "--checkpoint", str(run), "num_videos=2", *EVAL_TINY, cwd=tmp_path)
    _ok(out)
    assert "video of task 0 skipped" in out.stderr
    data = json.loads((run / "eval" / "eval.json").read_text())
    assert data["files"]["videos"] == []
    assert [v["task_index"] for v in data["files"]["videos_skipped"]] == [0, 1]
    assert "pygame is not installed" in data["files"]["videos_skipped"][0]["error"]
    assert (run / "eval" / "eval.md").is_file()
    # Filming one video on purpose is an error, in one line.
    out = _metarl("video", "--checkpoint", str(run), "device=cpu", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("metarl video: error: ")
    assert "Traceback" not in out.stderr
