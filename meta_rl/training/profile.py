"""Where a meta-training iteration spends its time: ``metarl bench-train --profile``.

:func:`profile_training` builds a :class:`~meta_rl.training.trainer.Trainer` (it writes nothing
to disk), runs ``warmup`` iterations untimed and then ``iterations`` timed ones exactly as
``train`` runs them, timing each phase by wrapping the trainer's, agent's and env's methods,
then one held-out evaluation. Phases (seconds per iteration and share of the iteration):

* ``collect/env_step``: the simulator (``venv.step``);
* ``collect/agent_act``: the policy and its sampling (``MetaAgent.step``);
* ``collect/agent_observe``: the context encoder's update of the belief (``observe``);
* ``collect/agent_adapt``: the MAML inner loop between episodes (``end_episode``);
* ``collect/loop``: the rest of collection (the trial loop, recording, stacking into tensors);
* ``update/advantages``: reward scaling and GAE;
* ``update/policy``: the PPO (or MAML outer) epochs, without the advantages;
* ``update/elbo``: the task model's ELBO steps;
* ``update/other``: normalisers and metrics;

and ``evaluate`` (per call, not per iteration). After each timed iteration the same
simulator (the same sub-environments, tasks, threads and trial length) also runs one trial with
uniform random actions and no agent: the *physics-only* rate, measured interleaved with the
training so that both see the same machine load. The throughput summary then gives, in env
steps per second, physics only, collection with the agent (``collect/*``) and overall (the
whole iteration, updates included), with the ratios collection/physics (what the agent and the
loop cost the simulator) and overall/collection (what the learner costs). Measure here before
optimising, and compare the ``share`` column and the ratios before and after a change.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from meta_rl.experiment import ExperimentConfig
from meta_rl.training.trainer import Trainer

__all__ = ["PHASES", "format_profile", "physics_only_seconds", "profile_training"]

PHASES = (
    "collect/env_step",
    "collect/agent_act",
    "collect/agent_observe",
    "collect/agent_adapt",
    "collect/loop",
    "update/advantages",
    "update/policy",
    "update/elbo",
    "update/other",
)
"""The phases of one iteration, in the order they run; their times sum to the iteration's."""


class _Timer:
    """Accumulated wall-clock seconds per name, of the functions :meth:`wrap` returns."""

    def __init__(self, cuda: bool) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.cuda = cuda
        self.enabled = True

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.cuda:
                    torch.cuda.synchronize()  # GPU work is asynchronous: charge it where it runs
                self.totals[name] += time.perf_counter() - start

        return timed


def physics_only_seconds(
    venv: Any, *, episodes: int, episode_steps: int, seed: int, rng: np.random.Generator
) -> float:
    """Wall-clock seconds of one trial of ``venv`` on the tasks it holds with uniform random
    actions and no agent: ``episodes`` resets, each followed by ``episode_steps`` steps (the
    trial loop's structure, its autoresets included, at zero agent cost)."""
    space = venv.single_action_space
    low = np.broadcast_to(np.asarray(space.low, np.float32), (venv.num_envs, *space.shape))
    high = np.broadcast_to(np.asarray(space.high, np.float32), low.shape)
    start = time.perf_counter()
    for k in range(episodes):
        venv.reset(seed=seed if k == 0 else None)
        for _ in range(episode_steps):
            venv.step(rng.uniform(low, high).astype(np.float32))
    return time.perf_counter() - start


