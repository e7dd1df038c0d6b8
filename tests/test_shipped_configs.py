"""Every shipped experiment config loads, validates and resolves to the config (and hash) it
resolved to when it was last pinned (tests/data/shipped_configs.json): a config rewritten to
state only what differs from its base (``base:``) must not change what it trains. Rewrite the
snapshot only for a change of what a config means, in the commit that makes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meta_rl.config import ConfigError, to_dict
from meta_rl.experiment import config_hash, load_experiment

ROOT = Path(__file__).resolve().parents[1]
PINNED = json.loads((ROOT / "tests" / "data" / "shipped_configs.json").read_text())


def test_every_shipped_experiment_config_is_pinned() -> None:
    shipped = sorted(
        str(p.relative_to(ROOT))
        for pattern in ("configs/*.yaml", "configs/ablations/*.yaml")
        for p in ROOT.glob(pattern)
    )
    assert shipped == sorted(PINNED)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a resolved config and their values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "kwargs":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("path", sorted(PINNED))
def test_a_shipped_config_resolves_as_pinned(path: str) -> None:
    """Every pinned key resolves as pinned; a key added to the config sections since then
    holds its default (so an added option, at its default, changes no shipped config)."""
    cfg = load_experiment(ROOT / path)
    now, pinned = _flat(to_dict(cfg)), _flat(PINNED[path]["resolved"])
    defaults = _flat(to_dict(load_experiment(None)))
    assert {k: now.get(k) for k in pinned} == pinned
    assert {k: now[k] for k in now if k not in pinned} == {
        k: defaults[k] for k in now if k not in pinned
    }
    assert config_hash(cfg) == PINNED[path]["config_hash"]


def test_a_base_is_merged_section_by_section(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("experiment: a\nppo:\n  lr: 0.01\n  epochs: 7\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nppo:\n  epochs: 2\n")
    cfg = load_experiment(tmp_path / "child.yaml")
    assert (cfg.experiment, cfg.ppo.lr, cfg.ppo.epochs) == ("a", 0.01, 2)


def test_a_bad_base_is_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"base: .* leads back to itself"):
        load_experiment(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"base: got 'nowhere.yaml' .* no such file"):
        load_experiment(tmp_path / "c.yaml")


@pytest.mark.parametrize("path", sorted(PINNED))
def test_a_shipped_config_builds_its_networks(path: str) -> None:
    """The networks a shipped experiment config describes build on its env's spaces (a
    student's with the width of its family's task features)."""
    import numpy as np

    from meta_rl.agent.agent_networks import AgentNetworks
    from meta_rl.task_envs.family import find_task_env, make_env, register_family, task_features_of

    cfg = load_experiment(ROOT / path)
    env_id = register_family(cfg.env.id, cfg.env.module)
    env = make_env(env_id, **cfg.env.kwargs)
    try:
        obs_dim = int(np.prod(env.observation_space.shape or ()))
        act_dim = int(np.prod(env.action_space.shape or ()))
        task = find_task_env(env, env_id).task_distribution.sample(
            1, "train", np.random.default_rng(0)
        )[0]
    finally:
        env.close()
    reads = cfg.privileged.enabled or cfg.train.algorithm == "dagger"
    task_dim = len(task_features_of(task, "the shipped config test")) if reads else None
    nets = AgentNetworks(obs_dim, act_dim, cfg, task_dim)
    assert sum(p.numel() for p in nets.parameters()) > 0
    assert nets.policy.obs_norm.mean.shape == (obs_dim,)


def test_every_shipped_evaluation_config_loads() -> None:
    from meta_rl.config import load_config
    from meta_rl.evaluation.config import EvalConfig

    paths = sorted((ROOT / "configs" / "eval").glob("*.yaml"))
    assert len(paths) >= 8
    for p in paths:
        cfg = load_config(EvalConfig, p, [])
        assert cfg.num_tasks >= 1, p
