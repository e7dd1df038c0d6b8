"""Train the SB3 baselines into run directories, and load them back for evaluation.

A baseline run dir holds ``baseline.yaml`` (kind, env id, env kwargs the policy needs, the
resolved :class:`BaselineConfig`), ``config.yaml`` and, for trained kinds, ``model.zip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from tqdm.auto import tqdm

from meta_rl.baselines.agents import SB3PolicyAgent, ScratchPPOAgent
from meta_rl.baselines.config import BaselineConfig
from meta_rl.config import ConfigError, from_dict, to_dict
from meta_rl.experiment import resolve_device
from meta_rl.runs import create_run_dir, prepare_run_dir, save_config
from meta_rl.task_envs.family import make_env, register_family
from meta_rl.trial import AdaptiveAgent, torch_threads

__all__ = [
    "BASELINE_FILE",
    "MODEL_FILE",
    "LoadedBaseline",
    "baseline_env_kwargs",
    "load_baseline",
    "train_baseline",
]

BASELINE_FILE = "baseline.yaml"
MODEL_FILE = "model.zip"


def baseline_env_kwargs(cfg: BaselineConfig) -> dict[str, Any]:
    """The env arguments the baseline's policy needs (the goal shown only to the oracle).

    Only the oracle passes ``reveal_task=True``; the other kinds pass no ``reveal_task`` at all
    (the protocol's default hides the task), so a family without that argument still trains them.
    """
    skip = ("split", "render_mode", "reveal_task")
    kwargs = {k: v for k, v in cfg.env_kwargs.items() if k not in skip}
    if cfg.kind == "oracle":
        kwargs["reveal_task"] = True
    return kwargs


class _TqdmCallback(BaseCallback):
    """A tqdm bar over training steps (SB3's own bar needs `rich`)."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self._bar = tqdm(total=total, desc=desc, unit="step")

    def _on_step(self) -> bool:
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        self._bar.close()


def train_baseline(cfg: BaselineConfig, run_dir: str | Path | None = None) -> Path:
    """Train (or, for ``scratch``, only record) one baseline; returns its run directory.

    ``multitask`` and ``oracle`` train PPO on the train split (each reset draws a fresh task);
    the oracle's observations include the goal (``reveal_task=True``).
    """
    env_id = register_family(cfg.env_id, cfg.env_module)
    env_kwargs = baseline_env_kwargs(cfg)
    # The env is checked before anything is written (a failed start leaves no run dir).
    make_env(env_id, **{**env_kwargs, "split": "train"}).close()
    if run_dir is not None:
        out = prepare_run_dir(run_dir, resumable=False)
    else:
        out = create_run_dir(cfg.runs_dir, cfg.experiment or f"{cfg.kind}_ppo", cfg.seed)
    save_config(out, cfg)
    meta: dict[str, Any] = {
        "kind": cfg.kind,
        "env_id": cfg.env_id,
        "env_kwargs": env_kwargs,
        "config": to_dict(cfg),
    }
    if cfg.kind != "scratch":
        venv = make_vec_env(
            env_id,
            n_envs=cfg.n_envs,
            seed=cfg.seed,
            env_kwargs={**env_kwargs, "split": "train"},
        )
        p = cfg.ppo
        model = PPO(
            "MlpPolicy",
            venv,
            learning_rate=p.learning_rate,
            n_steps=p.n_steps,
            batch_size=p.batch_size,
            n_epochs=p.n_epochs,
            gamma=p.gamma,
            gae_lambda=p.gae_lambda,
            clip_range=p.clip_range,
            ent_coef=p.ent_coef,
            vf_coef=p.vf_coef,
            max_grad_norm=p.max_grad_norm,
            policy_kwargs=p.policy_kwargs(),
            seed=cfg.seed,
            device=str(resolve_device(cfg.device)),
            verbose=0,
        )
        # SB3's training statistics go into the run dir (its default is a new folder in /tmp).
        model.set_logger(configure(str(out / "sb3_logs"), ["csv"]))
        callback = (
            _TqdmCallback(cfg.total_timesteps, f"{cfg.kind} PPO") if cfg.progress_bar else None
        )
        try:
            with torch_threads(cfg.torch_threads):
                model.learn(total_timesteps=cfg.total_timesteps, callback=callback)
        finally:
            venv.close()
        model.save(out / MODEL_FILE)
        meta["timesteps"] = int(model.num_timesteps)
    (out / BASELINE_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    return out


@dataclass
class LoadedBaseline:
    """A baseline ready for the protocol: its agent and the env arguments it must see."""

    name: str
    kind: str
    env_id: str
    env_kwargs: dict[str, Any]
    agent: AdaptiveAgent
    source: str


def _baseline_dir(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"baseline {str(path)!r} does not exist")
    folder = path if path.is_dir() else path.parent
    if not (folder / BASELINE_FILE).is_file():
        raise FileNotFoundError(
            f"baseline {str(path)!r}: no {BASELINE_FILE} in {str(folder)!r}; pass a run dir made "
            "by `metarl baselines --config configs/baselines/<kind>.yaml` (or its model.zip)"
        )
    return folder


def load_baseline(path: str | Path, *, device: str = "auto", seed: int = 0) -> LoadedBaseline:
    """Load a baseline run dir (or its ``model.zip``) as an :class:`AdaptiveAgent`."""
    folder = _baseline_dir(Path(path))
    meta = yaml.safe_load((folder / BASELINE_FILE).read_text())
    try:
        cfg = from_dict(BaselineConfig, meta["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise ValueError(f"baseline {str(folder)!r}: {BASELINE_FILE} is invalid ({e})") from e
    env_kwargs = dict(meta.get("env_kwargs") or baseline_env_kwargs(cfg))
    dev = str(resolve_device(device))
    agent: AdaptiveAgent
    if cfg.kind == "scratch":
        probe = make_env(register_family(cfg.env_id, cfg.env_module), **env_kwargs)
        try:
            agent = ScratchPPOAgent(
                probe.observation_space, probe.action_space, cfg.ppo, seed=seed, device=dev
            )
        finally:
            probe.close()
    else:
        model_path = folder / MODEL_FILE
        if not model_path.is_file():
            raise FileNotFoundError(
                f"baseline {str(folder)!r} has no {MODEL_FILE}: was its training interrupted?"
            )
        agent = SB3PolicyAgent(PPO.load(model_path, device=dev), seed=seed)
    return LoadedBaseline(
        name=f"{cfg.kind}-ppo",
        kind=cfg.kind,
        env_id=cfg.env_id,
        env_kwargs=env_kwargs,
        agent=agent,
        source=str(folder),
    )
