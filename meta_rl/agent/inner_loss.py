"""The MAML inner loss of an agent's networks, as ``maml.inner_loss`` names it
(:func:`make_inner_loss`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.maml import (
    LossFn,
    functional_model,
    policy_gradient_inner_loss,
    task_model_inner_loss,
)
from meta_rl.experiment import ExperimentConfig

__all__ = ["make_inner_loss"]


def make_inner_loss(
    networks: AgentNetworks,
    cfg: ExperimentConfig,
    *,
    action_low: np.ndarray,
    action_high: np.ndarray,
) -> LossFn:
    """The inner loss of ``cfg.maml.inner_loss`` for one task (``vmap``-compatible).

    ``policy_gradient``: :func:`~meta_rl.agent.maml.policy_gradient_inner_loss` on batches
    ``PolicyGradientBatch(obs=(obs, belief), ...)``. ``task_model``: minus the reward that the
    task decoder (its parameters detached: the policy's meta-loss does not train the model)
    predicts for the policy's mean action, clipped to the action space, on batches
    ``TaskModelBatch(obs=(obs, belief, normalised obs, normalised next obs), context=z, mask)``
    where ``z`` is the belief mean at the end of the episode.
    """
    policy = networks.policy
    model = functional_model(policy)

    def dist_fn(params: dict[str, torch.Tensor], x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(params, x[0], x[1])
        return out.mean, out.log_std

    if cfg.maml.inner_loss == "policy_gradient":
        return policy_gradient_inner_loss(dist_fn, estimator=cfg.maml.inner_estimator)

    reward_net = networks.decoder.reward_net
    low = torch.as_tensor(action_low, dtype=torch.float32)
    high = torch.as_tensor(action_high, dtype=torch.float32)

    def action_fn(params: dict[str, torch.Tensor], x: Any) -> torch.Tensor:
        mean: torch.Tensor = model(params, x[0], x[1]).mean
        return mean

    def reward_fn(x: Any, actions: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        frozen = {k: v.detach() for k, v in reward_net.named_parameters()}
        a = torch.maximum(torch.minimum(actions, high.to(actions)), low.to(actions))
        zz = z.unsqueeze(0).expand(actions.shape[0], z.shape[-1])
        inp = torch.cat([zz, x[2], a, x[3]], dim=-1)
        reward: torch.Tensor = torch.func.functional_call(reward_net, frozen, (inp,))
        return reward.squeeze(-1)

    return task_model_inner_loss(action_fn, reward_fn)
