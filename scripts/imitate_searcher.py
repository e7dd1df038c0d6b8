"""Warm-start a meta-agent on the commanded family by imitating the scripted searcher.

The searcher (``scripts/commanded_search.py``) finds hidden goals from the reward with a tour
and a least-squares fit; a meta-agent has to learn that search before RL can refine it. This
script collects the searcher's trials on train-split tasks and fits the agent of ``--config``
to them by behaviour cloning: the policy's mean action at each step, read from the observation
and the belief the context encoder built from the trial so far, regresses the expert's command
(mean squared error); with ``privileged.task_inference_weight`` > 0 the belief is also trained
to predict the task features (``privileged.inference_features``) as in training.

The expert (:func:`expert_commands`) is the searcher told the goal after its tour: the tour's
points during the tour, the true goal after it. The agent never sees the goal; regressing it
from the belief teaches the goal the trial so far implies (the posterior mean), which the
searcher's own least-squares estimate only approximates. ``--dagger-rounds R`` then runs DAgger
(Ross et al. 2011): each round the agent itself runs ``--dagger-trials`` trials (its mean
action), the expert labels every step it visited, and the agent is refitted on all data so far,
so it learns to recover from its own mistakes, which cloning the searcher's states alone does
not teach.

The full agent of the design (``maml.enabled`` with ``maml.inner_loss: task_model``): the task
model's reward decoder is also fitted, on the trials' beliefs (detached: the belief stays what
imitation makes it), and the policy adapts after each episode by a Meta-SGD step on the inner
loss, the reward the decoder predicts for the policy's commands given the belief at the
episode's end. The imitation loss of the later episodes is taken at the adapted parameters, so
the meta-parameters and the step sizes learn an inner step that helps the commands; the agent
adapts so when it collects the DAgger trials and when it is evaluated.

The result is an ordinary run directory: ``metarl evaluate --checkpoint RUN`` reads it and
``metarl train --resume RUN`` fine-tunes it with PPO.

    python scripts/imitate_searcher.py --config configs/pick_place_cpu.yaml --run-dir runs/bc \
        --trials 1024 --epochs 20 --dagger-rounds 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import commanded_search  # noqa: E402  (its neighbour: scripts/ is on the path when run)

from meta_rl.agent.maml import LossFn, TaskModelBatch, functional_model  # noqa: E402
from meta_rl.agent.meta_agent import AgentNetworks  # noqa: E402
from meta_rl.agent.privileged import inference_targets  # noqa: E402
from meta_rl.agent.task_model import TrialTensors, elbo_loss  # noqa: E402
from meta_rl.experiment import load_experiment  # noqa: E402
from meta_rl.runs import prepare_run_dir, save_config  # noqa: E402
from meta_rl.skills.commanded import COMMANDED_ID, CommandedVectorEnv, Commander  # noqa: E402
from meta_rl.task_envs.vector import make_task_vector_env  # noqa: E402
from meta_rl.training.privileged import task_features, task_inference_loss  # noqa: E402
from meta_rl.training.rollout import collect_trials  # noqa: E402
from meta_rl.training.trainer import Trainer  # noqa: E402

HOLD, START = 15, 40
"""The searcher's tour timing (steps per waypoint, steps at the centre before it)."""


def expert_commands(features: np.ndarray, commander: Commander, trial_steps: int) -> np.ndarray:
    """The expert's commands ``(trial_steps, N, commander.width)`` for trials of tasks with true
    features ``(N, 9)``: the searcher's tour during episode 1's tour, the true goal's command
    everywhere else; the true object features where the commands name them."""
    goal = (features[:, :3] - commander.centre) / commander.half_width
    target = np.concatenate([goal, commander.feature_commands(features[:, 3:])], axis=1)
    out = np.repeat(target[None].astype(np.float32), trial_steps, axis=0)
    tour_end = START + HOLD * (len(commanded_search.TOUR) - 1)
    for t in range(min(tour_end, trial_steps)):  # a short trial ends inside the tour
        out[t, :, :3] = commanded_search.tour_command(t, START, HOLD)
    return out


