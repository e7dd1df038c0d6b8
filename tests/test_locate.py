"""Finding a checkpoint a config or another checkpoint names, from any working directory
(``meta_rl.checkpoint.locate`` and its search path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meta_rl.checkpoint import PROJECT_ROOT, CheckpointNotFound, locate, search_path

SHIPPED = "pretrained/pick_place_revealed"


def test_a_shipped_checkpoint_is_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("METARL_PATH", raising=False)
    found = locate(SHIPPED)
    assert found.run_dir == PROJECT_ROOT / SHIPPED
    assert found.file == PROJECT_ROOT / SHIPPED / "best.pt"


def test_the_search_path_comes_before_the_project_root_and_the_cwd_before_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, extra = tmp_path / "here", tmp_path / "extra"
    for base in (here, extra):
        (base / SHIPPED / "checkpoints").mkdir(parents=True)
        (base / SHIPPED / "checkpoints" / "ckpt_00000001.pt").write_bytes(b"")
    monkeypatch.setenv("METARL_PATH", f"{tmp_path / 'missing'}:{extra}")
    assert search_path() == [tmp_path / "missing", extra, PROJECT_ROOT]
    monkeypatch.chdir(tmp_path)
    assert locate(SHIPPED).run_dir == extra / SHIPPED
    monkeypatch.chdir(here)
    assert locate(SHIPPED).run_dir == Path(SHIPPED)  # the working directory's own comes first


def test_a_missing_checkpoint_names_every_place_looked_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METARL_PATH", str(tmp_path / "extra"))
    with pytest.raises(CheckpointNotFound, match=r"runs/nowhere.*extra.*METARL_PATH"):
        locate("runs/nowhere")
    with pytest.raises(CheckpointNotFound, match="does not exist"):
        locate(tmp_path / "absolute" / "nowhere")  # an absolute path is not searched
