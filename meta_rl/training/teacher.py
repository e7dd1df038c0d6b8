"""A student's start from its teacher (``privileged.teacher``, docs/privileged.md).

The teacher is a run trained with the task revealed (``env.kwargs.reveal_task=true``,
``encoder.use_context=false``): its policy read ``[observation, task features]`` and the prior
belief. The student acts on the hidden env with the same policy, reading in place of the task
features those its task-inference head predicts from its belief
(:meth:`~meta_rl.agent.meta_agent.AgentNetworks.conditioning`). :func:`start_from_teacher`
copies, once, when a fresh student run starts (a resume restores the student's own checkpoint
and never reads the teacher):

- the policy's weights (actor, critic, log-std);
- the teacher's observation normaliser: its observation columns become the student's
  normaliser, its task-feature columns the fixed statistics of the head's targets
  (:meth:`~meta_rl.agent.privileged.TaskInferenceHead.targets`), so the head learns exactly
  what the teacher's actor read there;
- the return scaler, so the copied critic's values keep their scale.

The teacher only ever saw the prior belief, so its first layers' weights on the belief's
columns acted as a constant: they are folded into the biases and set to zero. The student then
computes the teacher's function whatever its belief, and the RL stage can learn to use the
belief (its uncertainty, say) from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from meta_rl.checkpoint import (
    AgentState,
    agent_state_from_payload,
    load_checkpoint,
    locate,
)
from meta_rl.config import to_dict
from meta_rl.experiment import config_changes
from meta_rl.training.distributed import World, broadcast_from_main
from meta_rl.training.state import TrainingState

__all__ = ["TEACHER_MATCHING_KEYS", "start_from_teacher"]

TEACHER_MATCHING_KEYS = (
    "policy.hidden",
    "policy.activation",
    "policy.normalize_obs",
    "encoder.latent_dim",
)
"""Config keys a student must share with its teacher (they shape the policy it takes over);
so must every ``env.kwargs`` key but ``reveal_task`` (the same env, the same rewards)."""


def start_from_teacher(state: TrainingState, world: World) -> dict[str, Any]:
    """Start a student run's networks and return scaler (``state``) from ``privileged.teacher``
    (every rank from rank 0's reading);
    returns where they came from (the checkpoint file, its iteration, env steps and config
    hash). A teacher that is missing or does not fit raises a ``ValueError`` that names
    ``privileged.teacher`` and what is allowed."""
    cfg, nets = state.cfg, state.networks
    where = cfg.privileged.teacher
    assert where is not None and state.task_dim is not None and nets.task_head is not None

    def read() -> tuple[Path, dict[str, Any]]:
        try:
            file = locate(where).file
            return file, load_checkpoint(file)
        except (ValueError, FileNotFoundError) as e:  # CheckpointError, CheckpointNotFound
            raise ValueError(f"privileged.teacher: {e}") from e

    file, payload = broadcast_from_main(world, read)
    teacher = agent_state_from_payload(payload, file)
    _check_fits(teacher, state, file)
    obs_dim, task_dim = nets.obs_dim, state.task_dim
    try:
        with torch.no_grad():
            for name, p in nets.policy.named_parameters():
                p.copy_(teacher.networks[f"policy.{name}"])
            norm, targets = nets.policy.obs_norm, nets.task_head.feature_norm
            assert targets is not None
            for key in ("mean", "var"):
                full = teacher.networks[f"policy.obs_norm.{key}"]
                getattr(norm, key).copy_(full[:obs_dim])
                getattr(targets, key).copy_(full[obs_dim:])
            for module in (norm, targets):
                module.count.copy_(teacher.networks["policy.obs_norm.count"])
            # The prior the teacher always saw, now the belief's place in the policy's input.
            prior = nets.encoder.prior(1, nets.policy.log_std.device).features()[0]
            for mlp in (nets.policy.actor, nets.policy.critic):
                first = mlp[0]
                assert isinstance(first, nn.Linear)
                _fold_constant_inputs(first, obs_dim + task_dim, prior)
        state.scaler.load_state_dict(payload["trainer"]["scaler"])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise ValueError(
            f"privileged.teacher: the checkpoint {str(file)!r} cannot start this student: {e}"
        ) from e
    meta = teacher.meta
    return {
        "file": str(file),
        "iteration": int(meta["iteration"]),
        "env_steps": int(meta["env_steps"]),
        "config_hash": str(meta["config_hash"]),
    }


def _fold_constant_inputs(layer: nn.Linear, start: int, value: torch.Tensor) -> None:
    """Make ``layer`` ignore its inputs ``start:`` while computing, for inputs equal to
    ``value`` there, what it computed before: their weights move into the bias, then become 0."""
    layer.bias.add_(layer.weight[:, start:] @ value.to(layer.weight))
    layer.weight[:, start:] = 0.0


def _check_fits(teacher: AgentState, state: TrainingState, file: Path) -> None:
    """Refuse a teacher that this student cannot take over, saying why and what would fit."""
    cfg, tcfg = state.cfg, teacher.config
    nets = state.networks
    assert state.task_dim is not None
    prefix = f"privileged.teacher: the teacher {str(file)!r}"
    if tcfg.env.id != cfg.env.id:
        raise ValueError(
            f"{prefix} was trained on {tcfg.env.id!r}, this run on {cfg.env.id!r}; allowed: a "
            "teacher of the same env id"
        )
    if tcfg.encoder.use_context or tcfg.maml.enabled:
        raise ValueError(
            f"{prefix} has encoder.use_context {tcfg.encoder.use_context} and maml.enabled "
            f"{tcfg.maml.enabled}; allowed: a revealed-task policy, trained with "
            "env.kwargs.reveal_task=true encoder.use_context=false (and MAML off)"
        )
    want = nets.obs_dim + state.task_dim
    if teacher.obs_dim != want or teacher.action_dim != nets.action_dim:
        raise ValueError(
            f"{prefix} has observations of width {teacher.obs_dim} and actions of "
            f"{teacher.action_dim}; allowed: observations of this run's width plus the task "
            f"features ({nets.obs_dim} + {state.task_dim} = {want}) and actions of "
            f"{nets.action_dim}: train the teacher on this env with env.kwargs.reveal_task=true "
            "(and the other env.kwargs as here), this run with it false"
        )
    changed = {k: (a, b) for k, a, b in config_changes(to_dict(tcfg), to_dict(cfg))}
    env_keys = [k for k in changed if k.startswith("env.kwargs.") and k != "env.kwargs.reveal_task"]
    for key in (*TEACHER_MATCHING_KEYS, *env_keys):
        if key in changed:
            theirs, mine = changed[key]
            raise ValueError(
                f"{prefix} has {key} {theirs!r}, this run {mine!r}; the student takes over the "
                f"teacher's policy, so set {key} as the teacher's"
            )
