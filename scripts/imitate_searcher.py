"""Warm-start a meta-agent on the commanded family by imitating the scripted searcher.

The searcher (``scripts/commanded_search.py``) finds hidden goals from the reward with a tour
and a least-squares fit; a meta-agent has to learn that search before RL can refine it. This
script collects the searcher's trials on train-split tasks and fits the agent of ``--config``
to them by behaviour cloning: the policy's mean action at each step, read from the observation
and the belief the context encoder built from the trial so far, regresses the searcher's
command (mean squared error); with ``privileged.task_inference_weight`` > 0 the belief is also
trained to predict the task features (``privileged.inference_features``) as in training. The
result is an ordinary run directory: ``metarl evaluate --checkpoint RUN`` reads it and
``metarl train --resume RUN`` fine-tunes it with PPO.

    python scripts/imitate_searcher.py --config configs/pick_place_cpu.yaml --run-dir runs/bc \
        --trials 1024 --epochs 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import commanded_search  # noqa: E402  (its neighbour: scripts/ is on the path when run)

from meta_rl.agent.privileged import inference_targets  # noqa: E402
from meta_rl.agent.task_model import TrialTensors  # noqa: E402
from meta_rl.experiment import load_experiment  # noqa: E402
from meta_rl.runs import prepare_run_dir, save_config  # noqa: E402
from meta_rl.task_envs.commanded import COMMANDED_ID  # noqa: E402
from meta_rl.training.privileged import task_features, task_inference_loss  # noqa: E402
from meta_rl.training.trainer import Trainer  # noqa: E402


def demonstrations(
    n: int, place_scale: float, seed: int, chunk: int = 256
) -> tuple[dict[str, torch.Tensor], list[object], float]:
    """The searcher's trials on ``n`` train-split tasks: time-major tensors ``(T, n, ...)`` of
    obs, command, reward, next_obs and done, the tasks, and the searcher's mean success in
    episode 3."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "act", "rew", "next", "done")}
    tasks: list[object] = []
    success = []
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        steps: dict[str, list[np.ndarray]] = {k: [] for k in parts}

        def record(obs, cmd, reward, next_obs, end, steps=steps, rows=rows):  # type: ignore[no-untyped-def]
            steps["obs"].append(obs)
            steps["act"].append(np.asarray(cmd, dtype=np.float32))
            steps["rew"].append(np.asarray(reward, dtype=np.float32))
            steps["next"].append(next_obs)
            steps["done"].append(np.full(rows, float(end), dtype=np.float32))

        r = commanded_search.run(rows, place_scale, "train", seed + start, 15, 40, record=record)
        tasks.extend(r["tasks"])
        success.append(r["success"][2])
        for k in parts:
            parts[k].append(np.stack(steps[k]))
    out = {k: torch.as_tensor(np.concatenate(v, axis=1)) for k, v in parts.items()}
    return out, tasks, float(np.concatenate(success).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--trials", type=int, default=1024, help="Searcher trials (train split).")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64, help="Trials per gradient step.")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides.")
    args = p.parse_args(argv)

    cfg = load_experiment(args.config, list(args.overrides))
    kwargs = dict(cfg.env.kwargs)
    if cfg.env.id != COMMANDED_ID or kwargs.get("command", "goal") != "goal":
        raise SystemExit(
            f"env: got {cfg.env.id} with command={kwargs.get('command', 'goal')!r}; allowed: "
            f"{COMMANDED_ID} with command 'goal' (the searcher names goal points)"
        )
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    demo, tasks, searcher_success = demonstrations(
        args.trials, float(kwargs.get("place_scale", 10.0)), args.seed
    )
    collect_s = time.perf_counter() - t0
    print(
        f"{args.trials} searcher trials ({demo['obs'].shape[0]} steps each) in {collect_s:.0f} s; "
        f"its episode-3 success on them: {searcher_success:.2f}"
    )

    trainer = Trainer(cfg, None)
    run_dir = prepare_run_dir(args.run_dir)
    save_config(run_dir, cfg)
    trainer.attach(run_dir)
    nets = trainer.networks
    # The normalisers the agent acts with, fitted to the demonstrations (then fixed).
    with torch.no_grad():
        nets.policy.obs_norm.update(demo["obs"].reshape(-1, demo["obs"].shape[-1]))
        nets.reward_norm.update(demo["rew"].reshape(-1, 1))
    features = task_features(tasks)
    params = list(nets.encoder.parameters()) + list(nets.policy.actor.parameters())
    head = nets.task_head
    if head is not None:
        params += list(head.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    n = args.trials
    gen = torch.Generator().manual_seed(args.seed)
    weight = cfg.privileged.task_inference_weight
    for epoch in range(args.epochs):
        order = torch.randperm(n, generator=gen)
        bc_sum, ti_sum, count = 0.0, 0.0, 0
        for lo in range(0, n, args.batch):
            idx = order[lo : lo + args.batch]
            obs = nets.normalize(demo["obs"][:, idx])
            trials = TrialTensors(
                obs=obs,
                action=demo["act"][:, idx],
                reward=nets.normalize_reward(demo["rew"][:, idx]),
                next_obs=nets.normalize(demo["next"][:, idx]),
                done=demo["done"][:, idx],
                mask=torch.ones(obs.shape[:2], dtype=torch.bool),
            )
            beliefs, _ = trials.encode(nets.encoder)
            after = beliefs.features()
            prior = nets.encoder.prior(len(idx)).features().unsqueeze(0)
            before = torch.cat([prior, after[:-1]], dim=0)  # what the agent acts on at step t
            out = nets.policy(demo["obs"][:, idx], nets.conditioning(before))
            bc = ((out.mean - demo["act"][:, idx]) ** 2).mean()
            loss = bc
            ti = torch.zeros(())
            if head is not None and weight > 0:
                target = inference_targets(cfg.privileged, features[idx])
                ti = task_inference_loss(nets.encoder, head, trials, target, beliefs)
                loss = loss + weight * ti
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            bc_sum += float(bc.detach()) * len(idx)
            ti_sum += float(ti.detach()) * len(idx)
            count += len(idx)
        print(
            f"epoch {epoch + 1}: imitation {bc_sum / count:.4f}, task inference "
            f"{ti_sum / count:.4f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    trainer.counters.iteration = 1
    trainer.counters.env_steps = int(demo["obs"].shape[0] * n)
    path = trainer.save(is_best=True)
    trainer.close()
    print(f"run dir: {run_dir} ({path.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
