"""The MAML outer loop (step 4 of the trainer with ``maml.enabled``): PPO through the inner steps.

For each epoch and each minibatch of whole trials (the inner loss needs a task's whole episode):
start from the meta-parameters, evaluate the policy on episode 0, adapt on the batch the agent
adapted on after episode 0 (``TrialBatch.inner_batches``; with the graph unless
``maml.first_order``), evaluate episode 1 with the adapted parameters, and so on. The clipped
PPO loss over all episodes (old log-probs: what the agent acted with), plus the value loss, is
back-propagated into the policy's meta-parameters, the Meta-SGD step sizes and
(``encoder.rl_gradients``) the encoder. The critic is not adapted.
"""

from __future__ import annotations

from typing import Any

import torch

from meta_rl.agent.maml import MetaSGD, batched_loss, expand_rollouts, functional_model, map_batch
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.agent.policy import PolicyOutput
from meta_rl.agent.task_model import TrialTensors
from meta_rl.training.optim import GuardedOptimizer
from meta_rl.training.ppo import PPOBatch, PPOTerms, SumFn, ppo_loss_from_output
from meta_rl.training.ppo_update import (
    advantage_reduce,
    ppo_step,
    sub_beliefs,
    summarize_losses,
)
from meta_rl.training.rollout import TrialBatch

__all__ = ["inner_loss_stats", "maml_loss", "maml_update", "select_tasks"]


def select_tasks(tree: Any, idx: torch.Tensor) -> Any:
    """Rows ``idx`` (tasks) of every tensor of a batch (tensors in tuples / NamedTuples)."""
    return map_batch(tree, lambda _path, t: t[idx])


def maml_update(
    agent: MetaAgent,
    batch: TrialBatch,
    adv: torch.Tensor,
    ret: torch.Tensor,
    *,
    trials: TrialTensors | None,
    guard: GuardedOptimizer,
    generator: torch.Generator,
    reward_scale: float,
) -> dict[str, float]:
    """``ppo.epochs`` epochs over minibatches of tasks of :func:`maml_loss` steps.

    ``agent`` collected ``batch`` (``batch.inner_batches`` are the batches it adapted on);
    ``reward_scale`` (the return scaler's) puts the inner loss's rewards on the critic's scale.
    Logs the inner loss before and after one adaptation and the mean step sizes. In a
    distributed run (``guard.world``) each rank's minibatches are tasks of its own share; the
    outer gradients are averaged over the ranks and the advantages standardised over all.
    """
    cfg, nets = agent.config, agent.networks
    maml = nets.maml
    assert maml is not None
    n = batch.rewards.shape[1] // cfg.maml.rollouts_per_task  # tasks
    stats: dict[str, list[float]] = {}
    stats.update(inner_loss_stats(agent, maml, batch, n))
    nets.inner_reward_scale.fill_(reward_scale)
    reduce = advantage_reduce(guard)
    for _ in range(cfg.ppo.epochs):
        perm = torch.randperm(n, generator=generator).to(batch.rewards.device)
        for idx in perm.chunk(min(cfg.ppo.minibatches, n)):
            terms = maml_loss(agent, batch, adv, ret, idx, trials, reduce=reduce)
            if not ppo_step(guard, terms, stats):
                break
        if guard.stopped:
            break
    out_stats = summarize_losses(stats)
    for name, size in maml.step_sizes().items():
        value = size.detach().mean() if isinstance(size, torch.Tensor) else size
        out_stats[f"maml/step_size/{name}"] = float(value)
    return out_stats


def maml_loss(
    agent: MetaAgent,
    batch: TrialBatch,
    adv: torch.Tensor,
    ret: torch.Tensor,
    idx: torch.Tensor,
    trials: TrialTensors | None = None,
    *,
    reduce: SumFn | None = None,
) -> PPOTerms:
    """The outer (meta) loss of trials ``idx`` of ``batch``, differentiable end to end.

    ``idx`` are tasks: with ``maml.rollouts_per_task`` m, task i's trials are the
    sub-environments ``i * m`` to ``i * m + m - 1``. ``adv``/``ret`` are ``(T, N)``; the inner
    batches are those ``agent`` adapted on while collecting ``batch`` (``batch.inner_batches``,
    one row per task). ``trials`` (the batch's
    :meth:`~meta_rl.training.rollout.TrialBatch.trial_tensors`) recomputes the beliefs with the
    encoder's graph (``encoder.rl_gradients``); None uses the recorded ones. ``reduce``
    (distributed runs) standardises the advantages over every rank's minibatch.
    """
    cfg, nets = agent.config, agent.networks
    maml, inner_loss = nets.maml, agent.inner_loss
    if maml is None or inner_loss is None:
        raise ValueError("maml.enabled: the MAML outer loss needs maml.enabled=true")
    inner = batch.inner_batches
    episodes = cfg.env.episodes_per_trial
    steps = batch.rewards.shape[0] // episodes
    model = torch.func.vmap(functional_model(nets.policy))
    m = cfg.maml.rollouts_per_task
    task_idx = idx
    idx = (task_idx.unsqueeze(1) * m + torch.arange(m, device=idx.device)).flatten()
    if trials is not None:
        feats = sub_beliefs(nets.encoder, trials, idx).transpose(0, 1)
    else:
        feats = batch.beliefs[:, idx].transpose(0, 1)
    obs = batch.obs[:, idx].transpose(0, 1)
    params = maml.init_params(len(task_idx))
    outs = []
    for k in range(episodes):
        sl = slice(k * steps, (k + 1) * steps)
        outs.append(model(expand_rollouts(params, m), obs[:, sl], feats[:, sl]))
        if k < episodes - 1 and k in inner:
            params = maml.adapt(params, inner_loss, select_tasks(inner[k], task_idx))
    out = PolicyOutput(*(torch.cat(parts, dim=1) for parts in zip(*outs, strict=True)))
    mb = PPOBatch(
        obs=obs,
        belief=feats,
        actions=batch.raw_actions[:, idx].transpose(0, 1),
        old_log_probs=batch.log_probs[:, idx].transpose(0, 1),
        advantages=adv[:, idx].transpose(0, 1),
        returns=ret[:, idx].transpose(0, 1),
        mask=batch.mask[:, idx].transpose(0, 1),
    )
    policy_mask = None
    if cfg.maml.outer_episodes == "adapted":
        # Episode 0 acts with the meta-parameters: only the later ones (adapted) count.
        policy_mask = torch.ones_like(mb.mask, dtype=torch.bool)
        policy_mask[:, :steps] = False
    return ppo_loss_from_output(out, mb, cfg.ppo, policy_mask=policy_mask, reduce=reduce)


def inner_loss_stats(
    agent: MetaAgent, maml: MetaSGD, batch: TrialBatch, num_tasks: int
) -> dict[str, list[float]]:
    """The inner loss on the first adapted episode of ``batch`` before and after adapting on
    it."""
    inner, loss_fn = batch.inner_batches, agent.inner_loss
    if 0 not in inner or loss_fn is None:
        return {}
    with torch.no_grad():
        params = maml.init_params(num_tasks)
        pre = batched_loss(loss_fn, params, inner[0])
        post = batched_loss(loss_fn, maml.adapt(params, loss_fn, inner[0]), inner[0])
    return {
        "maml/inner_loss_pre": [float(pre.mean())],
        "maml/inner_loss_post": [float(post.mean())],
    }