Data = dict[str, torch.Tensor]
"""Time-major trials ``(T, N, ...)``: obs, act (what was done), label (the expert's command),
rew, next, done; and ``features`` ``(N, F)``, the true task features."""


def demonstrations(
    n: int,
    env_kwargs: dict[str, Any],
    num_threads: int | None,
    seed: int,
    commander: Commander,
    chunk: int = 256,
) -> tuple[Data, float]:
    """The searcher's trials on ``n`` train-split tasks of the env with ``env_kwargs``,
    labelled by the expert, and the searcher's mean success in episode 3."""
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

        r = commanded_search.run(
            rows,
            float(env_kwargs.get("place_scale", 10.0)),
            "train",
            seed + start,
            HOLD,
            START,
            record=record,
            num_threads=num_threads,
            env_kwargs=env_kwargs,
        )
        tasks.extend(r["tasks"])
        success.append(r["success"][2])
        for k in parts:
            parts[k].append(np.stack(steps[k]))
    out = {k: torch.as_tensor(np.concatenate(v, axis=1)) for k, v in parts.items()}
    out["features"] = task_features(tasks)
    trial_steps = out["obs"].shape[0]
    out["label"] = torch.as_tensor(expert_commands(out["features"].numpy(), commander, trial_steps))
    return out, float(np.concatenate(success).mean())


def agent_trials(trainer: Trainer, venv: CommandedVectorEnv, seed: int) -> tuple[Data, float]:
    """One trial of the agent (its mean action) on each of ``venv.num_envs`` fresh train-split
    tasks, labelled by the expert, and the agent's mean success in episode 3."""
    tasks = venv.task_distribution.sample(venv.num_envs, "train", np.random.default_rng(seed))
    trainer.networks.eval()
    batch = collect_trials(
        venv,
        trainer.agent,
        tasks,
        episodes=trainer.cfg.env.episodes_per_trial,
        episode_steps=trainer.episode_steps,
        seed=seed,
        deterministic=True,
    )
    trainer.networks.train()
    features = task_features(tasks)
    label = expert_commands(features.numpy(), venv.commander, batch.obs.shape[0])
    data = {
        "obs": batch.obs.cpu(),
        "act": batch.env_actions.cpu(),
        "label": torch.as_tensor(label),
        "rew": batch.rewards.cpu(),
        "next": batch.next_obs.cpu(),
        "done": batch.dones.cpu(),
        "features": features,
    }
    return data, float(batch.episode_success[-1].mean())


def adapted_means(
    nets: AgentNetworks,
    inner_loss: LossFn,
    obs: torch.Tensor,
    trials: TrialTensors,
    cond: torch.Tensor,
    beliefs: torch.Tensor,
    episodes: int,
) -> torch.Tensor:
    """The policy's mean commands ``(T, B, A)`` on trials ``obs`` ``(T, B, obs_dim)`` (as the
    policy reads them; ``trials`` holds them and the next observations normalised, as the
    encoder and the task model read them) with conditioning ``cond`` ``(T, B, C)``, acting as
    the MAML agent does: the meta-parameters in episode 1, then after each episode k that
    ``maml.adapts_after(k)`` one Meta-SGD adaptation on that episode's inner batch
    (``TaskModelBatch`` as :meth:`MetaAgent._inner_batch` builds it: the episode's inputs,
    detached, and ``beliefs`` ``(T, B, d)``, the belief means, at its last step).
    Differentiable in the meta-parameters and step sizes."""
    maml = nets.maml
    assert maml is not None
    steps = obs.shape[0] // episodes
    model = torch.func.vmap(functional_model(nets.policy))
    # Task-major for vmap; the inner batches' inputs are constants, as the agent records them.
    x, c = obs.transpose(0, 1), cond.transpose(0, 1)
    norm, norm_next = (t.detach().transpose(0, 1) for t in (trials.obs, trials.next_obs))
    mask = torch.ones(x.shape[0], steps, dtype=torch.bool)
    params = maml.init_params(x.shape[0])
    means = []
    for k in range(episodes):
        sl = slice(k * steps, (k + 1) * steps)
        means.append(model(params, x[:, sl], c[:, sl]).mean)
        if k < episodes - 1 and maml.adapts_after(k):
            inner = TaskModelBatch(
                obs=(x[:, sl], c[:, sl].detach(), norm[:, sl], norm_next[:, sl]),
                context=beliefs[(k + 1) * steps - 1].detach(),
                mask=mask,
            )
            params = maml.adapt(params, inner_loss, inner)
    return torch.cat(means, dim=1).transpose(0, 1)


