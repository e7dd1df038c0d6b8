"""Configuration of the MAML inner loop (gradient-based adaptation of the policy within a trial)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meta_rl.config import Config, param

__all__ = ["MAMLConfig"]


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
