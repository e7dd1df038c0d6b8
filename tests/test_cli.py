"""The ``metarl`` front door: every verb answers ``--help`` and bad input fails cleanly."""

from __future__ import annotations

import subprocess
import sys

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
