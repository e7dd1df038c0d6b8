"""Speed of the envs, side by side with Meta-World's ``pick-place-v3``.

Measured in one run: our pick-place env single-process with random actions, the batched
simulator at several sizes, the physics floor (raw ``mj_step`` per second of our model divided by
the frame skip, one core), rendering at 480x480, and Meta-World in its own virtual environment
(it pins another MuJoCo). Throughputs are compared both in env steps per second and in simulated
seconds per wall second (our control period is 15 ms, Meta-World's 12.5 ms); the lesser ratio
counts. Every timing is the best of ``repeats`` runs. Each row records both wall-clock steps/s and
steps per CPU-second of the process (all its threads): on a shared machine other processes steal
wall-clock time, so ratios are given for both clocks; the CPU clock is the fair one there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchResult", "format_table", "run_benchmark"]

ENV_ID = "metarl/PickPlace-v0"

_MW_SNIPPET = r"""
import json, sys, time
import numpy as np
steps, repeats = int(sys.argv[1]), int(sys.argv[2])
import metaworld
ml1 = metaworld.ML1("pick-place-v3", seed=0)
env = ml1.train_classes["pick-place-v3"]()
env.set_task(ml1.train_tasks[0])
env.reset(seed=0)
rng = np.random.default_rng(0)
actions = rng.uniform(-1, 1, (steps, 4)).astype(np.float32)
best, best_cpu = float("inf"), float("inf")
for _ in range(repeats):
    env.reset()
    start, cpu = time.perf_counter(), time.process_time()
    for a in actions:
        out = env.step(a)
        if out[3] or out[2]:
            env.reset()
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - cpu)
dt = float(env.model.opt.timestep) * int(env.frame_skip)
import mujoco
print(json.dumps({"steps_per_s": steps / best, "cpu_steps_per_s": steps / best_cpu,
                  "control_dt": dt, "mujoco": mujoco.__version__}))
