"""The PPO update of the belief-conditioned policy (step 4 of the trainer without MAML).

Epochs over minibatches of single steps; when the encoder learns from PPO too
(``encoder.rl_gradients``) minibatches of whole trials, whose beliefs are recomputed with the
encoder's graph.
"""

from __future__ import annotations

import numpy as np
import torch

from meta_rl.agent.encoder import Belief, ContextEncoder
from meta_rl.agent.meta_agent import AgentNetworks
from meta_rl.agent.task_model import TrialTensors
from meta_rl.experiment import ExperimentConfig
from meta_rl.training.distributed import all_reduce_sum
from meta_rl.training.optim import GuardedOptimizer
from meta_rl.training.ppo import PPOBatch, PPOTerms, SumFn, ppo_loss, ppo_loss_from_output
from meta_rl.training.rollout import TrialBatch

__all__ = [
    "PPO_TERMS",
    "advantage_reduce",
    "ppo_step",
    "ppo_update",
    "sub_beliefs",
    "summarize_losses",
]

PPO_TERMS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction")
"""The PPO terms logged per minibatch update (``losses/<term>``, averaged per iteration)."""


def summarize_losses(stats: dict[str, list[float]]) -> dict[str, float]:
    """The mean of every logged value, and ``losses/updates``: the updates applied."""
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["losses/updates"] = float(len(stats.get("losses/policy_loss", [])))
    return out


def ppo_step(guard: GuardedOptimizer, terms: PPOTerms, stats: dict[str, list[float]]) -> bool:
    """One optimizer step on ``terms.total``; its terms go into ``stats`` as ``losses/<term>``.

    False when the run must stop (too many non-finite updates in a row).
    """
    guard.step(terms.total)
    if guard.stopped:
        return False
    for key in PPO_TERMS:
        stats.setdefault(f"losses/{key}", []).append(float(getattr(terms, key).detach()))
    return True


def advantage_reduce(guard: GuardedOptimizer) -> SumFn | None:
    """The sum over the ranks that standardises advantages over all ranks' minibatches in a
    distributed run (the ranks of ``guard.world``); None for one process."""
    world = guard.world
    if not world.distributed:
        return None
    return lambda x: all_reduce_sum(world, x)


def sub_beliefs(encoder: ContextEncoder, trials: TrialTensors, idx: torch.Tensor) -> torch.Tensor:
    """Belief features ``(T, n, F)`` of trials ``idx`` recomputed with the encoder's graph."""
    sub = trials.select(idx)
    beliefs, _ = encoder(sub.obs, sub.action, sub.reward, sub.next_obs, sub.done, mask=sub.mask)
    before = encoder.beliefs_with_prior(beliefs)
    return Belief(before.mean[:-1], before.logvar[:-1]).features()


def ppo_update(
    cfg: ExperimentConfig,
    networks: AgentNetworks,
    batch: TrialBatch,
    adv: torch.Tensor,
    ret: torch.Tensor,
    *,
    trials: TrialTensors | None,
    guard: GuardedOptimizer,
    generator: torch.Generator,
) -> dict[str, float]:
    """``ppo.epochs`` epochs of ``ppo.minibatches`` clipped-PPO steps on ``batch``.

    ``adv``/``ret`` are ``(T, N)``; ``trials`` (the batch's
    :meth:`~meta_rl.training.rollout.TrialBatch.trial_tensors`) recomputes the beliefs with the
    encoder's graph per minibatch of whole trials; None uses the recorded beliefs and
    minibatches of single steps. ``generator`` draws the permutations.

    With ``networks.privileged_critic`` (``privileged.critic``) the value loss is that of the
    asymmetric critic on the batch's ``task_features`` (the policy's own critic is unused).

    In a distributed run (``guard.world``) each rank takes its minibatches of its own trials
    (the same number on every rank); the advantages are standardised over the ranks' minibatch
    together and the gradients averaged (:mod:`meta_rl.training.distributed`).
    """
    t_len, n = batch.rewards.shape
    device = batch.rewards.device
    critic = networks.privileged_critic
    task: torch.Tensor | None = None
    if critic is not None:
        if batch.task_features is None:
            raise ValueError("ppo_update: privileged.critic needs the batch's task_features")
        task = batch.task_features.expand(t_len, *batch.task_features.shape)
    stats: dict[str, list[float]] = {}
    reduce = advantage_reduce(guard)
    for _ in range(cfg.ppo.epochs):
        if trials is not None:
            # The encoder learns from PPO too: minibatches of whole trials.
            perm = torch.randperm(n, generator=generator).to(device)
            chunks = perm.chunk(min(cfg.ppo.minibatches, n))
        else:
            perm = torch.randperm(t_len * n, generator=generator).to(device)
            chunks = perm.chunk(cfg.ppo.minibatches)
        for idx in chunks:
            if trials is not None:
                feats = networks.conditioning(sub_beliefs(networks.encoder, trials, idx))
                mb = PPOBatch(
                    obs=batch.obs[:, idx].flatten(0, 1),
                    belief=feats.flatten(0, 1),
                    actions=batch.raw_actions[:, idx].flatten(0, 1),
                    old_log_probs=batch.log_probs[:, idx].flatten(0, 1),
                    advantages=adv[:, idx].flatten(0, 1),
                    returns=ret[:, idx].flatten(0, 1),
                    mask=batch.mask[:, idx].flatten(0, 1),
                )
            else:
                mb = PPOBatch(
                    obs=batch.obs.flatten(0, 1)[idx],
                    belief=batch.beliefs.flatten(0, 1)[idx],
                    actions=batch.raw_actions.flatten(0, 1)[idx],
                    old_log_probs=batch.log_probs.flatten(0, 1)[idx],
                    advantages=adv.flatten(0, 1)[idx],
                    returns=ret.flatten(0, 1)[idx],
                    mask=batch.mask.flatten(0, 1)[idx],
                )
            if critic is None:
                terms = ppo_loss(networks.policy, None, mb, cfg.ppo, reduce=reduce)
            else:
                assert task is not None
                mb_task = (
                    task[:, idx].flatten(0, 1) if trials is not None else task.flatten(0, 1)[idx]
                )
                out = networks.policy(mb.obs, mb.belief)
                value = critic(networks.normalize(mb.obs), mb.belief, mb_task)
                terms = ppo_loss_from_output(out._replace(value=value), mb, cfg.ppo, reduce=reduce)
            if not ppo_step(guard, terms, stats):
                break
        if guard.stopped:
            break
    return summarize_losses(stats)
