"""meta_rl.training.benchmark (metarl bench-train): JSON summary and plot from short runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

from helpers.toy_family import TOY_ID
from meta_rl.training.benchmark import bench_train

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

TOY_CONFIG = f"""
env:
  id: {TOY_ID}
  tasks_per_batch: 4
  episodes_per_trial: 2
  episode_steps: 6
  eval_tasks: 3
ppo: {{epochs: 1, minibatches: 2}}
task_model: {{updates_per_iteration: 1}}
logging: {{progress_bar: false}}
"""


def test_bench_train_writes_json_and_png(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "reach.yaml").write_text(TOY_CONFIG)
    summary = bench_train(
        tmp_path / "out", variants=["reach"], iterations=4, eval_every=2, config_dir=configs
    )
    res = summary["variants"]["reach"]
    assert res["env_steps"] == 4 * 4 * 2 * 6
    assert res["env_steps_per_s"] > 0 and res["overall_steps_per_s"] > 0
    assert [p["env_steps"] for p in res["curve"]] == [96, 192]
    # The curve reads the run's held-out evaluations: the last episode of a trial (K = 2) and
    # the first, each a share of the 3 held-out trials.
    records = [
        json.loads(line)
        for line in (Path(res["run_dir"]) / "metrics.jsonl").read_text().splitlines()
        if "adapt/success_ep2" in line
    ]
    for point, record in zip(res["curve"], records, strict=True):
        assert point["success_last_episode"] == record["adapt/success_ep2"]
        assert point["success_first_episode"] == record["adapt/success_ep1"]
        for key in ("success_last_episode", "success_first_episode"):
            assert point[key] * 3 == pytest.approx(round(point[key] * 3)), key
            assert 0.0 <= point[key] <= 1.0, key
    saved = json.loads((tmp_path / "out" / "bench_train.json").read_text())
    assert saved["variants"]["reach"]["curve"] == res["curve"]
    assert (tmp_path / "out" / "bench_train.png").stat().st_size > 1000


def test_unknown_variant_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"variants: got 'walk'; allowed: reach, push"):
        bench_train(tmp_path, variants=["walk"])


def test_scripts_answer_help() -> None:
    for script in ("train.py", "bench_train.py"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "--config" in out.stdout or "--variants" in out.stdout


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (orphans may wait long for a reaper here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_training_workers_end_with_a_killed_parent(tmp_path: Path) -> None:
    """``bench-train --jobs``'s workers stop when their parent is killed (a kill signal does not
    reach them, unlike Ctrl-C): the same pool set-up, with a worker that would sleep 10 min."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from meta_rl.training.benchmark import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),\n"
        "                               initializer=exit_with_parent, initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 600)\n"
        "    time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60.0  # a liveness bound, not a timing claim
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent")


def test_profile_times_every_phase_and_the_phases_sum_to_the_iteration(tmp_path: Path) -> None:
    from meta_rl.experiment import load_experiment
    from meta_rl.training.profile import PHASES, profile_training

    (tmp_path / "reach.yaml").write_text(TOY_CONFIG)
    cfg = load_experiment(tmp_path / "reach.yaml", ["logging.wandb_mode=disabled"])
    result = profile_training(cfg, iterations=2)
    assert list(result["phases"]) == list(PHASES)
    assert result["env_steps_per_iteration"] == 4 * 2 * 6
    shares = [row["share"] for row in result["phases"].values()]
    assert sum(shares) == pytest.approx(1.0)
    for phase in ("collect/env_step", "collect/agent_act", "update/policy", "update/elbo"):
        assert result["phases"][phase]["s_per_iteration"] > 0
    assert result["evaluate_s"] > 0
    rates, ratios = result["steps_per_s"], result["ratios"]
    assert rates["overall"] == pytest.approx(
        result["env_steps_per_iteration"] / result["iteration_s"]
    )
    collect_s = sum(
        row["s_per_iteration"] for name, row in result["phases"].items() if name.startswith("co")
    )
    assert rates["collection"] == pytest.approx(result["env_steps_per_iteration"] / collect_s)
    assert rates["physics_only"] > 0
    assert ratios["collection/physics"] == pytest.approx(
        rates["collection"] / rates["physics_only"]
    )
    assert ratios["overall/collection"] == pytest.approx(rates["overall"] / rates["collection"])
    assert 0 < ratios["overall/collection"] < 1  # the iteration holds the collection and more
    assert result["setup"]["sub_envs"] == 4
    assert not any(tmp_path.glob("runs*")), "profiling writes no run directory"


def test_physics_only_steps_the_simulator_with_in_bounds_random_actions() -> None:
    from meta_rl.training.profile import physics_only_seconds

    class Env:
        num_envs = 3
        single_action_space = gymnasium.spaces.Box(-0.5, 0.25, (2,), np.float32)

        def __init__(self) -> None:
            self.resets: list[int | None] = []
            self.actions: list[np.ndarray] = []

        def reset(self, seed: int | None = None) -> None:
            self.resets.append(seed)

        def step(self, action: np.ndarray) -> None:
            self.actions.append(action)

    env = Env()
    seconds = physics_only_seconds(
        env, episodes=2, episode_steps=5, seed=7, rng=np.random.default_rng(0)
    )
    assert seconds > 0 and env.resets == [7, None] and len(env.actions) == 10
    acts = np.stack(env.actions)
    assert acts.shape == (10, 3, 2) and acts.dtype == np.float32
    assert acts.min() >= -0.5 and acts.max() <= 0.25 and acts.std() > 0.1


def test_profile_command_writes_json_and_refuses_other_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meta_rl.cli import main

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "reach.yaml").write_text(TOY_CONFIG)
    args = ["bench-train", "--profile", "--variants", "reach", "--iterations", "1"]
    args += ["--config-dir", str(configs), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "collect/env_step" in capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "profile.json").read_text())
    assert set(saved["variants"]) == {"reach"}
    assert main([*args, "--jobs", "2"]) == 2
    assert "--profile times the variants' training: drop --jobs" in capsys.readouterr().err
