"""Can collection hide the agent behind the physics, and how fast can the learner be? (issue 14)

``python scripts/bench_collection_overlap.py [--config configs/pick_place.yaml] [--rounds 3]
[--groups 2] [--learner] [--out runs/collection_overlap]`` runs :func:`measure_collection` (and
with ``--learner`` :func:`measure_learner`) and prints their figures.

:func:`measure_collection` runs everything side by side in one process, in rounds (each round
runs every measurement once, in turn), so every figure is compared with figures taken under the
same machine load; it prints each round's figures as the round ends and returns them with their
medians over the rounds (after an untimed warm-up round), which the script prints and writes to
``<out>/collection_overlap.json``.

Collection, on one trial of K episodes per task of the config's meta-batch, with a fresh agent
of the config's networks:

* ``physics_uniform``: the simulator alone, uniform random actions (``metarl bench-train
  --profile``'s physics-only rate);
* ``physics_replay``: the simulator alone, replaying the actions the agent took in this round's
  collection (the same work as collection's physics, without the agent);
* ``collect``: :func:`~meta_rl.training.rollout.collect_trials` with the agent, one vector env
  (the trainer's collection);
* ``agent_alone``: the agent's ``step`` and ``observe`` on the observations of that trial,
  without the simulator (its cost in isolation);
* ``physics_grouped``: the meta-batch split into ``groups`` vector envs of equal size, each
  stepped on its own Python thread (the simulators release the GIL), uniform random actions;
* ``collect_grouped``: the same groups, each collected by its own agent over the same networks
  on its own thread, so that one group's physics could run while another group's agent acts
  (each agent draws the whole meta-batch's noise and keeps its rows, so the trials are the
  one-env collection's up to the float rounding of smaller matrix products;
  ``grouped_max_diff`` is the largest difference in any recorded tensor, 0 when bit for bit).

Learner (:func:`measure_learner`, the script's ``--learner``): the floor of the PPO update
without any recurrent encoder, the config's actor and critic MLPs forward and backward with Adam
over ``ppo.epochs`` epochs of ``ppo.minibatches`` minibatches of one iteration's steps, with 1
and with 2 torch threads.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.agent.policy import ActorCritic
from meta_rl.experiment import ExperimentConfig
from meta_rl.task_envs.family import register_family, resolve_episode_steps
from meta_rl.task_envs.vector import TaskVectorEnvLike, make_task_vector_env
from meta_rl.training.profile import physics_only_seconds
from meta_rl.training.rollout import TrialBatch, collect_trials

__all__ = ["measure_collection", "measure_learner"]


def _replay_seconds(venv: TaskVectorEnvLike, actions: np.ndarray, seed: int, steps: int) -> float:
    """Seconds to step ``venv`` through ``actions`` ``(K * steps, N, A)`` from reset ``seed``."""
    start = time.perf_counter()
    for t in range(actions.shape[0]):
        if t % steps == 0:
            venv.reset(seed=seed if t == 0 else None)
        venv.step(actions[t])
    return time.perf_counter() - start


def _agent_alone_seconds(agent: MetaAgent, batch: TrialBatch) -> float:
    """Seconds of the agent's ``step`` and ``observe`` over ``batch``'s transitions, no env."""
    obs, next_obs = batch.obs.numpy(), batch.next_obs.numpy()
    rewards, dones, mask = batch.rewards.numpy(), batch.dones.numpy(), batch.mask.numpy()
    agent.begin_trial(obs.shape[1])
    start = time.perf_counter()
    for t in range(obs.shape[0]):
        out = agent.step(obs[t])
        agent.observe(obs[t], out.env_action, rewards[t], next_obs[t], dones[t], mask=mask[t])
    return time.perf_counter() - start


@dataclass(frozen=True)
class _Bench:
    """The simulators and networks every round measures: ``venv`` (the whole meta-batch, the
    config's simulator threads), ``parts`` (its groups, each stepped on its own Python thread)."""

    cfg: ExperimentConfig
    venv: TaskVectorEnvLike
    parts: list[TaskVectorEnvLike]
    pool: ThreadPoolExecutor
    nets: AgentNetworks
    low: np.ndarray
    high: np.ndarray
    episodes: int
    steps: int

    def agent(self, seed: int, rows_from: int | None) -> MetaAgent:
        """A fresh agent over the networks; ``rows_from``: the first of its rows of the batch."""
        noise = None if rows_from is None else (rows_from, self.venv.num_envs)
        return MetaAgent(
            self.nets,
            self.cfg,
            action_low=self.low,
            action_high=self.high,
            generator=torch.Generator().manual_seed(seed),
            noise_rows=noise,
            refine_every=0,  # as the trainer's collection acts (privileged.refine_every)
        )

    def collect(
        self, venv: TaskVectorEnvLike, agent: MetaAgent, tasks: list[Any], first: int, seed: int
    ) -> TrialBatch:
        """One trial on ``tasks[first:]`` of ``venv``'s size, seeded as the whole batch's."""
        return collect_trials(
            venv,
            agent,
            tasks[first : first + venv.num_envs],
            episodes=self.episodes,
            episode_steps=self.steps,
            seed=seed + first,
        )

    def round(self, tasks: list[Any], seed: int, rng: np.random.Generator) -> dict[str, Any]:
        """Every measurement of the module docstring once, in turn, on ``tasks``."""
        venv, parts, size = self.venv, self.parts, self.parts[0].num_envs
        venv.set_tasks(tasks)
        for g, part in enumerate(parts):
            part.set_tasks(tasks[g * size : (g + 1) * size])
        row: dict[str, Any] = {}
        row["physics_uniform"] = physics_only_seconds(
            venv, episodes=self.episodes, episode_steps=self.steps, seed=seed, rng=rng
        )
        start = time.perf_counter()
        batch = self.collect(venv, self.agent(seed, None), tasks, 0, seed)
        row["collect"] = time.perf_counter() - start
        actions = batch.env_actions.numpy()
        row["physics_replay"] = _replay_seconds(venv, actions, seed, self.steps)
        row["agent_alone"] = _agent_alone_seconds(self.agent(seed, None), batch)
        start = time.perf_counter()
        physics = [
            self.pool.submit(
                physics_only_seconds,
                part,
                episodes=self.episodes,
                episode_steps=self.steps,
                seed=seed + g * size,
                rng=np.random.default_rng([seed, g]),
            )
            for g, part in enumerate(parts)
        ]
        for f in physics:
            f.result()
        row["physics_grouped"] = time.perf_counter() - start
        start = time.perf_counter()
        collects = [
            self.pool.submit(self.collect, part, self.agent(seed, g * size), tasks, g * size, seed)
            for g, part in enumerate(parts)
        ]
        grouped = [f.result() for f in collects]
        row["collect_grouped"] = time.perf_counter() - start
        diffs = [
            (getattr(batch, key) - torch.cat([getattr(b, key) for b in grouped], 1)).abs().max()
            for key in ("obs", "raw_actions", "log_probs", "values", "beliefs", "rewards")
        ]
        row["grouped_max_diff"] = float(max(diffs))
        return row


def measure_collection(cfg: ExperimentConfig, *, rounds: int, groups: int) -> dict[str, Any]:
    """The collection figures of the module docstring, per round and their medians."""
    env = cfg.env
    n = env.tasks_per_batch
    if rounds < 1:
        raise ValueError(f"rounds: got {rounds}; allowed: >= 1")
    if groups < 1 or n % groups:
        raise ValueError(f"--groups: got {groups}; allowed: a divisor of {n} sub-environments")
    env_id = register_family(env.id, env.module)
    steps = resolve_episode_steps(env_id, env.episode_steps, "env.episode_steps")
    episodes = env.episodes_per_trial
    threads = env.num_threads or os.cpu_count() or 1
    venv = make_task_vector_env(env_id, n, num_threads=threads, **env.kwargs)
    # Each group steps on the Python thread that runs it (0 simulator threads: no pool).
    size = n // groups
    parts = [make_task_vector_env(env_id, size, num_threads=0, **env.kwargs) for _ in range(groups)]
    pool = ThreadPoolExecutor(groups, initializer=torch.set_num_threads, initargs=(1,))
    space = venv.single_action_space
    obs_dim = int(np.prod(venv.single_observation_space.shape or (1,)))
    act_dim = int(np.prod(space.shape or (1,)))
    torch.manual_seed(cfg.train.seed)
    bench = _Bench(
        cfg,
        venv,
        parts,
        pool,
        AgentNetworks(obs_dim, act_dim, cfg).eval(),
        np.asarray(space.low),  # type: ignore[attr-defined]
        np.asarray(space.high),  # type: ignore[attr-defined]
        episodes,
        steps,
    )
    rng = np.random.default_rng(cfg.train.seed)
    rows: list[dict[str, Any]] = []
    try:
        for r in range(rounds + 1):  # round 0 warms up (first calls, caches) and is dropped
            tasks = venv.task_distribution.sample(n, "train", rng)
            row = bench.round(tasks, int(rng.integers(2**31 - 1)), rng)
            if r == 0:
                continue
            rows.append(row)
            print(f"round {r}/{rounds}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    finally:
        pool.shutdown()
        venv.close()
        for part in parts:
            part.close()
    env_steps = n * episodes * steps
    times = [k for k in rows[0] if k != "grouped_max_diff"]
    med = {k: statistics.median(row[k] for row in rows) for k in times}
    rate = {k: env_steps / v for k, v in med.items()}
    return {
        "setup": {
            "config": cfg.experiment,
            "sub_envs": n,
            "obs_dim": obs_dim,
            "action_dim": act_dim,
            "env_steps_per_trial": env_steps,
            "sim_threads": threads,
            "groups": groups,
            "torch_threads": torch.get_num_threads(),
        },
        "rounds": rows,
        "median_s": med,
        "steps_per_s": rate,
        "ms_per_step": {k: v / (episodes * steps) * 1e3 for k, v in med.items()},
        "ratios": {
            "collect/physics_uniform": rate["collect"] / rate["physics_uniform"],
            "collect/physics_replay": rate["collect"] / rate["physics_replay"],
            "physics_replay/physics_uniform": rate["physics_replay"] / rate["physics_uniform"],
            "collect_grouped/physics_grouped": rate["collect_grouped"] / rate["physics_grouped"],
            "collect_grouped/collect": rate["collect_grouped"] / rate["collect"],
            "physics_grouped/physics_uniform": rate["physics_grouped"] / rate["physics_uniform"],
        },
        "grouped_max_diff": max(row["grouped_max_diff"] for row in rows),
    }


def measure_learner(
    cfg: ExperimentConfig, obs_dim: int, act_dim: int, steps: int, rounds: int
) -> dict[str, Any]:
    """Seconds of the PPO update's MLP work alone (no encoder) on ``steps`` env steps, with 1
    and 2 torch threads (medians over ``rounds``)."""
    width = 2 * cfg.encoder.latent_dim  # the belief features the policy reads
    out: dict[str, list[float]] = {"1": [], "2": []}
    for _ in range(rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            policy = ActorCritic(obs_dim, act_dim, width, hidden=cfg.policy.hidden)
            opt = torch.optim.Adam(policy.parameters(), lr=1e-4)
            obs, belief = torch.randn(steps, obs_dim), torch.randn(steps, width)
            target = torch.randn(steps, act_dim)
            start = time.perf_counter()
            for _ in range(cfg.ppo.epochs):
                for idx in torch.randperm(steps).chunk(cfg.ppo.minibatches):
                    o = policy(obs[idx], belief[idx])
                    loss = (o.mean - target[idx]).pow(2).mean() + o.value.pow(2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            out[str(threads)].append(time.perf_counter() - start)
    torch.set_num_threads(1)
    return {
        "env_steps": steps,
        "s_per_iteration": {k: statistics.median(v) for k, v in out.items()},
    }
