"""The meta-trained agent: context encoder + belief-conditioned policy (+ the task model).

Agent API (used by evaluation and by the trainer's own rollouts, so both drive the same code)::

    agent = MetaAgent.from_checkpoint(Path("runs/<run>"), device="auto")  # best, else last
    agent.env_id, agent.env_kwargs, agent.config      # what it was trained on / with
    agent.zero_shot()                                 # no-adaptation ablation: prior, no MAML
    agent.begin_trial(num_envs)                       # new tasks: belief back to the prior
    actions = agent.act(obs, deterministic=True)      # (N, obs_dim) -> (N, act_dim), clipped
    agent.observe(obs, actions, rewards, next_obs, dones)   # update the belief (GRU step)
    agent.end_episode()                               # all N episodes ended (belief is kept;
                                                      # MAML: the policy adapts)

It implements the ``AdaptiveAgent`` protocol of docs/design.md. The encoder's hidden state is
carried across episodes of a trial and reset only by :meth:`MetaAgent.begin_trial`. With
``use_context`` false the encoder is not run and the policy always sees the prior N(0, I); with
``adapt`` false the MAML inner loop never runs (:meth:`MetaAgent.zero_shot` turns both off).
``from_checkpoint`` accepts a checkpoint file or a run directory.

MAML (``maml.enabled``): :class:`AgentNetworks` then owns a
:class:`~meta_rl.agent.maml.MetaSGD` over the
policy's actor (its step sizes are saved with the networks). The agent records each episode and
:meth:`MetaAgent.end_episode` adapts the policy's parameters on it (under ``no_grad``) when
``MetaSGD.adapts_after`` says so; later episodes of the trial act with the adapted parameters,
one set per task. With ``maml.rollouts_per_task`` m > 1, each task runs in m consecutive
sub-environments, which adapt together on their m episodes (MAML-RL's inner batch) and act with
the same parameters. :meth:`MetaAgent.begin_trial` drops them: every trial (every task)
starts from the meta-parameters, and nothing is ever written into the policy module. The inner
batches of the trial stay in :attr:`MetaAgent.inner_batches` for the trainer's outer loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from meta_rl.agent.advantages import compute_gae
from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.encoder import Belief
from meta_rl.agent.inner_loss import make_inner_loss
from meta_rl.agent.maml import (
    LossFn,
    MetaSGD,
    PolicyGradientBatch,
    TaskModelBatch,
    expand_rollouts,
    functional_model,
    merge_rollouts,
)
from meta_rl.agent.networks import gaussian_log_prob
from meta_rl.agent.particles import (
    ParticlePosterior,
    fuse,
)
from meta_rl.agent.policy import PolicyOutput
from meta_rl.agent.privileged import (
    PRIVILEGED_MODULES,
)
from meta_rl.checkpoint import agent_state_from_checkpoint
from meta_rl.experiment import ExperimentConfig, resolve_device

__all__ = ["MetaAgent", "StepOutput"]


@dataclass(frozen=True)
class StepOutput:
    """One action step for N sub-environments: what the trainer records."""

    raw_action: torch.Tensor  # (N, A) sampled, unclipped (for log-probabilities)
    env_action: np.ndarray  # (N, A) clipped to the action space (sent to the env)
    log_prob: torch.Tensor  # (N,)
    value: torch.Tensor  # (N,)
    belief: torch.Tensor  # (N, C) what the policy conditioned on (AgentNetworks.conditioning)


class MetaAgent:
    """Adaptive agent: belief from the context encoder, actions from the conditioned policy.

    ``adapt`` False drops the MAML inner loop (the meta-parameters act in every episode);
    ``refine`` False drops the particle posterior's refinement (``privileged.refine_steps``);
    ``refine_every`` (None: ``privileged.refine_every``) sets how often it also refines within
    an episode.
    ``generator`` (a CPU ``torch.Generator``) draws the exploration noise; ``seed`` seeds a
    fresh one when it is not given. ``noise_rows`` ``(start, total)``: this agent acts for the
    sub-environments ``start, start + 1, ...`` of a meta-batch of ``total`` spread over several
    processes (distributed training); every step draws the whole meta-batch's noise from
    ``generator`` (which every process holds alike) and uses its rows, so the processes together
    act as one process with all ``total`` sub-environments would.
    """

    def __init__(
        self,
        networks: AgentNetworks,
        config: ExperimentConfig,
        *,
        action_low: np.ndarray,
        action_high: np.ndarray,
        device: torch.device | str = "cpu",
        use_context: bool | None = None,
        adapt: bool = True,
        refine: bool = True,
        refine_every: int | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
        noise_rows: tuple[int, int] | None = None,
    ) -> None:
        self.networks = networks
        self.noise_rows = noise_rows
        self.config = config
        self.env_id = config.env.id
        self.env_kwargs: dict[str, Any] = dict(config.env.kwargs)
        self.device = torch.device(device)
        self.use_context = config.encoder.use_context if use_context is None else use_context
        self.action_low = np.asarray(action_low, dtype=np.float32)
        self.action_high = np.asarray(action_high, dtype=np.float32)
        self.generator = generator if generator is not None else torch.Generator()
        if generator is None:
            self.generator.manual_seed(seed)
        self._hidden: torch.Tensor | None = None
        self._belief: Belief | None = None
        self.maml: MetaSGD | None = networks.maml if adapt else None
        self.inner_loss: LossFn | None = (
            make_inner_loss(
                networks, config, action_low=self.action_low, action_high=self.action_high
            )
            if self.maml is not None
            else None
        )
        self._model = functional_model(networks.policy)
        self.rollouts_per_task: int = config.maml.rollouts_per_task
        """Sub-environments per task: consecutive groups of this many must hold the same task
        (the trainer and the evaluation pin tasks so); with MAML they adapt together."""
        self._hypothesis: torch.Tensor | None = None  # posterior sampling's current draw
        self._drawn_log_density: torch.Tensor | None = None  # its log-density when drawn
        self._particles: ParticlePosterior | None = None  # hypotheses: particles
        self._started = False  # the trial's first observation has weighed the particles
        priv = config.privileged
        self.refine_steps = priv.refine_steps if refine else 0
        """Gradient steps refining the particles as each later episode begins (0: off; the
        no-refine ablation, :meth:`without_refinement`)."""
        every = priv.refine_every if refine_every is None else refine_every
        if every < 0:
            raise ValueError(f"refine_every: got {every}; allowed: >= 0 (0: never)")
        self.refine_every = every if self.refine_steps > 0 else 0
        """Also refine every this many steps within an episode (0: never; always 0 without
        refinement, so the no-refine ablation makes no call)."""
        self._refine_pending = False
        # Particles fused with a one-component head that the belief trains (particles.fuse).
        self._fuses_head = (
            networks.reward_model is not None
            and priv.task_head_components == 1
            and priv.task_inference_weight > 0.0
            and self.use_context
        )
        self._steps_in_episode = 0
        self._params: dict[str, torch.Tensor] | None = None  # None: the meta-parameters
        self._task_params: dict[str, torch.Tensor] | None = None  # the same, one set per task
        self._episode = 0
        self._record: dict[str, list[torch.Tensor]] = {}
        self.inner_batches: dict[int, Any] = {}
        """Episode k of the current trial -> the batch the policy adapted on after it."""

    # ---------------------------------------------------------------- AdaptiveAgent protocol

    def begin_trial(self, num_envs: int) -> None:
        """New tasks: the encoder state restarts, the belief is the prior and the policy's
        parameters are the meta-parameters again (adapted ones are dropped)."""
        if num_envs % self.rollouts_per_task:
            raise ValueError(
                f"num_envs: got {num_envs}; allowed: a multiple of maml.rollouts_per_task "
                f"({self.rollouts_per_task}), each task's rollouts in consecutive sub-envs"
            )
        enc = self.networks.encoder
        self._hidden = enc.initial_state(num_envs, self.device)
        self._belief = enc.prior(num_envs, self.device)
        # Adapted parameters never outlive their trial: new tasks start from the meta-parameters.
        self._params = None
        self._task_params = None
        self._episode = 0
        self._record = {}
        self.inner_batches = {}
        self._new_episode_hypotheses()
        self._started = False
        self._refine_pending = False
        nets = self.networks
        if nets.reward_model is not None and nets.task_head is not None:
            self._particles = ParticlePosterior(
                nets.reward_model,
                nets.task_head.targets(nets.particle_bank),
                num_envs,
                temperature=self.config.privileged.likelihood_temperature,
                generator=self.generator,
                keep_history=self.refine_steps > 0,  # only refinement reads the trial back
            )
            if nets.dynamics_model is not None:
                self._particles.observe_dynamics(
                    nets.dynamics_model, self.config.privileged.likelihood_temperature
                )

    def effective_particles(self) -> np.ndarray | None:
        """Per sub-environment, the particle posterior's effective number of particles, the
        exponential of its weights' entropy ``(N,)`` (1: one particle holds all the weight;
        the bank's size: uniform); None for an agent without a particle posterior."""
        if self._particles is None:
            return None
        with torch.no_grad():
            logw = torch.log_softmax(self._particles.log_weights, dim=1)
            entropy = -(logw.exp() * logw).sum(dim=1)
        return np.asarray(entropy.exp().cpu().numpy(), dtype=np.float64)

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions ``(N, act_dim)`` for observations ``(N, obs_dim)``, within the action space."""
        return self.step(obs, deterministic).env_action

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> None:
        """Read one transition per sub-environment into the belief (rows with mask false skip)."""
        if self._hidden is None:
            raise RuntimeError("MetaAgent.observe before begin_trial(num_envs)")
        next_obs_t = self._tensor(next_obs)
        if self.maml is not None:
            valid = np.ones(len(reward), dtype=bool) if mask is None else np.asarray(mask, bool)
            self._append("reward", self._tensor(np.where(valid, reward, 0.0)))
            self._append("mask", torch.as_tensor(valid, device=self.device))
            self._append("next_obs", next_obs_t)
        if not self.use_context:
            return  # the zero-shot control: the prior belief, the particles' prior weights
        nets = self.networks
        with torch.no_grad():
            obs_n, next_n = nets.normalize(self._tensor(obs)), nets.normalize(next_obs_t)
            action_t, reward_t = self._tensor(action), self._tensor(reward)
            mask_t = None if mask is None else torch.as_tensor(mask, device=self.device)
            if self._particles is not None:
                self._particles.update(obs_n, action_t, reward_t, next_n, mask_t)
            self._hidden, self._belief = nets.encoder.step(
                self._hidden,
                obs_n,
                action_t,
                nets.normalize_reward(reward_t),
                next_n,
                self._tensor(done),
                mask_t,
            )

    def end_episode(self) -> None:
        """All N episodes ended: the belief carries over; with MAML the policy adapts.

        The policy adapts (``maml.inner_steps`` steps on the episodes just recorded, one set of
        parameters per task, under ``no_grad``; a task's ``rollouts_per_task`` sub-environments
        adapt together on all their episodes and act with the same parameters) after episode k when
        ``MetaSGD.adapts_after(k)``; the next episodes act with the adapted parameters. With the
        policy-gradient inner loss the episodes the policy adapts on sample their actions even
        when :meth:`act` is asked for deterministic ones (they are the exploration episodes of
        MAML-RL); set ``maml.adapt_episodes`` to K-1 to evaluate the last episode of a trial
        deterministically.
        """
        if self._hidden is None:
            raise RuntimeError("MetaAgent.end_episode before begin_trial(num_envs)")
        self._new_episode_hypotheses()
        self._refine_pending = self._particles is not None and self.refine_steps > 0
        if self.maml is not None and self._record.get("reward"):
            if self.maml.adapts_after(self._episode):
                assert self.inner_loss is not None
                m = self.rollouts_per_task
                batch = merge_rollouts(self._inner_batch(), m)
                with torch.no_grad():
                    self._task_params = self.maml.adapt(
                        self._per_task_params(), self.inner_loss, batch
                    )
                    self._params = expand_rollouts(self._task_params, m)
                self.inner_batches[self._episode] = batch
            self._episode += 1
        self._record = {}

    # ---------------------------------------------------------------- MAML

    def adapted_params(self) -> dict[str, torch.Tensor]:
        """The policy's parameters the agent acts with, each ``(N, *shape)``.

        Right after :meth:`begin_trial` (and without MAML) these are the meta-parameters.
        """
        if self._belief is None:
            raise RuntimeError("MetaAgent: call begin_trial(num_envs) first")
        if self._params is not None:
            return self._params
        return self._meta_params(self._belief.mean.shape[0])

    def _per_task_params(self) -> dict[str, torch.Tensor]:
        """The parameters of each task (``(N / rollouts_per_task, *shape)``) to adapt next."""
        if self._task_params is not None:
            return self._task_params
        if self._belief is None:
            raise RuntimeError("MetaAgent: call begin_trial(num_envs) first")
        return self._meta_params(self._belief.mean.shape[0] // self.rollouts_per_task)

    def _meta_params(self, n: int) -> dict[str, torch.Tensor]:
        """The meta-parameters expanded to ``(n, *shape)`` (views, no copy)."""
        return {k: p.expand(n, *p.shape) for k, p in self.networks.policy.named_parameters()}

    def _explores(self) -> bool:
        """Whether this episode's actions are sampled even when deterministic ones are asked.

        The policy-gradient inner loss learns from the deviation of the actions from the mean:
        an episode of mean actions gives it no gradient on the mean. So, as in MAML-RL, the
        episodes the policy adapts on are exploratory; the others follow ``deterministic``.
        """
        return (
            self.maml is not None
            and self.config.maml.inner_loss == "policy_gradient"
            and self.maml.adapts_after(self._episode)
        )

    def _append(self, key: str, value: torch.Tensor) -> None:
        self._record.setdefault(key, []).append(value)

    def _inner_batch(self) -> PolicyGradientBatch | TaskModelBatch:
        """The episode just recorded as the inner loss reads it, each tensor ``(N, S, ...)``."""
        r = {k: torch.stack(v, dim=1) for k, v in self._record.items()}
        mask = r["mask"]
        cfg = self.config
        if cfg.maml.inner_loss == "task_model":
            nets = self.networks
            assert self._belief is not None
            z = self._belief.mean if self.use_context else torch.zeros_like(self._belief.mean)
            with torch.no_grad():
                obs = (
                    r["obs"],
                    r["belief"],
                    nets.normalize(r["obs"]),
                    nets.normalize(r["next_obs"]),
                )
            return TaskModelBatch(obs=obs, context=z.detach(), mask=mask)
        # Rewards on the critic's scale; the episode's end bootstraps from the last value (the
        # critic values whole trials, so the trial goes on after this episode).
        scale = self.networks.inner_reward_scale
        rewards = (torch.nan_to_num(r["reward"]) * scale).t()
        values = r["value"].t()
        adv, _ = compute_gae(
            rewards,
            values,
            torch.zeros_like(rewards, dtype=torch.bool),
            values[-1],
            cfg.ppo.gamma,
            cfg.ppo.gae_lambda,
        )
        return PolicyGradientBatch(
            obs=(r["obs"], r["belief"].detach()),
            actions=r["raw"],
            advantages=adv.t().detach(),
            mask=mask,
        )

    # ---------------------------------------------------------------- trainer-facing

    def belief_features(self) -> torch.Tensor:
        """What the policy conditions on now: ``(N, 2 * latent_dim)``."""
        if self._belief is None:
            raise RuntimeError("MetaAgent: call begin_trial(num_envs) first")
        if not self.use_context:
            n = self._belief.mean.shape[0]
            return self.networks.encoder.prior(n, self.device).features()
        return self._belief.features()

    def step(self, obs: np.ndarray, deterministic: bool = False) -> StepOutput:
        """Act and return everything the trainer records (no gradients)."""
        if deterministic and self._explores():
            deterministic = False
        with torch.no_grad():
            obs_t = self._tensor(obs)
            self._observe_start(obs_t)
            features = self.belief_features()
            belief = self.networks.conditioning(features, self._current_hypothesis(features))
            out: PolicyOutput
            if self._params is None:
                out = self.networks.policy(obs_t, belief)
            else:
                # One set of adapted parameters per sub-environment: one step per task.
                batched = torch.func.vmap(self._model)(
                    self._params, obs_t.unsqueeze(1), belief.unsqueeze(1)
                )
                out = PolicyOutput(*(x.squeeze(1) for x in batched))
            if deterministic:
                raw = out.mean
            else:
                noise = self._noise(out.mean.shape).to(self.device)
                raw = out.mean + out.log_std.exp() * noise
            log_prob = gaussian_log_prob(out.mean, out.log_std, raw)
        if self.maml is not None:
            self._append("obs", obs_t)
            self._append("belief", belief)
            self._append("raw", raw)
            self._append("value", out.value)
        env_action = np.clip(raw.cpu().numpy(), self.action_low, self.action_high)
        return StepOutput(raw, env_action, log_prob, out.value, belief)

    def _new_episode_hypotheses(self) -> None:
        """Posterior sampling draws afresh at each episode's start."""
        self._hypothesis = None
        self._drawn_log_density = None
        self._steps_in_episode = 0
        if self._particles is not None:
            self._particles.index = None

    def _current_hypothesis(self, belief: torch.Tensor) -> torch.Tensor | None:
        """Posterior sampling (``privileged.hypotheses: sample`` or ``component``): the task
        features the policy reads this step, else None.

        A hypothesis is drawn from the head's posterior on the current belief at the episode's
        first step and every ``privileged.resample_every`` steps; with
        ``privileged.redraw_nats`` a row also redraws as soon as the evidence contradicts its
        hypothesis: when the posterior's log-density at the hypothesis has fallen that many
        nats below its value when it was drawn (a right hypothesis grows likelier as the
        posterior sharpens; a wrong one does not). Otherwise it is kept.

        The draws come from the agent's generator (a distributed agent draws the whole
        meta-batch's, like its noise), so a trial is reproducible from its seed; with
        ``redraw_nats`` every step draws, whether or not a row takes the draw."""
        nets = self.networks
        if not nets.samples_hypotheses:
            return None
        head = nets.task_head
        assert head is not None
        priv = self.config.privileged
        every, nats = priv.resample_every, priv.redraw_nats
        t = self._steps_in_episode
        self._steps_in_episode += 1
        scheduled = self._hypothesis is None or (every > 0 and t % every == 0)
        if self._particles is not None:
            within = self.refine_every > 0 and t > 0 and t % self.refine_every == 0
            if self._refine_pending or within:
                self._refine_pending = False
                self._particles.refine(self.refine_steps, priv.refine_top, priv.refine_lr)
            self._hypothesis = self._particles.hypotheses(scheduled, nats)
            if self._fuses_head:
                # Each feature from whichever posterior is surer of it (particles.fuse).
                _, means, log_std = head.mixture(belief)
                return fuse(
                    self._hypothesis,
                    self._particles.variance().clamp_min(1e-6),
                    means[:, 0],
                    (2.0 * log_std[:, 0]).exp(),
                )
            return self._hypothesis
        if not scheduled and nats is None:
            return self._hypothesis
        drawn = self._draw(belief, within=priv.hypotheses == "sample")
        if scheduled or self._hypothesis is None or self._drawn_log_density is None:
            take = torch.ones(drawn.shape[0], dtype=torch.bool, device=drawn.device)
        else:
            now = head.log_density(belief, self._hypothesis)
            assert nats is not None
            take = now < self._drawn_log_density - nats
        old = drawn if self._hypothesis is None else self._hypothesis
        self._hypothesis = torch.where(take.unsqueeze(-1), drawn, old)
        if nats is not None:
            density = head.log_density(belief, self._hypothesis)
            prev = density if self._drawn_log_density is None else self._drawn_log_density
            self._drawn_log_density = torch.where(take, density, prev)
        return self._hypothesis

    def _observe_start(self, obs: torch.Tensor) -> None:
        """The trial's first observation weighs the particles once
        (``privileged.observation_likelihood``), before the first hypothesis is drawn."""
        model = self.networks.observation_model
        if self._particles is None or model is None or self._started or not self.use_context:
            return
        self._started = True
        self._particles.observe_start(
            model, self.networks.normalize(obs), self.config.privileged.likelihood_temperature
        )

    def _draw(self, belief: torch.Tensor, *, within: bool) -> torch.Tensor:
        """A draw from the head's posterior for every row (the whole meta-batch's draws when
        distributed, this agent's rows kept)."""
        head = self.networks.task_head
        assert head is not None
        if self.noise_rows is None:
            return head.sample(belief, self.generator, within=within)
        start, total = self.noise_rows
        whole = belief.new_zeros((total, belief.shape[-1]))
        whole[start : start + belief.shape[0]] = belief
        return head.sample(whole, self.generator, within=within)[start : start + belief.shape[0]]

    def _noise(self, shape: torch.Size) -> torch.Tensor:
        if self.noise_rows is None:
            return torch.randn(shape, generator=self.generator)
        start, total = self.noise_rows
        if start + shape[0] > total:
            raise ValueError(
                f"noise_rows: got {self.noise_rows} for {shape[0]} sub-environments; the rows "
                f"start..start+{shape[0]} must lie in the meta-batch of {total}"
            )
        whole = torch.randn((total, *shape[1:]), generator=self.generator)
        return whole[start : start + shape[0]]

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    # ---------------------------------------------------------------- loading

    def zero_shot(self) -> MetaAgent:
        """The no-adaptation ablation: a new agent over the same networks (shared, not copied),
        with its own trial state and a fresh generator seeded as :meth:`from_checkpoint` seeds
        it, whose policy sees the prior in place of the belief and never runs the MAML inner
        loop, so the meta-parameters act in every episode of a trial."""
        return self._sibling(use_context=False)

    def without_maml(self) -> MetaAgent:
        """The MAML-off ablation of a MAML agent: a new agent over the same networks (shared),
        with its belief as trained, whose policy never runs the inner loop, so the
        meta-parameters act in every episode; what it loses against this agent is what the inner
        step adds. Raises ``ValueError`` for an agent without MAML."""
        if self.networks.maml is None:
            raise ValueError(
                "without_maml: the agent has no MAML inner loop (trained with maml.enabled false)"
            )
        return self._sibling(use_context=self.use_context)

    def without_refinement(self) -> MetaAgent:
        """The refinement-off ablation of a particle agent (``privileged.refine_steps`` > 0): a
        new agent over the same networks (shared), acting on the bank's particles alone; what
        it loses against this agent is what refining them adds. Raises ``ValueError`` for an
        agent that does not refine."""
        return self._refining_sibling("without_refinement", refine=False)

    def with_refine_every(self, every: int) -> MetaAgent:
        """A particle agent (``privileged.refine_steps`` > 0) that also refines every ``every``
        steps within each episode (``privileged.refine_every``; 0: only as each later episode
        begins): a new agent over the same networks (shared), everything else as this one.
        Raises ``ValueError`` for an agent that does not refine or a negative ``every``."""
        return self._refining_sibling("with_refine_every", refine_every=every)

    def _refining_sibling(
        self, caller: str, *, refine: bool = True, refine_every: int | None = None
    ) -> MetaAgent:
        """A sibling of a particle agent that refines, its belief and MAML as this one's, with
        refinement as given; ``caller`` names the method in the ``ValueError`` raised for an
        agent that does not refine."""
        if self.refine_steps < 1:
            raise ValueError(
                f"{caller}: the agent does not refine its particles (privileged.refine_steps 0)"
            )
        return self._sibling(
            use_context=self.use_context,
            adapt=self.maml is not None,
            refine=refine,
            refine_every=refine_every,
        )

    def _sibling(
        self,
        *,
        use_context: bool,
        adapt: bool = False,
        refine: bool = True,
        refine_every: int | None = None,
    ) -> MetaAgent:
        """A new agent over the same networks (without the MAML inner loop unless ``adapt``),
        with its own trial state and a fresh generator seeded as :meth:`from_checkpoint` seeds
        it."""
        return MetaAgent(
            self.networks,
            self.config,
            action_low=self.action_low,
            action_high=self.action_high,
            device=self.device,
            use_context=use_context,
            adapt=adapt,
            refine=refine,
            refine_every=refine_every,
        )

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str = "auto") -> MetaAgent:
        """Load an agent from a checkpoint file, or a run directory (its best, else last)."""
        state = agent_state_from_checkpoint(Path(path))
        dev = resolve_device(device)
        # The acting agent is built without the training-only privileged parts: their weights
        # are dropped, so nothing that reads true task features is even present (a student's
        # head stays: it acts, reading the belief alone).
        networks = AgentNetworks(
            state.obs_dim, state.action_dim, state.config, state.task_dim, acting_only=True
        )
        absent = {name for name in PRIVILEGED_MODULES if getattr(networks, name) is None}
        networks.load_state_dict(
            {k: v for k, v in state.networks.items() if k.split(".", 1)[0] not in absent}
        )
        networks.to(dev).eval()
        return cls(
            networks,
            state.config,
            action_low=state.action_low,
            action_high=state.action_high,
            device=dev,
        )
