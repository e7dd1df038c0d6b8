"""The PPO update of the belief-conditioned policy (step 4 of the trainer without MAML).

Epochs over minibatches of single steps; when the encoder learns from PPO too
(``encoder.rl_gradients``) minibatches of whole trials, whose beliefs are recomputed with the
encoder's graph, or of stretches of trials (``encoder.rl_bptt_steps``, truncated BPTT).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.encoder import Belief, ContextEncoder
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
    beliefs, _ = sub.encode(encoder)
    before = encoder.beliefs_with_prior(beliefs)
    return Belief(before.mean[:-1], before.logvar[:-1]).features()


def to_stretches(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Cut time-major ``(T, N, ...)`` into stretches of ``steps`` steps: ``(steps, S * N, ...)``
    with ``S = T // steps``, column ``s * N + n`` being stretch ``s`` of trial ``n``."""
    t_len, n = x.shape[:2]
    s = t_len // steps
    if s * steps != t_len:
        raise ValueError(f"to_stretches: {t_len} steps do not cut into stretches of {steps}")
    rest = x.shape[2:]
    return x.reshape(s, steps, n, *rest).transpose(0, 1).reshape(steps, s * n, *rest)


@dataclass(frozen=True)
class Stretches:
    """Trials cut into stretches for truncated back-propagation (``encoder.rl_bptt_steps``);
    whole trials are the case of one stretch per trial.

    ``source``: the whole trials ``(T, N, ...)``; ``trials``: the same transitions cut,
    ``(steps, S * N, ...)`` (:func:`to_stretches`); ``start``: the encoder's hidden state
    before each stretch ``(S * N, hidden)``, from a pass over the whole trials without
    gradients (the trial's initial state for the first stretches, so no pass for whole
    trials); ``first``: whether each stretch starts its trial (its belief before the first
    step is the prior).
    """

    source: TrialTensors
    trials: TrialTensors
    start: torch.Tensor
    first: torch.Tensor

    @classmethod
    def of(cls, encoder: ContextEncoder, trials: TrialTensors, steps: int) -> Stretches:
        n = trials.reward.shape[1]
        cut = TrialTensors(
            **{f.name: to_stretches(getattr(trials, f.name), steps) for f in fields(trials)}
        )
        first = torch.arange(cut.reward.shape[1], device=cut.reward.device) < n
        return cls(trials, cut, _stretch_starts(encoder, trials, steps), first)

    def restarted(self, encoder: ContextEncoder) -> Stretches:
        """The same stretches starting from the hidden states the encoder reaches now."""
        steps = self.trials.reward.shape[0]
        return replace(self, start=_stretch_starts(encoder, self.source, steps))

    def beliefs(self, encoder: ContextEncoder, idx: torch.Tensor) -> torch.Tensor:
        """Belief features ``(steps, m, F)`` before each step of stretches ``idx``, with the
        encoder's graph back to each stretch's start (whose hidden state is a constant)."""
        sub = self.trials.select(idx)
        h0 = self.start[idx]
        beliefs, _ = sub.encode(encoder, h0)
        at_start, prior = encoder.belief(h0), encoder.prior(len(idx), h0.device)
        first = self.first[idx].unsqueeze(-1)
        mean = torch.where(first, prior.mean, at_start.mean)
        logvar = torch.where(first, prior.logvar, at_start.logvar)
        before = Belief(
            torch.cat([mean.unsqueeze(0), beliefs.mean[:-1]]),
            torch.cat([logvar.unsqueeze(0), beliefs.logvar[:-1]]),
        )
        return before.features()