"""


@dataclass
class BenchResult:
    """One measured row: env steps per second and the simulated seconds per wall second."""

    name: str
    steps_per_s: float
    cpu_steps_per_s: float
    control_dt: float
    cores: int = 1
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sim_s_per_s(self) -> float:
        return self.steps_per_s * self.control_dt


def _best_rate(run: Callable[[], int], repeats: int) -> tuple[float, float]:
    """Best wall-clock and CPU-clock (all threads of this process) rates of ``run``."""
    best, best_cpu = 0.0, 0.0
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        count = run()
        best = max(best, count / (time.perf_counter() - start))
        best_cpu = max(best_cpu, count / max(time.process_time() - cpu, 1e-9))
    return best, best_cpu


def bench_single(steps: int, repeats: int) -> list[BenchResult]:
    """Our pick-place env, one process, random actions: through gymnasium.make and unwrapped."""
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.scene import FRAME_SKIP

    env = gym.make(ENV_ID)
    dt = FRAME_SKIP * float(env.unwrapped.model.opt.timestep)  # type: ignore[attr-defined]
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 4)).astype(np.float32)
    results = []
    for name, target in (("single env (gymnasium.make)", env), ("single env (unwrapped)", None)):
        stepper = env if target is not None else env.unwrapped
        env.reset(seed=0)

        def run(stepper: Any = stepper) -> int:
            count = 0
            for t, a in enumerate(actions):
                _, _, _, truncated, _ = stepper.step(a)
                count += 1
                if truncated or (t + 1) % 150 == 0:
                    env.reset()
            return count

        results.append(BenchResult(name, *_best_rate(run, repeats), dt))
    env.close()
    return results


def bench_batched(sizes: tuple[int, ...], steps: int, repeats: int) -> list[BenchResult]:
    """The batched simulator with N sub-envs on all cores, random actions."""
    from envs.batched import make_batched
    from envs.scene import FRAME_SKIP

    cores = os.cpu_count() or 1
    results = []
    for n in sizes:
        env = make_batched(ENV_ID, n)
        dt = FRAME_SKIP * float(env.models[0].opt.timestep)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        nsteps = max(20, steps // n)
        actions = rng.uniform(-1, 1, (nsteps, n, 4))

        def run(env: Any = env, actions: np.ndarray = actions, n: int = n) -> int:
            for a in actions:
                env.step(a)
            return len(actions) * n

        threads = min(n, cores)
        results.append(
            BenchResult(
                f"batched N={n}",
                *_best_rate(run, repeats),
                dt,
                cores=threads,
                extra={"num_envs": n},
            )
        )
        env.close()
    return results


def bench_physics_floor(steps: int, repeats: int) -> BenchResult:
    """Raw mj_step per second of our model divided by the frame skip: the same random-action
    trajectories as the envs (mocap target and gripper written every frame_skip steps, reset
    every 150 env steps, each reset switching to the next of 16 train-split tasks, so the floor
    steps the same mix of shapes as the envs), with no observation, reward or bookkeeping.

    Every task's model and start state are built before the clock starts: a reset is one
    ``mj_copyData``."""
    import mujoco

    from envs import scene as sc
    from envs.tasks import TaskDistribution

    tasks = TaskDistribution("pick_place").sample(16, "train", np.random.default_rng(0))
    models, starts = [], []
    for task in tasks:
        model = sc.load_model()
        start = mujoco.MjData(model)
        sc.apply_task(model, start, task)
        sc.start_episode(model, start, task)
        models.append(model)
        starts.append(start)
    datas = [mujoco.MjData(m) for m in models]

    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps // sc.FRAME_SKIP, 4))

    def run() -> int:
        mocap = sc.HOME.copy()
        model, data = models[0], datas[0]
        for t, a in enumerate(actions):
            if t % 150 == 0:
                k = (t // 150) % len(models)
                model, data = models[k], datas[k]
                mujoco.mj_copyData(data, model, starts[k])
                mocap = sc.HOME.copy()
            mocap = np.minimum(
                np.maximum(mocap + a[:3] * sc.ACTION_SCALE, sc.MOCAP_LOW), sc.MOCAP_HIGH
            )
            data.mocap_pos[0] = mocap
            data.ctrl[:] = sc.FINGER_OPEN * 0.5 * (1.0 - a[3])
            mujoco.mj_step(model, data, nstep=sc.FRAME_SKIP)
        return len(actions) * sc.FRAME_SKIP

    wall, cpu = _best_rate(run, repeats)
    dt = sc.FRAME_SKIP * float(models[0].opt.timestep)
    return BenchResult(
        "physics floor (mj_step/s / frame skip)",
        wall / sc.FRAME_SKIP,
        cpu / sc.FRAME_SKIP,
        dt,
        extra={"mj_step_per_s": wall, "cpu_mj_step_per_s": cpu},
    )


def bench_render(frames: int, repeats: int, width: int = 480, height: int = 480) -> BenchResult:
    """Frames per second of ``render()`` at width x height from the front camera."""
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make(ENV_ID, render_mode="rgb_array", width=width, height=height)
    env.reset(seed=0)
    env.render()

    def run() -> int:
        for _ in range(frames):
            env.render()
        return frames

    fps, cpu_fps = _best_rate(run, repeats)
    env.close()
    backend = os.environ.get("MUJOCO_GL", "default")
    return BenchResult(f"render {width}x{height} (frames/s)", fps, cpu_fps, 0.0, note=backend)


def ensure_metaworld_venv(venv: Path) -> Path | None:
    """The Python of a virtualenv with metaworld installed (built on first use), or None."""
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    check = [str(python), "-c", "import metaworld"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "metaworld", "packaging"],
            check=True,
            capture_output=True,
            timeout=1200,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return python if subprocess.run(check, capture_output=True).returncode == 0 else None


def bench_metaworld(venv: Path, steps: int, repeats: int) -> BenchResult | str:
    """Meta-World pick-place-v3 steps/s in its own venv; a reason string when unavailable."""
    python = ensure_metaworld_venv(venv)
    if python is None:
        return f"could not build a virtualenv with metaworld at {venv}"
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    proc = subprocess.run(
        [str(python), "-c", _MW_SNIPPET, str(steps), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    if proc.returncode != 0:
        return "metaworld run failed: " + proc.stderr.strip().splitlines()[-1][:200]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return BenchResult(
        "Meta-World pick-place-v3 (single)",
        float(data["steps_per_s"]),
        float(data["cpu_steps_per_s"]),
        float(data["control_dt"]),
        note=f"mujoco {data['mujoco']}",
    )


def run_benchmark(
    *,
    steps: int = 20_000,
    repeats: int = 3,
    sizes: tuple[int, ...] = (1, 8, 64),
    render_frames: int = 200,
    metaworld_venv: Path | None = Path(".bench/mw-venv"),
) -> dict[str, Any]:
    """Run every measurement; returns a JSON-ready dict (``rows``, ``metaworld``, ``targets``)."""
    import envs  # noqa: F401  (chooses headless EGL rendering before mujoco is imported)

    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    rows = bench_single(steps, repeats)
    rows += bench_batched(sizes, steps * 4, repeats)
    floor = bench_physics_floor(steps, repeats)
    rows.append(floor)
    render = bench_render(render_frames, repeats)
    mw: BenchResult | str = "skipped"
    if metaworld_venv is not None:
        mw = bench_metaworld(metaworld_venv, steps // 2, repeats)
    out: dict[str, Any] = {
        "rows": [asdict(r) | {"sim_s_per_s": r.sim_s_per_s} for r in rows],
        "render": asdict(render),
        "metaworld": asdict(mw) | {"sim_s_per_s": mw.sim_s_per_s}
        if isinstance(mw, BenchResult)
        else mw,
        "cpu_count": os.cpu_count(),
        "loadavg": load,
    }
    out["targets"] = _targets(rows, floor, render, mw)
    return out


def _ratio(ours: BenchResult, mw: BenchResult, clock: str = "cpu") -> float:
    """The lesser of the steps/s ratio and the simulated-seconds ratio (our control period is
    longer than Meta-World's, so the steps/s ratio is the lesser one)."""
    a, b = (
        (ours.cpu_steps_per_s, mw.cpu_steps_per_s)
        if clock == "cpu"
        else (ours.steps_per_s, mw.steps_per_s)
    )
    return min(a / b, a * ours.control_dt / (b * mw.control_dt))


def _targets(
    rows: list[BenchResult], floor: BenchResult, render: BenchResult, mw: BenchResult | str
) -> dict[str, Any]:
    by_name = {r.name: r for r in rows}
    single = by_name["single env (gymnasium.make)"]
    batched = [r for r in rows if r.name.startswith("batched")]
    biggest = max(batched, key=lambda r: int(r.extra["num_envs"]))
    targets: dict[str, Any] = {
        "render_fps": render.steps_per_s,
        "render_fps>=30": render.steps_per_s >= 30,
        # Wall clock: throughput against the floor on every core used (needs idle cores).
        "batched_vs_floor_x_cores_wall": biggest.steps_per_s / (floor.steps_per_s * biggest.cores),
        # CPU clock: env steps per CPU-second against the floor's (robust on a shared machine).
        "batched_vs_floor_cpu": biggest.cpu_steps_per_s / floor.cpu_steps_per_s,
    }
    if isinstance(mw, BenchResult):
        for clock in ("cpu", "wall"):
            targets[f"single_vs_metaworld_{clock}"] = _ratio(single, mw, clock)
            targets[f"batched_vs_metaworld_{clock}"] = _ratio(biggest, mw, clock)
    return targets


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of the results with ratios to Meta-World and to the physics floor."""
    mw = result["metaworld"]
    floor = next(r for r in result["rows"] if r["name"].startswith("physics floor"))
    lines = [
        "| measurement | threads | env steps/s (wall) | steps per CPU-s | sim s / wall s | "
        "vs Meta-World (wall / CPU) | vs floor (wall x threads / CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rows = list(result["rows"])
    if isinstance(mw, dict):
        rows.append(mw)
    for r in rows:
        vs_mw = "n/a"
        if isinstance(mw, dict):
            ratios = []
            for key in ("steps_per_s", "cpu_steps_per_s"):
                ratios.append(
                    min(r[key] / mw[key], r[key] * r["control_dt"] / (mw[key] * mw["control_dt"]))
                )
            vs_mw = f"{ratios[0]:.1f}x / {ratios[1]:.1f}x"
        wall_floor = r["steps_per_s"] / (floor["steps_per_s"] * r["cores"])
        cpu_floor = r["cpu_steps_per_s"] / floor["cpu_steps_per_s"]
        lines.append(
            f"| {r['name']} | {r['cores']} | {r['steps_per_s']:,.0f} | "
            f"{r['cpu_steps_per_s']:,.0f} | {r['sim_s_per_s']:,.1f} | {vs_mw} | "
            f"{100 * wall_floor:.0f}% / {100 * cpu_floor:.0f}% |"
        )
    render = result["render"]
    lines.append("")
    lines.append(
        f"Control period: ours {1000 * floor['control_dt']:.1f} ms"
        + (f", Meta-World {1000 * mw['control_dt']:.1f} ms" if isinstance(mw, dict) else "")
        + f". Rendering 480x480 ({render['note']}): {render['steps_per_s']:.0f} frames/s. "
        f"Raw mj_step/s of our model: {floor['extra']['mj_step_per_s']:,.0f}. "
        f"CPU cores: {result['cpu_count']}, load average at start: {result['loadavg']}."
    )
    if not isinstance(mw, dict):
        lines.append(f"Meta-World: {mw}.")
    lines.append(
        "Vs Meta-World: the lesser of the steps/s and simulated-seconds ratios; CPU = steps "
        "per CPU-second of the process (all threads), the fair clock on a shared machine."
    )
    return "\n".join(lines)
