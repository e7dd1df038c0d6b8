"""The top-level experiment config of meta-training: one frozen section per part of the agent.

``configs/*.yaml`` load into :class:`ExperimentConfig` with :func:`load_experiment`; every field
is documented and range-checked (``metarl train --help-config`` style listings come from
:func:`meta_rl.config.config_help`).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from meta_rl.config import Config, load_config, param, to_dict

__all__ = [
    "EncoderConfig",
    "EnvConfig",
    "ExperimentConfig",
    "ImitationConfig",
    "LoggingConfig",
    "MAMLConfig",
    "PPOConfig",
    "PolicyConfig",
    "PrivilegedConfig",
    "TaskModelConfig",
    "TrainConfig",
    "config_changes",
    "config_hash",
    "hashed_config",
    "load_experiment",
    "resolve_device",
]


@dataclass(frozen=True)
class EnvConfig(Config):
    """The task family that meta-training samples from."""

    id: str = param(
        "metarl/Reach-v0",
        "Gymnasium id of the env family (any TaskEnv protocol); Gymnasium's module:id form "
        "imports the module first.",
    )
    module: str | None = param(
        None,
        "Python module imported before the env is made: it registers your own family's ids "
        "(e.g. my_pkg.tasks; docs/byo_family.md). Recorded in the run, so evaluation finds it.",
    )
    kwargs: dict[str, Any] = param(
        default_factory=dict,
        doc="Env constructor keyword arguments (tasks are sampled per split and pinned).",
    )
    tasks_per_batch: int = param(
        16,
        "Sub-environments (trials) per meta-batch: one task each, or one task per "
        "maml.rollouts_per_task of them.",
        ge=1,
    )
    episodes_per_trial: int = param(
        3, "K: consecutive episodes on the same task that make one trial.", ge=1, le=100
    )
    episode_steps: int | None = param(
        None,
        "Steps per episode; null takes the env's registered max_episode_steps.",
        ge=1,
    )
    eval_tasks: int = param(
        16,
        "Held-out (test split) trials per evaluation of the task model and adaptation (one task "
        "per maml.rollouts_per_task of them).",
        ge=1,
    )
    num_threads: int | None = param(
        None, "Threads of the batched simulator; null lets it choose.", ge=1
    )
    batched: bool = param(
        True,
        "Use the batched simulator (envs.make_batched) when the id has one; false always uses "
        "Gymnasium's SyncVectorEnv.",
    )


@dataclass(frozen=True)
class EncoderConfig(Config):
    """The recurrent context encoder: a GRU over transitions giving a Gaussian belief over z."""

    use_context: bool = param(
        True,
        "Feed the encoder's belief to the policy; false gives it the prior and never runs the "
        "encoder in rollouts (ablation; with task_model.updates_per_iteration=0 the encoder is "
        "off in training too).",
    )
    latent_dim: int = param(5, "Dimension of the latent task variable z.", ge=1)
    hidden_size: int = param(64, "GRU hidden size.", ge=1)
    embed_size: int = param(32, "Width of the per-input embeddings before the GRU.", ge=1)
    rl_gradients: bool = param(
        False, "Let the PPO loss back-propagate into the encoder (else only the ELBO trains it)."
    )
    rl_bptt_steps: int | None = param(
        None,
        "With rl_gradients: how many steps back the PPO loss back-propagates through the "
        "encoder (truncated BPTT). Each epoch re-encodes the trials once without gradients, "
        "cuts them into stretches of this many steps that start from those hidden states, and "
        "takes its minibatches of stretches. null: whole trials (exact, the slowest). Must "
        "divide the trial length (episodes_per_trial x episode_steps); episode_steps cuts at "
        "the episode ends (docs/performance.md has the speed and the learning curves).",
        ge=1,
    )


@dataclass(frozen=True)
class TaskModelConfig(Config):
    """The learned task model: decoders of reward and state change given z, trained by an ELBO."""

    hidden: tuple[int, ...] = param((64, 64), "Hidden layer widths of both decoders.", ge=1)
    predict_state: bool = param(True, "Also decode the state change (else only the reward).")
    normalize_reward: bool = param(
        True, "Scale rewards to unit variance (running) for the encoder input and the decoder."
    )
    lr: float = param(1e-3, "Adam learning rate of the encoder and decoders (ELBO).", gt=0.0)
    updates_per_iteration: int = param(4, "ELBO gradient steps on each iteration's trials.", ge=0)
    belief_samples: int = param(
        16, "Belief time steps per trial whose sampled z decodes the whole trial.", ge=1
    )
    decode_samples: int = param(
        64, "Transitions of the trial decoded for each sampled belief.", ge=1
    )
    reward_weight: float = param(1.0, "Weight of the reward reconstruction term.", ge=0.0)
    state_weight: float = param(1.0, "Weight of the state reconstruction term.", ge=0.0)
    kl_weight: float = param(0.1, "Weight of the KL term.", ge=0.0)
    kl_to: Literal["previous", "prior"] = param(
        "previous",
        "KL of each belief to the previous belief (VariBAD; the first to the prior) or to the "
        "prior N(0, I).",
    )
    max_grad_norm: float = param(1.0, "Gradient-norm clip of the ELBO step.", gt=0.0)


@dataclass(frozen=True)
class PolicyConfig(Config):
    """Policy and value networks conditioned on the observation and the belief."""

    hidden: tuple[int, ...] = param((128, 128), "Hidden layer widths of actor and critic.", ge=1)
    activation: Literal["tanh", "relu"] = param("tanh", "Hidden activation.")
    init_log_std: float = param(-0.5, "Initial log standard deviation of the actions.")
    normalize_obs: bool = param(True, "Normalise observations with running statistics.")


@dataclass(frozen=True)
class PPOConfig(Config):
    """PPO with a clipped objective and GAE over whole trials."""

    lr: float = param(3e-4, "Adam learning rate of policy and value.", gt=0.0)
    gamma: float = param(0.99, "Discount factor.", gt=0.0, le=1.0)
    gae_lambda: float = param(0.95, "GAE lambda.", ge=0.0, le=1.0)
    clip: float = param(0.2, "Clip range of the probability ratio.", gt=0.0, lt=1.0)
    epochs: int = param(4, "Passes over each iteration's data.", ge=1)
    minibatches: int = param(4, "Minibatches per epoch.", ge=1)
    value_coef: float = param(0.5, "Weight of the value loss.", ge=0.0)
    entropy_coef: float = param(0.0, "Weight of the entropy bonus.", ge=0.0)
    max_grad_norm: float = param(0.5, "Gradient-norm clip.", gt=0.0)
    normalize_advantages: bool = param(True, "Standardise advantages per minibatch.")
    normalize_rewards: bool = param(
        True, "Scale rewards by a running std of the discounted return."
    )


@dataclass(frozen=True)
class TrainConfig(Config):
    """Budget, seed, device and checkpointing of a meta-training run."""

    iterations: int = param(100, "Meta-training iterations (one meta-batch of trials each).", ge=1)
    total_env_steps: int | None = param(
        None, "Stop once this many environment steps were collected (null: no step budget).", ge=1
    )
    max_minutes: float | None = param(
        None,
        "Stop at the end of the first iteration that ends this many wall-clock minutes after "
        "training started in this process (a resumed run gets the budget afresh); the run then "
        "evaluates and checkpoints as at any last iteration. null: no time budget.",
        gt=0,
    )
    seed: int = param(0, "Seed of every generator of the run.", ge=0)
    algorithm: Literal["ppo", "dagger"] = param(
        "ppo",
        "How the policy learns from the collected trials (step 4 of an iteration): ppo, "
        "reinforcement learning on the rewards; dagger, imitation of the expert "
        "(imitation.expert, a policy told the task) at the states the agent itself visited "
        "(DAgger; docs/imitation.md). The ELBO step (and the task-inference loss) runs in both.",
    )
    device: str = param("auto", "Where the learner runs.", choices=("auto", "cpu", "cuda"))
    torch_threads: int | None = param(
        None, "torch.set_num_threads for the learner; null leaves torch's default.", ge=1
    )
    eval_every: int = param(
        10, "Evaluate on held-out tasks (and pick the best checkpoint) every n iterations.", ge=1
    )
    checkpoint_every: int = param(10, "Write a checkpoint every n iterations.", ge=1)
    keep_checkpoints: int = param(3, "Most recent checkpoints kept (besides the best).", ge=1)
    max_consecutive_nonfinite: int = param(
        5, "Stop the run after this many consecutive skipped (non-finite) updates.", ge=1
    )


@dataclass(frozen=True)
class LoggingConfig(Config):
    """Where metrics go: JSONL always, Weights & Biases optionally, a tqdm bar."""

    wandb_mode: Literal["offline", "online", "disabled"] = param(
        "offline", "W&B mode; its files go into the run directory."
    )
    wandb_project: str = param("metarl-arms", "W&B project name.")
    wandb_artifacts: bool = param(True, "Upload checkpoints to W&B as artifacts.")
    progress_bar: bool = param(True, "Show a tqdm progress bar with ETA and success rate.")


@dataclass(frozen=True)
class MAMLConfig(Config):
    """How the policy's parameters are adapted within a trial (Meta-SGD when step sizes learn)."""

    enabled: bool = param(
        False, "Adapt the policy's parameters with gradient steps after episodes of a trial."
    )
    inner_steps: int = param(1, "Gradient steps per adaptation.", ge=1, le=20)
    inner_lr: float = param(
        0.1,
        "Inner step size (the initial value of every per-parameter step size if learned).",
        gt=0.0,
    )
    learn_step_sizes: bool = param(
        True, "Meta-learn one step size per parameter entry (Meta-SGD); false keeps inner_lr fixed."
    )
    first_order: bool = param(
        False, "Drop second-order terms: treat the inner gradient as a constant in the outer loss."
    )
    adapt_layers: Literal["all", "last"] = param(
        "last", "Which policy layers adapt: every layer, or the output layer only."
    )
    adapt_episodes: int | None = param(
        None,
        "Adapt after each of the first k episodes of a trial; null means after every episode.",
        ge=1,
    )
    outer_episodes: Literal["all", "adapted"] = param(
        "all",
        "Episodes whose PPO policy loss the outer loop optimises: 'all' of the trial (its "
        "return, as the context agents do), or only the 'adapted' ones, acted with adapted "
        "parameters (MAML-RL, ProMP): the pre-update policy is then trained only through what "
        "its episodes make the inner step do, free to explore. The value loss covers all.",
    )
    rollouts_per_task: int = param(
        1,
        "Episodes run in parallel on each task, per episode of a trial; the inner step adapts "
        "on all of them at once (the inner batch of MAML-RL). env.tasks_per_batch and "
        "env.eval_tasks count these rollouts, so both must be multiples of it.",
        ge=1,
        le=64,
    )
    inner_estimator: Literal["reinforce", "lvc"] = param(
        "reinforce",
        "Surrogate of the policy-gradient inner loss: 'reinforce' is -log pi * A (MAML-RL); "
        "'lvc' is ProMP's -(pi / stop_gradient(pi)) * A: the same inner step, but its second "
        "derivative also credits the pre-update policy for the data it collected.",
    )
    inner_loss: Literal["policy_gradient", "task_model"] = param(
        "policy_gradient",
        "Inner loss: a policy-gradient surrogate with the value baseline on the episode just "
        "collected, or the negative reward predicted by the learned task model.",
    )


