"""The env benchmark: a tiny run of the function and of the script (no Meta-World)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from envs.benchmark import format_table, run_benchmark

torch.set_num_threads(1)


def test_run_benchmark_tiny() -> None:
    result = run_benchmark(steps=300, repeats=1, sizes=(2,), render_frames=3, metaworld_venv=None)
    names = [r["name"] for r in result["rows"]]
    assert names[:3] == ["single env (gymnasium.make)", "single env (unwrapped)", "batched N=2"]
    assert all(r["steps_per_s"] > 0 and r["cpu_steps_per_s"] > 0 for r in result["rows"])
    assert result["render"]["steps_per_s"] > 0
    assert result["metaworld"] == "skipped"
    assert "batched_vs_floor_cpu" in result["targets"]
    table = format_table(result)
    assert "| batched N=2 | 2 |" in table and "Meta-World: skipped" in table


def test_bench_script(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--steps", "200", "--repeats", "1", "--sizes", "2", "--metaworld-venv", "none"]
    proc = subprocess.run(
        [sys.executable, "scripts/bench_envs.py", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "physics floor" in proc.stdout
    assert json.loads(out.read_text())["rows"]