def fit(
    trainer: Trainer,
    data: Data,
    opt: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    epochs: int,
    batch: int,
    gen: torch.Generator,
    log: str,
    model_opt: torch.optim.Optimizer | None = None,
) -> None:
    """``epochs`` passes of behaviour cloning (and task inference) over ``data``; with MAML
    (``model_opt``, the task decoder's optimiser) the imitation loss is taken at the adapted
    parameters (:func:`adapted_means`) and the decoder is fitted on the detached beliefs."""
    nets, cfg = trainer.networks, trainer.cfg
    head = nets.task_head
    weight = cfg.privileged.task_inference_weight
    n = data["obs"].shape[1]
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        bc_sum, ti_sum, model_sum, count = 0.0, 0.0, 0.0, 0
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch]
            obs = nets.normalize(data["obs"][:, idx])
            trials = TrialTensors(
                obs=obs,
                action=data["act"][:, idx],
                reward=nets.normalize_reward(data["rew"][:, idx]),
                next_obs=nets.normalize(data["next"][:, idx]),
                done=data["done"][:, idx],
                mask=torch.ones(obs.shape[:2], dtype=torch.bool),
            )
            beliefs, _ = trials.encode(nets.encoder)
            if cfg.encoder.use_context:  # what the agent acts on at step t: the belief before it
                before = nets.encoder.beliefs_with_prior(beliefs).features()[:-1]
            else:  # the context-off ablation: the agent always acts on the prior
                prior = nets.encoder.prior(len(idx)).features()
                before = prior.expand(beliefs.mean.shape[0], -1, -1)
            if model_opt is not None:
                assert trainer.agent.inner_loss is not None
                # The reward decoder, on the beliefs as they are (it does not shape them).
                terms = elbo_loss(
                    nets.encoder, nets.decoder, trials, cfg.task_model, gen, beliefs.detach()
                )
                model_opt.zero_grad()
                terms.total.backward()
                model_opt.step()
                model_sum += float(terms.reward_loss.detach()) * len(idx)
                mean = adapted_means(
                    nets,
                    trainer.agent.inner_loss,
                    data["obs"][:, idx],
                    trials,
                    nets.conditioning(before),
                    beliefs.mean,
                    cfg.env.episodes_per_trial,
                )
            else:
                mean = nets.policy(data["obs"][:, idx], nets.conditioning(before)).mean
            bc = ((mean - data["label"][:, idx]) ** 2).mean()
            loss = bc
            ti = torch.zeros(())
            if head is not None and weight > 0:
                target = inference_targets(cfg.privileged, data["features"][idx])
                ti = task_inference_loss(nets.encoder, head, trials, target, beliefs)
                loss = loss + weight * ti
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            bc_sum += float(bc.detach()) * len(idx)
            ti_sum += float(ti.detach()) * len(idx)
            count += len(idx)
        extra = ""
        if model_opt is not None:
            assert nets.maml is not None
            sizes = [
                float(v.detach().abs().mean()) if isinstance(v, torch.Tensor) else abs(v)
                for v in nets.maml.step_sizes().values()
            ]
            extra = (
                f", task model reward {model_sum / count:.4f}, mean step size "
                f"{float(np.mean(sizes)):.4f}"
            )
        print(
            f"{log} epoch {epoch + 1}: imitation {bc_sum / count:.4f}, task inference "
            f"{ti_sum / count:.4f}{extra} ({n} trials)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--trials", type=int, default=1024, help="Searcher trials (train split).")
    p.add_argument("--epochs", type=int, default=20, help="Passes over the searcher's trials.")
    p.add_argument("--batch", type=int, default=64, help="Trials per gradient step.")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dagger-rounds", type=int, default=0, help="DAgger rounds after cloning.")
    p.add_argument("--dagger-trials", type=int, default=128, help="Agent trials per round.")
    p.add_argument("--dagger-epochs", type=int, default=3, help="Passes over all data per round.")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides.")
    args = p.parse_args(argv)
    for name in ("trials", "epochs", "batch", "dagger_trials", "dagger_epochs"):
        if getattr(args, name) < 1:
            raise SystemExit(
                f"--{name.replace('_', '-')}: got {getattr(args, name)}; allowed: >= 1"
            )
    if args.dagger_rounds < 0:
        raise SystemExit(f"--dagger-rounds: got {args.dagger_rounds}; allowed: >= 0")

    cfg = load_experiment(args.config, list(args.overrides))
    kwargs = dict(cfg.env.kwargs)
    if cfg.env.id != COMMANDED_ID or kwargs.get("command", "goal") != "goal":
        raise SystemExit(
            f"env: got {cfg.env.id} with command={kwargs.get('command', 'goal')!r}; allowed: "
            f"{COMMANDED_ID} with command 'goal' (the searcher names goal points)"
        )
    if cfg.maml.enabled and cfg.maml.inner_loss != "task_model":
        raise SystemExit(
            f"maml.inner_loss: got {cfg.maml.inner_loss!r}; allowed with imitation: 'task_model' "
            "(the policy-gradient inner loss needs a critic, which imitation does not fit)"
        )
    if cfg.maml.enabled and cfg.maml.rollouts_per_task != 1:
        raise SystemExit(
            f"maml.rollouts_per_task: got {cfg.maml.rollouts_per_task}; allowed with imitation: 1"
        )
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, None)
    venv = trainer.venv
    assert isinstance(venv, CommandedVectorEnv)
    data, searcher_success = demonstrations(
        args.trials, kwargs, cfg.env.num_threads, args.seed, venv.commander
    )
    print(
        f"{args.trials} searcher trials ({data['obs'].shape[0]} steps each) in "
        f"{time.perf_counter() - t0:.0f} s; its episode-3 success on them: {searcher_success:.2f}"
    )
    run_dir = prepare_run_dir(args.run_dir)
    save_config(run_dir, cfg)
    trainer.attach(run_dir)
    nets = trainer.networks
    # The normalisers the agent acts with, fitted to the demonstrations (then fixed).
    with torch.no_grad():
        nets.policy.obs_norm.update(data["obs"].reshape(-1, data["obs"].shape[-1]))
        nets.reward_norm.update(data["rew"].reshape(-1, 1))
    params = list(nets.encoder.parameters()) + list(nets.policy.actor.parameters())
    if nets.task_head is not None:
        params += list(nets.task_head.parameters())
    model_opt = None
    if nets.maml is not None:
        params += list(nets.maml.parameters())  # the step sizes (none when fixed)
        model_opt = torch.optim.Adam(nets.decoder.parameters(), lr=cfg.task_model.lr)
    opt = torch.optim.Adam(params, lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    fit(trainer, data, opt, params, args.epochs, args.batch, gen, "cloning", model_opt)
    env_steps = int(data["obs"].shape[0] * data["obs"].shape[1])
    if args.dagger_rounds:
        dagger_venv = make_task_vector_env(
            COMMANDED_ID, args.dagger_trials, num_threads=cfg.env.num_threads, **kwargs
        )
        assert isinstance(dagger_venv, CommandedVectorEnv)
        for r in range(args.dagger_rounds):
            new, success = agent_trials(trainer, dagger_venv, args.seed + 10_000 * (r + 1))
            env_steps += int(new["obs"].shape[0] * new["obs"].shape[1])
            print(
                f"DAgger round {r + 1}: the agent's episode-3 success on {args.dagger_trials} "
                f"train tasks: {success:.2f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
            data = {k: torch.cat([data[k], new[k]], dim=0 if k == "features" else 1) for k in data}
            fit(
                trainer,
                data,
                opt,
                params,
                args.dagger_epochs,
                args.batch,
                gen,
                f"round {r + 1}",
                model_opt,
            )
        dagger_venv.close()
    trainer.counters.iteration = 1
    trainer.counters.env_steps = env_steps
    path = trainer.save(is_best=True)
    trainer.close()
    print(f"run dir: {run_dir} ({path.name}) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
