"""``metarl check-env``: a family's gaps are reported with their fixes before a long run."""

from __future__ import annotations

import pytest

from helpers.broken_family import BROKEN_ID
from meta_rl.cli import main
from meta_rl.task_envs.env_checker import check_task_family


def test_the_example_family_is_ready() -> None:
    report = check_task_family("byo/HiddenPendulum-v0", module="examples.hidden_pendulum")
    assert report.ok and not report.warnings, report.format()
    topics = {f.topic for f in report.findings}
    assert {"registration", "time limit", "task protocol", "info", "seeding", "render"} <= topics


def test_every_gap_of_a_broken_family_is_named() -> None:
    report = check_task_family(BROKEN_ID, episode_steps=30)
    found = {(f.level, f.topic) for f in report.findings}
    for expected in [
        ("error", "time limit"),
        ("error", "info"),
        ("error", "set_task"),
        ("warning", "seeding"),
        ("warning", "render"),
    ]:
        assert expected in found, report.format()
    text = report.format()
    assert "above the registered time limit 20" in text
    assert "report info['success']" in text
    assert "reset seeds change nothing" in text
    assert "evaluation skips the videos" in text
    assert text.endswith("fix the errors before training (docs/byo_family.md)")


def test_a_plain_gymnasium_env_lacks_split_and_the_protocol() -> None:
    report = check_task_family("Pendulum-v1")
    assert not report.ok
    assert any("no `split` argument" in f.message for f in report.errors)


def test_check_env_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-env", "--config", "configs/byo_pendulum.yaml"]) == 0
    assert "0 errors, 0 warnings" in capsys.readouterr().out
    assert main(["check-env", BROKEN_ID, "env.episode_steps=30"]) == 1
    assert "error    info:" in capsys.readouterr().out
    assert main(["check-env", "nowhere/Nope-v0"]) == 1
    assert "is not registered" in capsys.readouterr().out
    assert main(["check-env"]) == 2
    assert "pass an env id" in capsys.readouterr().err