def profile_training(
    cfg: ExperimentConfig, *, iterations: int = 5, warmup: int = 1
) -> dict[str, Any]:
    """Time ``iterations`` meta-training iterations of ``cfg`` phase by phase (after ``warmup``
    untimed ones), each followed by a physics-only trial, and one evaluation; returns
    ``{"phases": {name: {"s_per_iteration", "share"}}, "iteration_s", "evaluate_s",
    "env_steps_per_iteration", "steps_per_s": {"physics_only", "collection", "overall"},
    "ratios": {"collection/physics", "overall/collection"}, "setup": {...}, "iterations",
    "warmup"}`` (``setup``: device, torch and simulator threads, sub-environments)."""
    if iterations < 1:
        raise ValueError(f"iterations: got {iterations}; allowed: >= 1")
    if warmup < 0:
        raise ValueError(f"warmup: got {warmup}; allowed: >= 0")
    trainer = Trainer(cfg, None)
    try:
        timer = _Timer(cuda=trainer.device.type == "cuda")
        # Instance attributes shadow the methods, so the trainer's own calls go through them.
        venv, agent = trainer.venv, trainer.agent
        venv.step = timer.wrap("collect/env_step", venv.step)  # type: ignore[method-assign]
        agent.step = timer.wrap("collect/agent_act", agent.step)  # type: ignore[method-assign]
        agent.observe = timer.wrap(  # type: ignore[method-assign]
            "collect/agent_observe", agent.observe
        )
        agent.end_episode = timer.wrap(  # type: ignore[method-assign]
            "collect/agent_adapt", agent.end_episode
        )
        for name in ("collect", "advantages", "ppo_update", "maml_update", "elbo_update"):
            setattr(trainer, name, timer.wrap(name, getattr(trainer, name)))
        iteration = timer.wrap("iteration", trainer.iteration)
        timer.enabled = False
        steps = 0
        physics_s = 0.0
        rng = np.random.default_rng(cfg.train.seed)
        for i in range(warmup + iterations):
            if i == warmup:
                timer.enabled = True
                steps = trainer.counters.env_steps
            iteration()
            if trainer.stopped:
                raise RuntimeError(
                    "profile: the run stopped on non-finite updates; profile a config that trains"
                )
            if i >= warmup:
                timer.enabled = False  # the physics-only trial's steps are not the training's
                physics_s += physics_only_seconds(
                    venv,
                    episodes=cfg.env.episodes_per_trial,
                    episode_steps=trainer.episode_steps,
                    seed=int(rng.integers(2**31 - 1)),
                    rng=rng,
                )
                timer.enabled = True
        steps = trainer.counters.env_steps - steps
        physics_steps = iterations * venv.num_envs * cfg.env.episodes_per_trial
        physics_steps *= trainer.episode_steps
        evaluate = timer.wrap("evaluate", trainer.evaluate)
        evaluate()
    finally:
        trainer.close()
    t = timer.totals
    collect_parts = ("collect/env_step", "collect/agent_act", "collect/agent_observe")
    per_phase = {
        "collect/env_step": t["collect/env_step"],
        "collect/agent_act": t["collect/agent_act"],
        "collect/agent_observe": t["collect/agent_observe"],
        "collect/agent_adapt": t["collect/agent_adapt"],
        "collect/loop": t["collect"] - sum(t[k] for k in collect_parts) - t["collect/agent_adapt"],
        "update/advantages": t["advantages"],
        "update/policy": t["ppo_update"] + t["maml_update"] - t["advantages"],
        "update/elbo": t["elbo_update"],
        "update/other": t["iteration"]
        - t["collect"]
        - t["ppo_update"]
        - t["maml_update"]
        - t["elbo_update"],
    }
    total = t["iteration"]
    rates = {
        "physics_only": physics_steps / physics_s,
        "collection": steps / t["collect"],
        "overall": steps / total,
    }
    return {
        "phases": {
            name: {
                "s_per_iteration": per_phase[name] / iterations,
                "share": per_phase[name] / total,
            }
            for name in PHASES
        },
        "iteration_s": total / iterations,
        "evaluate_s": t["evaluate"],
        "env_steps_per_iteration": steps / iterations,
        "steps_per_s": rates,
        "ratios": {
            "collection/physics": rates["collection"] / rates["physics_only"],
            "overall/collection": rates["overall"] / rates["collection"],
        },
        "setup": {
            "device": str(trainer.device),
            "torch_threads": torch.get_num_threads(),
            "sim_threads": getattr(venv, "num_threads", 1),  # SyncVectorEnv: one thread
            "sub_envs": venv.num_envs,
        },
        "iterations": iterations,
        "warmup": warmup,
    }


def format_profile(name: str, result: dict[str, Any]) -> str:
    """A plain-text table of one :func:`profile_training` result."""
    lines = [
        f"{name}: {result['iteration_s'] * 1e3:.1f} ms per iteration "
        f"({result['env_steps_per_iteration']:.0f} env steps; mean of {result['iterations']} "
        f"after {result['warmup']} warm-up), evaluation {result['evaluate_s'] * 1e3:.1f} ms",
        f"  {'phase':<24}{'ms/iter':>10}{'share':>8}",
    ]
    for phase, row in result["phases"].items():
        lines.append(f"  {phase:<24}{row['s_per_iteration'] * 1e3:>10.1f}{row['share']:>8.1%}")
    rates, ratios, setup = result["steps_per_s"], result["ratios"], result["setup"]
    lines.append(
        f"  env steps/s: physics only {rates['physics_only']:.0f}, collection "
        f"{rates['collection']:.0f}, overall {rates['overall']:.0f} ({setup['sub_envs']} "
        f"sub-envs, {setup['sim_threads']} sim threads, {setup['torch_threads']} torch threads, "
        f"{setup['device']})"
    )
    lines.append(
        f"  collection/physics {ratios['collection/physics']:.2f}, "
        f"overall/collection {ratios['overall/collection']:.2f}"
    )
    return "\n".join(lines)