def _stretch_starts(encoder: ContextEncoder, trials: TrialTensors, steps: int) -> torch.Tensor:
    """The hidden state before each stretch of ``steps`` steps of ``trials``, ``(S * N, hidden)``
    in :func:`to_stretches`' column order."""
    t_len, n = trials.reward.shape
    starts = [encoder.initial_state(n, trials.reward.device).unsqueeze(0)]
    if steps < t_len:
        with torch.no_grad():
            states = trials.hidden_states(encoder)
        starts.append(states[steps - 1 : t_len - 1 : steps])
    return torch.cat(starts).flatten(0, 1)


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
    encoder's graph per minibatch of whole trials (of stretches of ``encoder.rl_bptt_steps``
    steps when that is shorter than a trial: :class:`Stretches`); None uses the recorded beliefs
    and minibatches of single steps. ``generator`` draws the permutations.

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
    reduce = advantage_reduce(guard)
    if trials is not None:
        # The encoder learns from PPO too: minibatches of whole trials, or of stretches.
        steps = cfg.encoder.rl_bptt_steps or t_len
        return _ppo_update_on_trials(
            cfg, networks, batch, adv, ret, task, trials, steps, guard, generator, reduce
        )
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.ppo.epochs):
        perm = torch.randperm(t_len * n, generator=generator).to(device)
        for idx in perm.chunk(cfg.ppo.minibatches):
            mb = PPOBatch(
                obs=batch.obs.flatten(0, 1)[idx],
                belief=batch.beliefs.flatten(0, 1)[idx],
                actions=batch.raw_actions.flatten(0, 1)[idx],
                old_log_probs=batch.log_probs.flatten(0, 1)[idx],
                advantages=adv.flatten(0, 1)[idx],
                returns=ret.flatten(0, 1)[idx],
                mask=batch.mask.flatten(0, 1)[idx],
            )
            mb_task = None if task is None else task.flatten(0, 1)[idx]
            if not ppo_step(guard, _terms(cfg, networks, mb, mb_task, reduce), stats):
                break
        if guard.stopped:
            break
    return summarize_losses(stats)


def _terms(
    cfg: ExperimentConfig,
    networks: AgentNetworks,
    mb: PPOBatch,
    task: torch.Tensor | None,
    reduce: SumFn | None,
) -> PPOTerms:
    """The PPO loss of a minibatch; with the asymmetric critic (``task``: the minibatch's true
    task features) its value replaces the policy's own critic's."""
    critic = networks.privileged_critic
    if critic is None:
        return ppo_loss(networks.policy, None, mb, cfg.ppo, reduce=reduce)
    assert task is not None
    out = networks.policy(mb.obs, mb.belief)
    value = critic(networks.normalize(mb.obs), mb.belief, task)
    return ppo_loss_from_output(out._replace(value=value), mb, cfg.ppo, reduce=reduce)


def _ppo_update_on_trials(
    cfg: ExperimentConfig,
    networks: AgentNetworks,
    batch: TrialBatch,
    adv: torch.Tensor,
    ret: torch.Tensor,
    task: torch.Tensor | None,
    trials: TrialTensors,
    steps: int,
    guard: GuardedOptimizer,
    generator: torch.Generator,
    reduce: SumFn | None,
) -> dict[str, float]:
    """:func:`ppo_update` with the encoder's graph: minibatches of stretches of ``steps`` steps
    (:class:`Stretches`; whole trials when ``steps`` is the trial length), whose start states
    are re-encoded at the start of each epoch."""
    cut = {
        "obs": to_stretches(batch.obs, steps),
        "actions": to_stretches(batch.raw_actions, steps),
        "old_log_probs": to_stretches(batch.log_probs, steps),
        "advantages": to_stretches(adv, steps),
        "returns": to_stretches(ret, steps),
        "mask": to_stretches(batch.mask, steps),
    }
    task_cut = None if task is None else to_stretches(task, steps)
    # Posterior sampling: the policy read the recorded draws, not the head's prediction.
    recorded = networks.recorded_hypotheses(batch.beliefs)
    drawn = None if recorded is None else to_stretches(recorded, steps)
    stats: dict[str, list[float]] = {}
    stretches = Stretches.of(networks.encoder, trials, steps)
    for epoch in range(cfg.ppo.epochs):
        if epoch:
            stretches = stretches.restarted(networks.encoder)
        count = stretches.start.shape[0]
        perm = torch.randperm(count, generator=generator).to(batch.rewards.device)
        for idx in perm.chunk(min(cfg.ppo.minibatches, count)):
            feats = networks.conditioning(
                stretches.beliefs(networks.encoder, idx),
                None if drawn is None else drawn[:, idx],
            )
            mb = PPOBatch(
                belief=feats.flatten(0, 1),
                **{k: v[:, idx].flatten(0, 1) for k, v in cut.items()},
            )
            mb_task = None if task_cut is None else task_cut[:, idx].flatten(0, 1)
            if not ppo_step(guard, _terms(cfg, networks, mb, mb_task, reduce), stats):
                break
        if guard.stopped:
            break
    return summarize_losses(stats)
