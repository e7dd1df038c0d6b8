"""Config loading, dotted overrides and every kind of validation error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from meta_rl.config import (
    Config,
    ConfigError,
    config_help,
    from_dict,
    load_config,
    param,
    save_config_yaml,
    to_dict,
)
from meta_rl.runs import RUN_SUBDIRS, create_run_dir, save_config


@dataclass(frozen=True)
class Inner(Config):
    lr: float = param(1e-3, "Learning rate.", gt=0.0)
    mode: Literal["first", "second"] = param("second", "Order of the meta-gradient.")
    hidden: tuple[int, ...] = param((64, 64), "Hidden layer widths.", ge=1)
    device: str = param("auto", "Where to run.", choices=("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class Outer(Config):
    inner: Inner = param(default_factory=Inner, doc="The inner section.")
    seed: int = param(0, "Random seed.", ge=0)
    name: str = param("exp", "Experiment name.")
    enabled: bool = param(True, "A switch.")
    kwargs: dict[str, object] = param(default_factory=dict, doc="Free-form keyword arguments.")
    limit: float | None = param(None, "Optional limit.", ge=0.0)


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_yaml_roundtrip(tmp_path: Path) -> None:
    cfg = load_config(Outer, write(tmp_path, {"seed": 3, "inner": {"lr": 0.01}}))
    assert cfg.seed == 3 and cfg.inner.lr == 0.01 and cfg.inner.hidden == (64, 64)
    save_config_yaml(cfg, tmp_path / "out.yaml")
    assert load_config(Outer, tmp_path / "out.yaml") == cfg
    assert to_dict(cfg)["inner"]["hidden"] == [64, 64]


def test_dotted_overrides_apply_on_top_of_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, {"seed": 3, "inner": {"lr": 0.01}})
    cfg = load_config(
        Outer,
        path,
        ["inner.lr=5e-4", "inner.hidden=[8, 16]", "kwargs.reveal_task=true", "limit=2"],
    )
    assert cfg.inner.lr == pytest.approx(5e-4)  # '5e-4' is a YAML string: coerced to float
    assert cfg.inner.hidden == (8, 16)
    assert cfg.kwargs == {"reveal_task": True}
    assert cfg.limit == 2.0 and cfg.seed == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inner.lrr=1", "unknown key 'inner.lrr'.*allowed keys in inner: device, hidden, lr, mode"),
        ("sed=1", "unknown key 'sed'"),
        ("inner.lr=-1", "inner.lr: got -1.0; must be > 0"),
        ("inner.lr=fast", "inner.lr: got 'fast'; expected a number"),
        ("seed=1.5", "seed: got 1.5; expected an integer"),
        ("seed=-2", "seed: got -2; must be >= 0"),
        ("enabled=3", "enabled: got 3; expected true or false"),
        ("inner.mode=third", "inner.mode: got 'third'; allowed: one of 'first', 'second'"),
        ("inner.device=tpu", "inner.device: got 'tpu'; allowed: 'auto', 'cpu', 'cuda'"),
        ("inner.hidden=[8, 0]", "inner.hidden: got 0; must be >= 1"),
        ("inner=3", "inner: got 3; expected a mapping for Inner"),
        ("seed", "must look like 'section.key=value'"),
        ("limit=-1", "limit: got -1.0; must be >= 0"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_unknown_key_in_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.momentum'"):
        load_config(Outer, write(tmp_path, {"inner": {"momentum": 0.9}}))


def test_bad_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(Outer, tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, tmp_path / "broken.yaml")


def test_construction_in_code_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"Inner\.lr: got 0\.0; must be > 0"):
        Inner(lr=0.0)
    assert Inner(lr=1).lr == 1.0 and isinstance(Inner(lr=1).lr, float)
    with pytest.raises(ConfigError, match="missing required key 'x'"):

        @dataclass(frozen=True)
        class Required(Config):
            x: int = field(metadata={"doc": "required"})

        from_dict(Required, {})


def test_param_requires_a_doc() -> None:
    with pytest.raises(ValueError, match="doc"):
        param(1)


def test_help_lists_every_field_with_doc_and_range() -> None:
    text = "\n".join(config_help(Outer))
    assert "inner.lr (float, default 0.001; allowed: > 0.0): Learning rate." in text
    assert "seed (int, default 0; allowed: >= 0): Random seed." in text


def test_run_dir_layout_and_saved_config(tmp_path: Path) -> None:
    cfg = Outer(seed=7, name="reach demo")
    first = create_run_dir(tmp_path, cfg.name, cfg.seed)
    second = create_run_dir(tmp_path, cfg.name, cfg.seed)
    assert first != second and first.name.startswith("reach-demo__7__")
    assert all((first / sub).is_dir() for sub in RUN_SUBDIRS)
    save_config(first, cfg)
    assert load_config(Outer, first / "config.yaml") == cfg
