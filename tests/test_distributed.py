"""Data-parallel meta-training under torchrun: 2 CPU processes (gloo) on the toy family of
tests/helpers/toy_family.py (toy/PointGoal-v0), each launched as ``python -m torch.distributed.run
--nproc-per-node 2 --standalone -m meta_rl train ...``; plus the collectives of
meta_rl.training.distributed on 2 processes, and what needs no process group."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from meta_rl.agent.networks import RunningNorm
from meta_rl.agent.policy import PolicyOutput
from meta_rl.checkpoint import load_checkpoint, locate
from meta_rl.experiment import PPOConfig
from meta_rl.logging import read_metrics
from meta_rl.training.distributed import (
    World,
    global_moments,
    init_world,
    learn_seed,
    state_digest,
)
from meta_rl.training.ppo import PPOBatch, ReturnScaler, ppo_loss_from_output

ROOT = Path(__file__).resolve().parents[1]

# 4 trials of 2 episodes of 8 steps: 64 env steps per iteration, whatever the processes.
TINY: dict[str, Any] = {
    "experiment": "tiny",
    "env": {
        "id": "toy/PointGoal-v0",
        "module": "helpers.toy_family",
        "tasks_per_batch": 4,
        "eval_tasks": 2,
        "episodes_per_trial": 2,
        "episode_steps": 8,
    },
    "train": {
        "iterations": 4,
        "eval_every": 2,
        "checkpoint_every": 1,
        "device": "cpu",
        "torch_threads": 1,
    },
    "ppo": {"minibatches": 2, "epochs": 2},
    "task_model": {"updates_per_iteration": 2},
    "logging": {"wandb_mode": "disabled", "progress_bar": False},
}


def _config(tmp_path: Path, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**TINY, "runs_dir": str(tmp_path / "runs")}))
    return path


def _command(nproc: int, *args: str, restarts: int = 0) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "meta_rl", "train", *args]
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone"]
    launcher.append(f"--max-restarts={restarts}")
    return [sys.executable, *launcher, "-m", "meta_rl", "train", *args]


def _env(digests: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}", "OMP_NUM_THREADS": "1"}
    if digests is not None:
        env["METARL_PARAM_DIGESTS"] = str(digests)
    return env


def _launch(
    nproc: int, *args: str, digests: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(nproc, *args),
        capture_output=True,
        text=True,
        env=_env(digests),
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def _run_dir(out: subprocess.CompletedProcess[str]) -> Path:
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [ln for ln in out.stdout.splitlines() if "run dir: " in ln]  # rank 0 alone
    return Path(line.removeprefix("run dir: "))


def _digests(folder: Path, rank: int) -> list[dict[str, Any]]:
    path = folder / f"rank{rank}.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def _networks(run_dir: Path, iteration: int) -> dict[str, torch.Tensor]:
    path = run_dir / "checkpoints" / f"ckpt_{iteration:08d}.pt"
    networks: dict[str, torch.Tensor] = load_checkpoint(path)["networks"]
    return networks


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """4 iterations on 2 processes: (run dir, folder of the per-rank digests)."""
    tmp = tmp_path_factory.mktemp("two_ranks")
    digests = tmp / "digests"
    out = _launch(2, "--config", str(_config(tmp)), digests=digests)
    return _run_dir(out), digests


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run as two_rank_run stopped after 2 iterations (tests resume copies of it)."""
    tmp = tmp_path_factory.mktemp("short")
    return _run_dir(_launch(2, "--config", str(_config(tmp)), "train.iterations=2"))


def test_two_processes_hold_the_same_networks_after_every_update(
    two_rank_run: tuple[Path, Path],
) -> None:
    run_dir, digests = two_rank_run
    rank0, rank1 = _digests(digests, 0), _digests(digests, 1)
    assert [r["iteration"] for r in rank0] == [1, 2, 3, 4]
    assert [r["digest"] for r in rank0] == [r["digest"] for r in rank1]
    assert rank0[0]["pid"] != rank1[0]["pid"]
    assert len({r["digest"] for r in rank0}) == 4  # every iteration changed the networks
    # The digests are of the networks rank 0 checkpointed.
    for it in (2, 3, 4):
        assert state_digest(_networks(run_dir, it)) == rank0[it - 1]["digest"]