@dataclass(frozen=True)
class ImitationConfig(Config):
    """Imitation of an expert that is told the task (``train.algorithm: dagger``,
    docs/imitation.md): the agent collects its own trials, the expert labels every visited
    state with the action it would take knowing the true task, and the policy (and, with
    ``encoder.rl_gradients``, the context encoder) regresses those labels."""

    expert: str | None = param(
        None,
        "The expert: a run directory or checkpoint file of a policy trained with the task "
        "revealed (env.kwargs.reveal_task=true, encoder.use_context=false, MAML off) on this "
        "env (found as privileged.teacher is). null: privileged.teacher.",
    )
    action_weight: float = param(
        1.0,
        "Weight of the imitation loss: the squared error between the policy's mean action and "
        "the expert's, mean over action dimensions and valid steps.",
        gt=0.0,
    )
    epochs: int = param(2, "Passes over each iteration's trials.", ge=1)
    minibatches: int = param(
        4, "Minibatches per pass (of whole trials when the encoder learns from the loss).", ge=1
    )
    lr: float = param(1e-3, "Adam learning rate of the imitation step.", gt=0.0)


@dataclass(frozen=True)
class PrivilegedConfig(Config):
    """Privileged task information used at training time only (docs/privileged.md).

    The true task features (``Task.features()``: goal, shape geometry, size, mass, friction) of
    the tasks the trainer pins reach only the training losses: never the actor's observation,
    the encoder's input, the rollouts' actions or evaluation. Every switch is off by default.
    ``teacher`` starts a student from a revealed-task policy (RMA's adaptation stage, then RL
    fine-tuning; docs/privileged.md).
    """

    critic: bool = param(
        False,
        "Asymmetric critic: the PPO value network also sees the true task features (a separate "
        "critic on [observation, belief, task features]; the policy's own critic is then unused).",
    )
    task_inference_weight: float = param(
        0.0,
        "Weight of the task-inference loss, added to the ELBO: a head on the belief predicts "
        "the true task features (standardised over the batch; a student's with its teacher's "
        "normaliser) at every step; 0 turns it off.",
        ge=0.0,
    )
    task_inference_hidden: tuple[int, ...] = param(
        (64,), "Hidden layer widths of the task-inference head.", ge=1
    )
    inference_features: tuple[int, ...] | None = param(
        None,
        "Columns of Task.features() the task-inference head predicts and the information gain "
        "measures, e.g. [0, 1, 2]: the pick-place goal alone, the part of the task only "
        "exploration reveals (the object's shape, size, mass and friction show in the "
        "observation and contacts anyway); null: every column. The asymmetric critic sees "
        "every column either way. Not with a teacher (its student predicts them all).",
        ge=0,
    )
    info_gain_weight: float = param(
        0.0,
        "Weight of the information-gain reward, added to the RL reward only (never to the task "
        "model's targets or the logged returns): at each step, the drop of the task-inference "
        "head's error on the belief (before the step minus after it), so that steps which teach "
        "the belief the task pay; per trial it sums to the error at the prior minus the error at "
        "the end. Needs task_inference_weight > 0; 0 turns it off.",
        ge=0.0,
    )
    teacher: str | None = param(
        None,
        "A teacher run directory or checkpoint file (its best checkpoint, else its last): a "
        "policy trained with the task revealed (env.kwargs.reveal_task=true, "
        "encoder.use_context=false, the same env, policy.* and encoder.latent_dim). This run is "
        "then its student: its policy starts as the teacher's and reads, in place of the "
        "revealed task features, those its task-inference head predicts from the belief; the "
        "head learns them by the task-inference loss (needs task_inference_weight > 0). Read "
        "once, when the run starts (a resume does not read it again). null: no teacher.",
    )
    task_head_components: int = param(
        0,
        "The task-inference head's output: 0, a point estimate of the standardised features "
        "learnt by squared error; K >= 1, a posterior over them, a mixture of K diagonal "
        "Gaussians learnt by negative log-likelihood (needed by hypotheses: sample).",
        ge=0,
    )
    hypotheses: Literal["mean", "sample", "component", "particles"] = param(
        "mean",
        "What a student's policy reads in place of the task features: mean, the head's point "
        "prediction; sample, a draw from the head's posterior (posterior sampling: the "
        "student acts as its teacher would on a hypothesis of the task, and what it observes "
        "then refines the posterior); component, a component of the posterior drawn by its "
        "weight, read at its mean (a draw among the posterior's modes without the spread "
        "inside each); particles, a particle drawn by weight from a particle posterior over "
        "the task features, weighed by a learnt reward model (with task_head_components 1 and "
        "task_inference_weight > 0, each feature of the particle is then moved towards the "
        "head's Gaussian by how much surer the head is of it). Draws are made "
        "at each episode's start and every resample_every steps, in evaluation too "
        "(deterministic evaluation removes the action noise, not the hypotheses).",
    )
    particles: int = param(
        1024,
        "With hypotheses: particles, the particles: task features drawn once, when the run "
        "starts, from the family's train split (the prior), saved with the networks.",
        ge=1,
    )
    likelihood_temperature: float = param(
        3.0,
        "With hypotheses: particles, the reward likelihood's width in units of the reward "
        "model's error (1: its root-mean-square error on fresh trials; wider tolerates the "
        "model's correlated errors).",
        ge=1.0,
    )
    reward_noise: Literal["global", "learned"] = param(
        "global",
        "With hypotheses: particles, the width of the reward likelihood: global, one width for "
        "every transition (the reward model's root-mean-square error on fresh trials); learned, "
        "a width per transition that the reward model predicts beside the reward (fitted by "
        "Gaussian likelihood, then calibrated on fresh trials), so that rewards the features "
        "decide exactly weigh more than those they leave open.",
    )
    reward_model_hidden: tuple[int, ...] = param(
        (256, 256), "Hidden layer widths of the reward model (hypotheses: particles).", ge=1
    )
    reward_model_averaging: float = param(
        0.0,
        "With hypotheses: particles, the particle posterior reads a running average of the "
        "reward model's weights instead of the weights just trained: after each iteration's "
        "steps the average moves to this weight on itself and the rest on the trained model "
        "(a plain mean over the first iterations, until that weight is reached), so that the "
        "likelihood does not follow the fit to the last batch alone. Its likelihood scale is "
        "calibrated on the average. 0: the trained model itself.",
        ge=0.0,
        lt=1.0,
    )
    observation_likelihood: bool = param(
        False,
        "With hypotheses: particles, also weigh the particles by the trial's first observation "
        "under a learnt observation model (what the task features decide of it, e.g. how high "
        "an object of a given size rests), so that features the observation shows are read "
        "from it.",
    )
    dynamics_likelihood: bool = param(
        False,
        "With hypotheses: particles, also weigh the particles (and refine them) by every "
        "transition's next observation under a learnt dynamics model of the state's change "
        "given the task features (e.g. how far a heavy object lags behind the gripper), a "
        "diagonal Gaussian as wide as likelihood_temperature times the model's error.",
    )
    reward_model_updates: int = param(
        16, "Reward-model steps per iteration (hypotheses: particles).", ge=1
    )
    reward_model_batch: int = param(
        4096, "Transitions per reward-model step (hypotheses: particles).", ge=1
    )
    reward_model_lr: float = param(
        1e-3, "Adam learning rate of the reward model (hypotheses: particles).", gt=0.0
    )
    resample_every: int = param(
        0,
        "With hypotheses: sample, draw a new hypothesis every n steps of an episode as well "
        "as at its start; 0: once per episode.",
        ge=0,
    )
    redraw_nats: float | None = param(
        None,
        "With hypotheses: sample or component, also redraw a sub-environment's hypothesis as "
        "soon as the evidence contradicts it: when the posterior's log-density at it has "
        "fallen this many nats below its value when it was drawn (with particles: below the "
        "best particle's). null: only on the schedule (each episode's start, "
        "resample_every).",
        gt=0.0,
    )
    refine_steps: int = param(
        0,
        "With hypotheses: particles, gradient steps that refine the best particles on the "
        "trial's evidence when each episode after the first begins: the refine_top particles "
        "of highest weight are moved, by Adam on the features, up the log-likelihood of every "
        "reward of the trial so far under the reward model (plus a unit Gaussian prior on the "
        "standardised features), and join the bank for the rest of the trial, weighed by that "
        "likelihood: a task between or beyond the bank's draws is found instead of its nearest "
        "draw. 0: off.",
        ge=0,
    )
    refine_every: int = param(
        0,
        "With refine_steps > 0, how the trained agent acts (metarl evaluate, MetaAgent."
        "from_checkpoint): it also refines every this many steps within each episode, the "
        "first included, on the trial's evidence so far (each row then draws its hypothesis "
        "afresh, by weight), so a task the bank does not describe is found within the episode "
        "instead of from the next one; about a fifth of an episode (measured: docs/results.md). "
        "Training (its collection and in-loop evaluation) refines only as each later episode "
        "begins, whatever this says: it would cost several times the acting time, and only the "
        "reward model learns from those trials; so the key is not part of the config hash. "
        "0: only as each later episode begins.",
        ge=0,
    )
    refine_top: int = param(
        4, "With refine_steps > 0, how many particles are refined (the most likely ones).", ge=1
    )
    refine_lr: float = param(
        0.05, "With refine_steps > 0, the Adam step size on the standardised features.", gt=0.0
    )
    teacher_freeze_iterations: int = param(
        0,
        "With a teacher: the first n iterations leave the policy (and its observation "
        "normaliser) as the teacher's, and only the context encoder, the task model and the "
        "task-inference head learn (RMA's adaptation stage, on the student's own trials); "
        "afterwards PPO fine-tunes the policy too. 0: PPO from the start; more than "
        "train.iterations: the policy never learns (imitation alone).",
        ge=0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.info_gain_weight > 0.0 and self.task_inference_weight <= 0.0:
            raise ValueError(
                f"privileged.info_gain_weight: got {self.info_gain_weight} with "
                "privileged.task_inference_weight 0; the reward is the drop of the task-inference "
                "head's error, so set privileged.task_inference_weight > 0 (or the weight to 0)"
            )
        if self.inference_features is not None:
            cols = self.inference_features
            if not cols or len(set(cols)) != len(cols):
                raise ValueError(
                    f"privileged.inference_features: got {list(cols)}; allowed: null (every "
                    "column) or distinct column indices of Task.features(), e.g. [0, 1, 2]"
                )
            if self.teacher is not None:
                raise ValueError(
                    f"privileged.inference_features: got {list(cols)} with a teacher; allowed: "
                    "null (a student's head predicts every feature its teacher read)"
                )
        if self.refine_steps > 0 and self.hypotheses != "particles":
            raise ValueError(
                f"privileged.refine_steps: got {self.refine_steps} with privileged.hypotheses "
                f"{self.hypotheses!r}; refinement moves particles, so set hypotheses: particles "
                "(or refine_steps: 0)"
            )
        if self.refine_every > 0 and self.refine_steps < 1:
            raise ValueError(
                f"privileged.refine_every: got {self.refine_every} with privileged.refine_steps "
                f"{self.refine_steps}; it schedules refinement within episodes, so set "
                "refine_steps > 0 (or refine_every: 0)"
            )
        if self.hypotheses == "particles" and self.teacher is None:
            raise ValueError(
                "privileged.hypotheses: got 'particles' with privileged.teacher null; the "
                "particles are the task features a teacher reads, so set privileged.teacher "
                "(or hypotheses: mean)"
            )
        if self.hypotheses in ("sample", "component") and (
            self.teacher is None or self.task_head_components < 1
        ):
            raise ValueError(
                f"privileged.hypotheses: got {self.hypotheses!r} with privileged.teacher "
                f"{self.teacher!r} "
                f"and privileged.task_head_components {self.task_head_components}; a student "
                "samples its teacher's task features from its head's posterior, so set a "
                "teacher and task_head_components >= 1 (or hypotheses: mean)"
            )
        if self.redraw_nats is not None and self.hypotheses == "mean":
            raise ValueError(
                f"privileged.redraw_nats: got {self.redraw_nats} with hypotheses 'mean'; it "
                "redraws sampled hypotheses, so set hypotheses: sample or component (or "
                "redraw_nats: null)"
            )
        if self.resample_every > 0 and self.hypotheses == "mean":
            raise ValueError(
                f"privileged.resample_every: got {self.resample_every} with hypotheses "
                "'mean'; it redraws sampled hypotheses, so set hypotheses: sample or "
                "component (or resample_every: 0)"
            )
        if self.teacher is not None:
            if not self.teacher.strip():
                raise ValueError(
                    "privileged.teacher: got an empty path; allowed: null (no teacher) or a "
                    "teacher run directory or checkpoint file"
                )
            if self.task_inference_weight <= 0.0 and self.hypotheses != "particles":
                raise ValueError(
                    f"privileged.teacher: got {self.teacher!r} with "
                    "privileged.task_inference_weight 0; the student learns the teacher's task "
                    "features through the task-inference loss, so set "
                    "privileged.task_inference_weight > 0 (e.g. 1.0)"
                )
        elif self.teacher_freeze_iterations > 0:
            raise ValueError(
                f"privileged.teacher_freeze_iterations: got {self.teacher_freeze_iterations} "
                "with privileged.teacher null; it freezes a teacher's policy, so set "
                "privileged.teacher to a teacher run (or the iterations to 0)"
            )

    @property
    def enabled(self) -> bool:
        """Whether any training loss reads the true task features."""
        return self.critic or self.task_inference_weight > 0.0 or self.hypotheses == "particles"


@dataclass(frozen=True)
class ExperimentConfig(Config):
    """A complete meta-training experiment."""

    experiment: str = param("default", "Experiment name (prefix of the run directory).")
    runs_dir: str = param("runs", "Root folder of run directories.")
    env: EnvConfig = param(default_factory=EnvConfig, doc="The task family.")
    encoder: EncoderConfig = param(default_factory=EncoderConfig, doc="The context encoder.")
    task_model: TaskModelConfig = param(
        default_factory=TaskModelConfig, doc="The learned task model (ELBO)."
    )
    policy: PolicyConfig = param(default_factory=PolicyConfig, doc="Policy and value networks.")
    ppo: PPOConfig = param(default_factory=PPOConfig, doc="PPO.")
    train: TrainConfig = param(default_factory=TrainConfig, doc="Budget, seed, checkpoints.")
    logging: LoggingConfig = param(default_factory=LoggingConfig, doc="Metrics and W&B.")
    maml: MAMLConfig = param(
        default_factory=MAMLConfig,
        doc="MAML inner loop: gradient adaptation of the policy within a trial (off by default).",
    )
    imitation: ImitationConfig = param(
        default_factory=ImitationConfig,
        doc="Imitation of an expert told the task (train.algorithm: dagger).",
    )
    privileged: PrivilegedConfig = param(
        default_factory=PrivilegedConfig,
        doc="True task features at training time only: asymmetric critic, task inference, a "
        "teacher.",
    )

    @property
    def expert(self) -> str | None:
        """The expert DAgger imitates: ``imitation.expert``, else ``privileged.teacher``."""
        return self.imitation.expert or self.privileged.teacher

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.privileged.critic and self.maml.enabled:
            raise ValueError(
                "privileged.critic: got true with maml.enabled true; the MAML inner loss "
                "baselines on the policy's own critic, so the asymmetric critic is not supported "
                "with MAML yet: set privileged.critic=false (task inference works with MAML)"
            )
        if self.privileged.teacher is not None and (
            self.maml.enabled or not self.encoder.use_context
        ):
            raise ValueError(
                f"privileged.teacher: got {self.privileged.teacher!r} with maml.enabled "
                f"{self.maml.enabled} and encoder.use_context {self.encoder.use_context}; a "
                "student's policy reads the task features its head predicts from the belief, so "
                "it needs encoder.use_context true, and MAML is not supported with a teacher "
                "yet: set maml.enabled=false"
            )
        if self.privileged.teacher is not None and self.env.kwargs.get("reveal_task"):
            raise ValueError(
                f"privileged.teacher: got {self.privileged.teacher!r} with "
                "env.kwargs.reveal_task true; the student acts on the hidden task (its teacher "
                "had it revealed): leave env.kwargs.reveal_task false"
            )
        if self.train.algorithm == "dagger":
            if self.expert is None:
                raise ValueError(
                    "train.algorithm: got 'dagger' with imitation.expert and privileged.teacher "
                    "null; DAgger imitates an expert told the task, so set imitation.expert to "
                    "a run trained with env.kwargs.reveal_task=true encoder.use_context=false"
                )
            if self.maml.enabled:
                raise ValueError(
                    "train.algorithm: got 'dagger' with maml.enabled true; the imitation step "
                    "does not take MAML's outer loss yet: set maml.enabled=false"
                )
            if self.env.kwargs.get("reveal_task"):
                raise ValueError(
                    "train.algorithm: got 'dagger' with env.kwargs.reveal_task true; the agent "
                    "imitates an expert told the task it does not see: leave reveal_task false"
                )
        elif self.imitation.expert is not None:
            raise ValueError(
                f"imitation.expert: got {self.imitation.expert!r} with train.algorithm "
                f"{self.train.algorithm!r}; the expert is read by train.algorithm: dagger only"
            )
        if self.privileged.task_inference_weight > 0 and self.task_model.updates_per_iteration < 1:
            raise ValueError(
                f"privileged.task_inference_weight: got {self.privileged.task_inference_weight} "
                "with task_model.updates_per_iteration 0; the loss is taken in the ELBO steps, "
                "so set task_model.updates_per_iteration >= 1 or the weight to 0"
            )
        bptt = self.encoder.rl_bptt_steps
        if bptt is not None and (
            not (self.encoder.rl_gradients and self.encoder.use_context) or self.maml.enabled
        ):
            raise ValueError(
                f"encoder.rl_bptt_steps: got {bptt} with encoder.rl_gradients "
                f"{self.encoder.rl_gradients}, encoder.use_context {self.encoder.use_context} and "
                f"maml.enabled {self.maml.enabled}; it sets how far PPO's gradient runs back "
                "through the encoder, so it needs encoder.rl_gradients and encoder.use_context "
                "true and maml.enabled false (MAML's outer loss reads whole trials): set those or "
                "leave it null"
            )
        m = self.maml.rollouts_per_task
        if m > 1 and not self.maml.enabled:
            raise ValueError(
                f"maml.rollouts_per_task: got {m} with maml.enabled false; allowed: 1 unless "
                "the MAML inner loop is on (the rollouts of a task are its inner batch)"
            )
        if self.maml.outer_episodes == "adapted" and (
            not self.maml.enabled or self.env.episodes_per_trial < 2
        ):
            raise ValueError(
                "maml.outer_episodes: got 'adapted'; it needs maml.enabled true and "
                f"env.episodes_per_trial >= 2 (got {self.maml.enabled}, "
                f"{self.env.episodes_per_trial}): otherwise no episode is adapted; use 'all'"
            )
        if m > 1 and self.maml.inner_loss != "policy_gradient":
            raise ValueError(
                f"maml.rollouts_per_task: got {m} with maml.inner_loss "
                f"{self.maml.inner_loss!r}; allowed: 1, or more with the policy_gradient inner loss"
            )
        for name in ("tasks_per_batch", "eval_tasks"):
            value = getattr(self.env, name)
            if value % m:
                raise ValueError(
                    f"env.{name}: got {value}; allowed: a multiple of maml.rollouts_per_task "
                    f"({m}), since each task runs that many rollouts"
                )


def load_experiment(
    path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()
) -> ExperimentConfig:
    """Load an :class:`ExperimentConfig` from YAML (defaults when ``path`` is None) + overrides."""
    return load_config(ExperimentConfig, path, list(overrides))


# Sections that may differ between a run and its resumption without changing what is learned.
_HASH_EXCLUDED = ("logging", "runs_dir", "experiment")
_HASH_EXCLUDED_TRAIN = (
    "iterations",
    "total_env_steps",
    "max_minutes",
    "torch_threads",
    "device",
)


def config_hash(cfg: ExperimentConfig) -> str:
    """A short hash of everything in ``cfg`` that determines the learned agent and its data.

    Logging, naming, the budget and the device are left out: a run may be resumed with a longer
    budget, on another device or with other logging.
    """
    data = hashed_config(to_dict(cfg))
    text = yaml.safe_dump(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hashed_config(data: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (:func:`~meta_rl.config.to_dict`) that :func:`config_hash`
    covers: without logging, naming, budget and device."""
    data = copy.deepcopy(data)
    for key in _HASH_EXCLUDED:
        data.pop(key, None)
    for key in _HASH_EXCLUDED_TRAIN:
        data.get("train", {}).pop(key, None)
    if data.get("train", {}).get("algorithm", "absent") == "ppo":
        data["train"].pop("algorithm")  # runs from before train.algorithm keep their hash
    if data.get("imitation", "absent") == to_dict(ImitationConfig()):
        data.pop("imitation")  # the same for the imitation section at its defaults
    if data.get("env", {}).get("module", "absent") is None:
        data["env"].pop("module")  # runs from before env.module keep their hash
    enc = data.get("encoder")
    if isinstance(enc, dict) and enc.get("rl_bptt_steps", "absent") is None:
        enc.pop("rl_bptt_steps")  # runs from before truncated BPTT keep their hash
    priv = data.get("privileged")
    if isinstance(priv, dict):
        defaults = to_dict(PrivilegedConfig())
        for key in (
            "teacher",
            "teacher_freeze_iterations",
            "inference_features",
            "task_head_components",
            "hypotheses",
            "resample_every",
            "redraw_nats",
            "particles",
            "likelihood_temperature",
            "reward_noise",
            "reward_model_hidden",
            "reward_model_averaging",
            "reward_model_updates",
            "reward_model_batch",
            "reward_model_lr",
            "observation_likelihood",
            "dynamics_likelihood",
            "refine_steps",
        ):
            # Left out at their defaults: runs from before these keys keep their hash.
            if priv.get(key, defaults[key]) == defaults[key]:
                priv.pop(key, None)
            defaults.pop(key)
        # How the trained agent acts, never read by training (MetaAgent.refine_every).
        priv.pop("refine_every", None)
        defaults.pop("refine_every", None)
        if priv.get("refine_steps", 0) == 0:
            # Refinement off: its step size and count of particles decide nothing.
            for key in ("refine_top", "refine_lr"):
                priv.pop(key, None)
                defaults.pop(key, None)
        if priv == defaults:
            data.pop("privileged")  # runs from before the privileged section keep their hash
    return data


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, old value, new value)`` for every leaf that differs between two resolved
    configs (a key missing on one side has the value None there)."""
    out: list[tuple[str, Any, Any]] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), f"{prefix}{key}.")
        elif _plain(a) != _plain(b):
            out.append((prefix.rstrip("."), a, b))

    walk(old, new, "")
    return out


def _plain(value: Any) -> Any:
    """Tuples and lists compare equal (YAML and checkpoints store tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def resolve_device(device: str) -> torch.device:
    """``auto`` picks ``cuda`` when available, else the CPU; ``cuda`` without a GPU is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device: 'cuda' requested but no CUDA GPU is available; use 'auto'")
    return torch.device(device)
