"""The ``metarl`` front door: every verb answers ``--help`` and bad input fails cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meta_rl.cli import VERBS, build_parser, main


def test_top_level_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb: str) -> None:
    # A subprocess, as a user would call it: the console script's module entry point.
    result = subprocess.run(
        [sys.executable, "-m", "meta_rl", verb, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: metarl " + verb in result.stdout


def test_unknown_verb_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["fly"])
    assert exc.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def _bad_inputs(tmp: Path) -> list[tuple[str, list[str]]]:
    """(verb, argv) pairs of bad input that every verb must refuse in one line with exit 2."""
    used = tmp / "used"
    used.mkdir(exist_ok=True)
    (used / "metrics.jsonl").write_text("")
    garbage = tmp / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("env: [unclosed\n")
    runs = f"runs_dir={tmp / 'runs'}"
    return [
        ("train", ["env.id=metarl/Nope-v0", "env.batched=false", runs]),
        ("train", ["env.id=metarl/Nope-v0", runs]),
        ("train", ["env.id=Nope-v0", runs]),
        ("train", ["env.id=Pendulum-v1", runs]),
        ("train", ["env.id=byo/X-v0", "env.module=no_such_family_xyz", runs]),
        ("train", ["env.id=no_such_family_xyz:byo/X-v0", runs]),
        ("train", ["env.episode_steps=51", runs]),
        ("train", ["env.kwargs.nope=1", runs]),
        ("train", ["env.kwargs.nope=1", "env.batched=false", runs]),
        ("train", ["--config", str(tmp / "missing.yaml")]),
        ("train", ["--config", str(bad_yaml)]),
        ("train", ["nokey=1"]),
        ("train", ["train.iterations=abc"]),
        ("train", ["train.iterations=0"]),
        ("train", ["--resume", str(tmp / "nowhere")]),
        ("train", ["--resume", str(used)]),
        ("train", ["--resume", str(used), "--config", str(bad_yaml)]),
        ("train", ["--run-dir", str(used), runs]),
        ("train", ["--run-dir", str(garbage), runs]),
        ("evaluate", []),
        ("evaluate", ["--checkpoint", str(tmp / "nowhere")]),
        ("evaluate", ["--checkpoint", str(garbage)]),
        ("evaluate", ["--checkpoint", str(used)]),
        ("evaluate", ["--checkpoint", str(garbage), "num_tasks=0"]),
        ("video", ["--checkpoint", str(tmp / "nowhere")]),
        ("video", ["--checkpoint", str(garbage), "--task-index", "-1"]),
        ("baselines", []),
        ("baselines", ["--config", str(tmp / "missing.yaml")]),
        ("baselines", ["--config", "configs/baselines/multitask_ppo.yaml", "env_id=x/Nope-v0"]),
        ("run", ["env.id=metarl/Nope-v0", runs]),
        ("run", ["eval.num_tasks=0", runs]),
        ("run", ["--showcase", str(tmp / "nowhere"), runs]),
        ("run", ["--showcase", str(garbage), "--showcase-config", str(tmp / "missing.yaml"), runs]),
        ("check-env", []),
        ("check-env", ["a/B-v0", "c/D-v0"]),
        ("bench-envs", ["--steps", "1"]),
        ("bench-train", ["--jobs", "2"]),
        ("bench-train", ["--compare", "nonsense"]),
    ]


def test_bad_input_to_every_verb_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = _bad_inputs(tmp_path)
    assert {verb for verb, _ in cases} == set(VERBS)
    for verb, argv in cases:
        code = main([verb, *argv])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2, (verb, argv, err)
        assert lines and lines[-1].startswith(f"metarl {verb}: error: "), (verb, argv, err)
        assert sum(ln.startswith("metarl ") for ln in lines) == 1, (verb, argv, err)
        assert "Traceback" not in err, (verb, argv, err)
    assert not (tmp_path / "runs").exists()  # no failed start left a run folder