def test_rank_zero_alone_writes_one_run(two_rank_run: tuple[Path, Path]) -> None:
    run_dir, _ = two_rank_run
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]
    assert sorted(p.name for p in run_dir.rglob("metrics.jsonl")) == ["metrics.jsonl"]
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    # env steps of both processes: 4 trials x 2 episodes x 8 steps per iteration
    assert [r["env_steps"] for r in records] == [64, 128, 192, 256]
    assert "adapt/return" in records[1] and "adapt/return" in records[3]
    payload = load_checkpoint(run_dir / "checkpoints" / "ckpt_00000004.pt")
    assert payload["meta"]["world_size"] == 2
    gens = payload["trainer"]["rank_learn_gens"]
    assert len(gens) == 2 and not torch.equal(gens[0], gens[1])
    assert torch.equal(gens[0], payload["trainer"]["learn_gen"])


def test_two_processes_of_half_the_tasks_match_one_process_of_all(tmp_path: Path) -> None:
    """2 ranks x 2 trials make the updates 1 rank x 4 trials makes, up to float32 rounding.

    The ranks take their rows of the task draw, the start seeds and the exploration noise from
    streams they share, so the trials are the same; the gradients are averaged and the
    advantages, normalisers and return scaler use the statistics of both ranks' data, so the
    update is the same sum in another order. Exact up to rounding only with one minibatch per
    epoch and no ELBO steps: with more, the minibatches are drawn per rank (another split of
    the same rows) and so are the ELBO's samples. Measured: at most 6e-8 apart after 4
    updates; one wrong update would move weights by up to ppo.lr (3e-4): the tolerance 1e-6
    is 16x the rounding and 300x below one step.
    """
    config = _config(tmp_path)
    exact = ("ppo.minibatches=1", "task_model.updates_per_iteration=0")
    one = _run_dir(_launch(1, "--config", str(config), f"runs_dir={tmp_path / 'one'}", *exact))
    two = _run_dir(_launch(2, "--config", str(config), f"runs_dir={tmp_path / 'two'}", *exact))
    assert _max_diff(_networks(one, 4), _networks(two, 4)) < 1e-6
    assert _max_diff(_networks(one, 2), _networks(one, 4)) > 1e-4  # the updates did move them
    a, b = read_metrics(one), read_metrics(two)
    assert [r["env_steps"] for r in a] == [r["env_steps"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ("train/return", "train/return_ep1", "train/return_ep2", "adapt/return"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-6), key
    sa = load_checkpoint(one / "checkpoints" / "ckpt_00000004.pt")["trainer"]["scaler"]
    sb = load_checkpoint(two / "checkpoints" / "ckpt_00000004.pt")["trainer"]["scaler"]
    assert sb == pytest.approx(sa, rel=1e-6)


def test_resume_on_the_same_number_of_processes_is_exact(
    short_run: Path, two_rank_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / short_run.name
    shutil.copytree(short_run, run_dir)
    out = _launch(2, "--resume", str(run_dir), "train.iterations=4")
    assert _run_dir(out) == run_dir
    full, _ = two_rank_run
    resumed, uninterrupted = _networks(run_dir, 4), _networks(full, 4)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert _without_time(read_metrics(run_dir)) == _without_time(read_metrics(full))
    (line,) = [json.loads(ln) for ln in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert line["world_size"] == [2, 2] and "warning" not in line


def test_resume_on_another_number_of_processes_says_what_changes(
    short_run: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / short_run.name
    shutil.copytree(short_run, run_dir)
    out = _launch(1, "--resume", str(run_dir), "train.iterations=3")
    assert _run_dir(out) == run_dir
    assert "warning: resumed a checkpoint of 2 processes with 1" in out.stderr
    (line,) = [json.loads(ln) for ln in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert line["world_size"] == [2, 1]
    assert "the ranks' learner draws" in line["warning"]
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert "world_size" not in load_checkpoint(locate(run_dir, prefer="latest").file)["meta"]


def test_maml_trains_on_two_processes_in_step(tmp_path: Path) -> None:
    digests = tmp_path / "digests"
    out = _launch(
        2,
        "--config",
        str(_config(tmp_path)),
        "maml.enabled=true",
        "maml.rollouts_per_task=2",
        "encoder.rl_gradients=true",
        "train.iterations=2",
        digests=digests,
    )
    run_dir = _run_dir(out)
    assert [r["digest"] for r in _digests(digests, 0)] == [
        r["digest"] for r in _digests(digests, 1)
    ]
    assert "maml/inner_loss_pre" in read_metrics(run_dir)[0]


def test_a_meta_batch_that_does_not_split_evenly_is_refused(tmp_path: Path) -> None:
    out = _launch(2, "--config", str(_config(tmp_path)), "env.tasks_per_batch=3")
    assert out.returncode != 0
    assert "env.tasks_per_batch: got 3 for 2 processes; allowed: a multiple of 2" in out.stderr
    assert not (tmp_path / "runs").exists()


def _kill_rank1_mid_run(command: list[str], digests: Path, timeout: float) -> tuple[int, str, str]:
    """Start ``command`` in its own session, SIGKILL rank 1 once it has logged three
    iterations, and return the launcher's ``(returncode, stdout, stderr)``."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(digests),
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        rank1 = digests / "rank1.jsonl"
        start = time.monotonic()
        while not (rank1.is_file() and len(rank1.read_text().splitlines()) >= 3):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() - start < 90, "the job did not start"
            time.sleep(0.05)
        os.kill(_digests(digests, 1)[0]["pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # the launcher: the session this test started
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        _kill_workers_of(digests.parent)
    return proc.returncode, out, err


def _kill_workers_of(tmp_path: Path) -> None:
    """SIGKILL the processes whose command line names ``tmp_path``: torchrun starts each
    worker in a session of its own, so a launcher killed on a timeout leaves them behind."""
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if str(tmp_path).encode() in cmdline and int(proc_dir.name) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)


def test_a_killed_process_stops_the_job_and_the_run_resumes(tmp_path: Path) -> None:
    digests = tmp_path / "digests"
    returncode, _, err = _kill_rank1_mid_run(
        _command(2, "--config", str(_config(tmp_path)), "train.iterations=100000"), digests, 90
    )
    assert returncode != 0
    assert "Signal 9 (SIGKILL)" in err  # torchrun's report: the process that failed
    # Rank 0 either sees the lost peer in a collective, or torchrun's SIGTERM reaches it
    # first (a loaded machine, rank 0 collecting): either way it stops with the resume hint.
    assert (
        "metarl train: stopped: rank 0 lost the other processes of the job" in err
        or "metarl train: stopped: rank 0 received SIGTERM" in err
    ), err[-3000:]
    assert "is kept; continue with `torchrun ... -m meta_rl train --resume" in err
    (run_dir,) = (tmp_path / "runs").iterdir()
    last = locate(run_dir, prefer="latest").file
    done = load_checkpoint(last)["meta"]["iteration"]  # intact: its checksum verifies
    assert done >= 2
    out = _launch(2, "--resume", str(run_dir), f"train.iterations={done + 2}")
    assert _run_dir(out) == run_dir
    assert [r["iteration"] for r in read_metrics(run_dir)] == list(range(1, done + 3))


def test_torchrun_restarts_a_failed_job_from_its_last_checkpoint(tmp_path: Path) -> None:
    """``torchrun --max-restarts`` with ``--run-dir``: the restarted job resumes the run."""
    digests, run_dir = tmp_path / "digests", tmp_path / "run"
    args = ("--config", str(_config(tmp_path)), "--run-dir", str(run_dir), "train.iterations=60")
    # One restart is enough: each attempt of the job has its own keys in torchrun's store
    # (without them, the new processes read the dead ones' addresses and hang or fail).
    returncode, out, err = _kill_rank1_mid_run(_command(2, *args, restarts=1), digests, 120)
    assert returncode == 0, err[-3000:]
    assert out.splitlines()[-1] == f"run dir: {run_dir}"
    pids = {r["pid"] for r in _digests(digests, 1)}
    assert len(pids) >= 2  # the killed process and its replacement
    lines = [json.loads(ln) for ln in (run_dir / "resumes.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["world_size"] == [2, 2]
    # Rank 1 is killed once it has logged iteration 3. Rank 0 wrote checkpoint 2 before it
    # joined iteration 3's digest exchange, but may not have written checkpoint 3 yet.
    assert 2 <= lines[0]["iteration"] < 60
    assert [r["iteration"] for r in read_metrics(run_dir)] == list(range(1, 61))
    rank0 = {r["iteration"]: r["digest"] for r in _digests(digests, 0)}
    assert all(rank0[r["iteration"]] == r["digest"] for r in _digests(digests, 1))


def test_privileged_switches_and_the_batched_simulator_on_two_processes(tmp_path: Path) -> None:
    """Reach (the batched simulator) with the asymmetric critic and task inference."""
    digests = tmp_path / "digests"
    out = _launch(
        2,
        "--config",
        str(ROOT / "configs" / "smoke.yaml"),
        f"runs_dir={tmp_path / 'runs'}",
        "privileged.critic=true",
        "privileged.task_inference_weight=1.0",
        digests=digests,
    )
    run_dir = _run_dir(out)
    rank0, rank1 = _digests(digests, 0), _digests(digests, 1)
    assert [r["digest"] for r in rank0] == [r["digest"] for r in rank1]
    records = read_metrics(run_dir)
    assert [r["env_steps"] for r in records] == [80, 160]  # 4 trials x 2 episodes x 10 steps
    assert "losses/task_inference" in records[-1]


def test_the_main_job_trains_on_two_processes_and_evaluates_on_rank_zero(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    out = subprocess.run(
        [
            *cmd,
            *("-m", "meta_rl", "run", "--config", "configs/smoke.yaml"),
            *("--eval-config", "configs/eval/smoke.yaml", f"runs_dir={tmp_path}"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    run_dir = _run_dir(out)
    assert list(tmp_path.iterdir()) == [run_dir]
    report = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert set(report["methods"]) >= {"meta-agent", "zero-shot"}
    assert out.stdout.count("meta-agent: success per episode") == 1


COLLECTIVES = """
import json, os, sys
import torch
from torch import nn
from meta_rl.errors import JobStopped
from meta_rl.training.distributed import (
    average_gradients, broadcast_from_main, close_world, exit_process, global_moments,
    init_world, reduce_metrics,
)
world = init_world(torch.device("cpu"))
r = world.rank
out = {"rank": r, "size": world.size, "backend": world.backend}
p = nn.Parameter(torch.zeros(3))
p.grad = torch.tensor([1.0, 2.0, 3.0]) * (r + 1)
out["applied"] = average_gradients(world, [p], True)
out["grad"] = p.grad.tolist()
p.grad = torch.ones(3)
out["skipped_everywhere"] = not average_gradients(world, [p], finite=(r == 0))
x = torch.arange(6, dtype=torch.float64).reshape(3, 2) * (r + 1) + r
mean, var, count = global_moments(world, x)
out["moments"] = [mean.tolist(), var.tolist(), count]
y = torch.tensor([[float("nan")]]) if r == 1 else torch.ones(1, 1)
out["nonfinite_moments"] = global_moments(world, y)
out["metrics"] = reduce_metrics(
    world, {"a": float(r), "s": 1.0 + r, "m": 10.0 * r}, sums=("s",), maxima=("m",)
)
def refuse():
    raise ValueError("env.x: refused on rank 0")
try:
    broadcast_from_main(world, refuse)
except ValueError as e:
    out["error"] = str(e)
close_world(world)
with open(os.path.join(sys.argv[1], f"rank{r}.json"), "w") as f:
    json.dump(out, f)
exit_process(0)
"""


def test_collectives_average_reduce_and_broadcast_on_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    out = subprocess.run(
        [*cmd, "--standalone", str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = torch.cat(
        [torch.arange(6, dtype=torch.float64).reshape(3, 2) * (r + 1) + r for r in (0, 1)]
    )
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (got["size"], got["backend"]) == (2, "gloo")
        assert got["applied"] and got["grad"] == [1.5, 3.0, 4.5]  # the mean, not the sum
        assert got["skipped_everywhere"]
        mean, var, count = got["moments"]
        assert count == 6
        assert mean == pytest.approx(rows.mean(0).tolist())
        assert var == pytest.approx(rows.var(0, unbiased=False).tolist())
        assert got["nonfinite_moments"] is None
        assert got["metrics"] == {"a": 0.5, "s": 3.0, "m": 10.0}
        assert got["error"] == "env.x: refused on rank 0"


def test_the_reduced_forms_of_one_process_equal_the_local_ones() -> None:
    """With one rank (the sum over ranks is the identity) the distributed formulas of the
    advantage standardisation, the normalisers and the return scaler give the local results."""
    gen = torch.Generator().manual_seed(0)
    n, a = 64, 3
    batch = PPOBatch(
        obs=torch.zeros(n, 1),
        belief=torch.zeros(n, 1),
        actions=torch.randn(n, a, generator=gen),
        old_log_probs=torch.randn(n, generator=gen),
        advantages=torch.randn(n, generator=gen) * 3 + 1,
        returns=torch.randn(n, generator=gen),
        mask=torch.rand(n, generator=gen) > 0.2,
    )
    out = PolicyOutput(torch.randn(n, a, generator=gen), torch.zeros(a), torch.randn(n))
    local = ppo_loss_from_output(out, batch, PPOConfig())
    reduced = ppo_loss_from_output(out, batch, PPOConfig(), reduce=lambda x: x.clone())
    assert float(reduced.total) == pytest.approx(float(local.total), rel=1e-6)
    assert float(reduced.policy_loss) == pytest.approx(float(local.policy_loss), rel=1e-6)

    one = World()
    x = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    x[3, 1] = float("nan")  # dropped by the normaliser before the moments are taken
    norm_local, norm_reduced = RunningNorm(4), RunningNorm(4)
    for _ in range(2):
        norm_local.update(x)
        norm_reduced.update(x, lambda rows: global_moments(one, rows))
    assert torch.allclose(norm_local.mean, norm_reduced.mean)
    assert torch.allclose(norm_local.var, norm_reduced.var)
    assert float(norm_local.count) == float(norm_reduced.count) == 2 * 49 + 1e-4

    def moments(r: np.ndarray) -> tuple[float, float, int] | None:
        stats = global_moments(one, torch.from_numpy(r))
        return None if stats is None else (float(stats[0][0]), float(stats[1][0]), stats[2])

    rewards = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    scaler_local, scaler_reduced = ReturnScaler(0.9), ReturnScaler(0.9, moments=moments)
    np.testing.assert_allclose(scaler_local.scale(rewards), scaler_reduced.scale(rewards), 1e-6)
    assert scaler_reduced.state_dict() == pytest.approx(scaler_local.state_dict(), rel=1e-12)
    rewards[2, 3] = np.nan  # a non-finite batch leaves the statistics as they were
    before = scaler_reduced.state_dict()
    scaler_reduced.scale(rewards)
    assert scaler_reduced.state_dict() == before


def test_one_process_is_a_world_of_one_without_a_process_group() -> None:
    assert init_world(torch.device("cpu"), {}) == World()
    assert init_world(torch.device("cpu"), {"WORLD_SIZE": "1", "RANK": "0"}) == World()
    assert not World().distributed and World().is_main
    assert World().shard(5, "env.tasks_per_batch") == slice(0, 5)


def test_each_rank_takes_its_whole_tasks_of_the_meta_batch() -> None:
    assert [World(rank=r, size=2).shard(8, "env.tasks_per_batch") for r in (0, 1)] == [
        slice(0, 4),
        slice(4, 8),
    ]
    assert World(rank=1, size=2).shard(12, "env.tasks_per_batch", unit=3) == slice(6, 12)
    with pytest.raises(ValueError, match=r"env.tasks_per_batch: got 6 \(3 tasks of 2 rollouts\)"):
        World(rank=0, size=2).shard(6, "env.tasks_per_batch", unit=2)
    with pytest.raises(ValueError, match="allowed: a multiple of 3"):
        World(rank=2, size=3).shard(4, "env.tasks_per_batch")


def test_learner_streams_are_the_rank_s_own_and_rank_zero_keeps_the_old_one() -> None:
    assert learn_seed(5, 0) == 7  # what one process has always used
    seeds = {learn_seed(5, r) for r in range(8)}
    assert len(seeds) == 8
    assert learn_seed(5, 3) == learn_seed(5, 3) != learn_seed(6, 3)


def test_exit_process_leaves_a_process_that_never_joined_a_group_running() -> None:
    from meta_rl.training.distributed import exit_process

    exit_process(3)  # returns: pytest itself is still here


def test_a_stopping_process_ignores_the_next_sigterm() -> None:
    """SIGTERM stops a rank once; the process then ignores SIGTERM until it exits (torchrun's
    SIGTERM races with a rank's own discovery of a lost peer), and a run that ends normally
    gets the previous handler back."""
    from meta_rl.errors import JobStopped
    from meta_rl.training.distributed import World, stop_on_sigterm

    world = World(rank=0, size=2, backend="gloo")
    before = signal.getsignal(signal.SIGTERM)
    try:
        with stop_on_sigterm(world):
            assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) == before
        with pytest.raises(JobStopped, match="rank 0 received SIGTERM"), stop_on_sigterm(world):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises at the next bytecode
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: pytest is still here
        # Any error on the way out: the same.
        with pytest.raises(ValueError), stop_on_sigterm(world):
            raise ValueError("lost")
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
