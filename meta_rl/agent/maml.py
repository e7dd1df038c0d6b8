"""MAML inner loop with meta-learned per-parameter step sizes (Meta-SGD), written with torch.func.

Within a trial the policy adapts to its task with a few gradient steps on an *inner loss* computed
from the data just collected on that task. :class:`MetaSGD` performs these steps for a whole
meta-batch at once: parameters carry a leading task dimension, the per-task gradient is
``torch.func.vmap(torch.func.grad(loss_fn))`` and the update is
``theta_i' = theta_i - alpha * grad_i`` with ``alpha`` one step size per parameter entry, learned by
the outer optimizer (Meta-SGD, Li et al. 2017) or fixed to ``MAMLConfig.inner_lr``.

The update is differentiable: with ``first_order=False`` the outer loss evaluated at the adapted
parameters back-propagates through the inner gradient (second order, MAML); with
``first_order=True`` the inner gradient is computed without a graph and treated as a constant
(FOMAML), which still lets gradients reach the meta-parameters (through the identity term) and the
step sizes (through ``alpha * grad``).

Adapted parameters are plain tensors in a dict, never written back into the module: each task's
adaptation starts from the meta-parameters given by :meth:`MetaSGD.init_params`, and nothing of one
task (or one trial) leaks into the next. Drop the dict to forget the adaptation.

Inner losses. The default (``MAMLConfig.inner_loss="policy_gradient"``) is the policy-gradient
surrogate with the value baseline, :func:`policy_gradient_inner_loss`:
``-(log pi(a|s; theta) * A).mean()`` over the valid steps of the episode just collected, with the
advantages ``A`` (GAE from the value net's predictions) computed beforehand and treated as
constants. It is the default because it is the loss of MAML-RL and ProMP: an unbiased estimate of
the policy gradient from the task's own data, independent of the task model's accuracy, so it
works from the first iteration when the task model is still untrained. The alternative,
:func:`task_model_inner_loss`, maximises the reward that the learned task model predicts for the
policy's actions: lower variance but biased by model error and myopic (one-step reward, no value),
so it only helps once the task model is accurate.

Example (1-D regression tasks ``y = slope * x``, one Meta-SGD update)::

    import torch
    from torch import nn
    from meta_rl.agent.maml import MetaSGD, functional_model
    from meta_rl.experiment import MAMLConfig

    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    meta = MetaSGD(net, MAMLConfig(enabled=True, adapt_layers="all"))
    model = functional_model(net)

    def mse(params, batch):  # one task: no task dimension here
        x, y = batch
        return ((model(params, x) - y) ** 2).mean()

    slopes = torch.randn(8, 1, 1, generator=gen)  # 8 tasks
    x_support, x_query = torch.randn(2, 8, 10, 1, generator=gen)
    opt = torch.optim.Adam([*net.parameters(), *meta.parameters()], lr=1e-3)
    params = meta.adapt(meta.init_params(8), mse, (x_support, slopes * x_support))
    outer = torch.func.vmap(mse)(params, (x_query, slopes * x_query)).mean()
    opt.zero_grad()
    outer.backward()  # reaches the meta-parameters and the step sizes
    opt.step()

``loss_fn(params_one_task, batch_one_task) -> scalar`` must be ``vmap``-compatible: tensor
operations only, no ``.item()`` and no Python branching on tensor values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from meta_rl.agent.networks import gaussian_log_prob
from meta_rl.experiment import MAMLConfig

__all__ = [
    "LossFn",
    "MetaSGD",
    "PolicyGradientBatch",
    "TaskModelBatch",
    "batched_loss",
    "expand_rollouts",
    "functional_model",
    "map_batch",
    "merge_rollouts",
    "policy_gradient_inner_loss",
    "select_adapted_names",
    "task_model_inner_loss",
]

Params = dict[str, Tensor]
LossFn = Callable[[Params, Any], Tensor]
"""``loss_fn(params_one_task, batch_one_task) -> scalar tensor``."""


def functional_model(module: nn.Module) -> Callable[..., Any]:
    """``model(params, *args)``: ``module(*args)`` run with ``params`` in place of its parameters.

    Parameters missing from ``params`` (and all buffers) are taken from the module itself.
    """

    def model(params: Mapping[str, Tensor], *args: Any) -> Any:
        return torch.func.functional_call(module, dict(params), args)

    return model


def select_adapted_names(
    module: nn.Module, adapt_layers: str, *, scope: str = ""
) -> tuple[str, ...]:
    """Names (as in ``module.named_parameters()``) of the parameters that the inner loop adapts.

    ``scope`` is the path of a submodule (``"actor"``) that bounds the choice; ``""`` is the whole
    module. ``"all"`` takes every trainable parameter under the scope; ``"last"`` takes the
    parameters owned by the last submodule under the scope (in registration order) that owns any
    trainable parameter: the output layer of an ``nn.Sequential`` MLP.
    """
    if adapt_layers not in ("all", "last"):
        raise ValueError(f"adapt_layers: got {adapt_layers!r}; allowed: 'all', 'last'")
    try:
        root = module.get_submodule(scope)
    except AttributeError as e:
        children = ", ".join(repr(n) for n, _ in module.named_modules() if n) or "none"
        raise ValueError(
            f"scope: {scope!r} is not a submodule of {type(module).__name__}; "
            f"allowed: '' (the whole module) or one of {children}"
        ) from e
    prefix = f"{scope}." if scope else ""
    if adapt_layers == "all":
        names = tuple(prefix + n for n, p in root.named_parameters() if p.requires_grad)
    else:
        names = ()
        for sub_name, sub in root.named_modules():
            own = tuple(
                prefix + (f"{sub_name}." if sub_name else "") + n
                for n, p in sub.named_parameters(recurse=False)
                if p.requires_grad
            )
            if own:
                names = own
    if not names:
        raise ValueError(
            f"scope: {scope!r} holds no trainable parameter; choose a submodule with parameters"
        )
    return names


class MetaSGD(nn.Module):
    """Batched, differentiable inner-loop adaptation with per-parameter step sizes.

    Built from the module whose parameters adapt (the policy) and a :class:`MAMLConfig`:

    - ``adapted_names``: the adapted parameters, by default :func:`select_adapted_names` with
      ``cfg.adapt_layers`` under ``scope``; ``names`` overrides the choice.
    - Step sizes: with ``cfg.learn_step_sizes`` one learnable tensor per adapted parameter, shaped
      like it, stored as ``log(alpha)`` in the ``nn.ParameterDict`` ``log_step_sizes`` (keys are the
      parameter names with ``.`` replaced by ``-``) and initialised to ``log(cfg.inner_lr)``: the
      step sizes stay positive and the outer optimizer changes them multiplicatively. Without
      ``learn_step_sizes`` every step size is the constant ``cfg.inner_lr`` and this module has no
      parameter at all.
    - ``cfg.inner_steps`` gradient steps per :meth:`adapt`; ``cfg.first_order`` drops the second
      order terms.

    The module is referenced, not registered: ``MetaSGD.parameters()`` are the step sizes only, so
    an agent that owns both the policy and this object saves and optimises every tensor once.
    Move both to the same device (``agent.to(device)`` does). Adapted parameters are returned as new
    tensors with a leading task dimension; the module's own parameters are never modified.
    """

    log_step_sizes: nn.ParameterDict | None

    def __init__(
        self,
        module: nn.Module,
        cfg: MAMLConfig,
        *,
        scope: str = "",
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        # Kept out of the module tree on purpose (see the class docstring).
        object.__setattr__(self, "_module", module)
        all_params = dict(module.named_parameters())
        if names is None:
            chosen = select_adapted_names(module, cfg.adapt_layers, scope=scope)
        else:
            if not names:
                raise ValueError("names: got an empty sequence; name at least one parameter")
            unknown = [n for n in names if n not in all_params]
            if unknown:
                raise ValueError(
                    f"names: {unknown[0]!r} is not a parameter of {type(module).__name__}; "
                    f"allowed: {', '.join(all_params)}"
                )
            chosen = tuple(dict.fromkeys(names))
        self.adapted_names: tuple[str, ...] = chosen
        if cfg.learn_step_sizes:
            # A list of pairs keeps the parameter order (a plain dict would be sorted by key).
            self.log_step_sizes = nn.ParameterDict(
                [
                    (_key(n), nn.Parameter(torch.full_like(all_params[n], math.log(cfg.inner_lr))))
                    for n in chosen
                ]
            )
        else:
            self.log_step_sizes = None

    @property
    def module(self) -> nn.Module:
        """The module whose parameters are the meta-parameters."""
        module: nn.Module = self.__dict__["_module"]
        return module

    def step_size(self, name: str) -> Tensor | float:
        """The step size of parameter ``name``: a tensor shaped like it, or ``cfg.inner_lr``."""
        if name not in self.adapted_names:
            raise ValueError(
                f"name: {name!r} is not adapted; allowed: {', '.join(self.adapted_names)}"
            )
        if self.log_step_sizes is None:
            return self.cfg.inner_lr
        return self.log_step_sizes[_key(name)].exp()

    def step_sizes(self) -> dict[str, Tensor | float]:
        """Every adapted parameter's step size (for logging and inspection)."""
        return {n: self.step_size(n) for n in self.adapted_names}

    def adapts_after(self, episode: int) -> bool:
        """Whether the agent adapts after episode ``episode`` (0-based) of a trial."""
        if episode < 0:
            raise ValueError(f"episode: got {episode}; must be >= 0")
        if not self.cfg.enabled:
            return False
        return self.cfg.adapt_episodes is None or episode < self.cfg.adapt_episodes

    def init_params(self, num_tasks: int) -> Params:
        """The meta-parameters with a leading task dimension (expanded views: no copy).

        Gradients of anything computed from the result flow back to the module's parameters.
        """
        if num_tasks < 1:
            raise ValueError(f"num_tasks: got {num_tasks}; must be >= 1")
        return {n: p.expand(num_tasks, *p.shape) for n, p in self.module.named_parameters()}

    def adapt(
        self,
        params: Mapping[str, Tensor],
        loss_fn: LossFn,
        batch: Any,
        *,
        steps: int | None = None,
    ) -> Params:
        """``steps`` (default ``cfg.inner_steps``) inner gradient steps on every task at once.

        ``params`` maps names to tensors with a leading task dimension T (from :meth:`init_params`
        or a previous :meth:`adapt`); ``batch`` is a tensor or a (nested) tuple/list/dict of
        tensors, each with the leading dimension T; ``loss_fn(params_one_task, batch_one_task)``
        returns the scalar inner loss of one task. Returns a new dict: adapted names hold new
        tensors, the others are the very tensors given. Under ``torch.no_grad()`` (evaluation) the
        inner gradients are still computed but no graph is kept.
        """
        n_steps = self.cfg.inner_steps if steps is None else steps
        if n_steps < 0:
            raise ValueError(f"steps: got {n_steps}; must be >= 0")
        self._check_inputs(params, batch)
        adapted = {n: params[n] for n in self.adapted_names}
        frozen = {n: t for n, t in params.items() if n not in adapted}

        def task_loss(adapted_one: Params, frozen_one: Params, batch_one: Any) -> Tensor:
            return loss_fn({**frozen_one, **adapted_one}, batch_one)

        task_grads = torch.func.vmap(torch.func.grad(task_loss))
        for _ in range(n_steps):
            if self.cfg.first_order:
                # No graph through the inner gradient: it enters the outer loss as a constant.
                with torch.no_grad():
                    grads = task_grads(adapted, frozen, batch)
            else:
                grads = task_grads(adapted, frozen, batch)
            adapted = {n: t - self.step_size(n) * grads[n] for n, t in adapted.items()}
        return {n: adapted.get(n, t) for n, t in params.items()}

    def _check_inputs(self, params: Mapping[str, Tensor], batch: Any) -> None:
        missing = [n for n in self.adapted_names if n not in params]
        if missing:
            raise ValueError(
                f"params: missing the adapted parameter {missing[0]!r}; "
                "start from MetaSGD.init_params(num_tasks)"
            )
        module_params = dict(self.module.named_parameters())
        num_tasks: int | None = None
        for n, t in params.items():
            ref = module_params.get(n)
            if ref is None:
                raise ValueError(
                    f"params: {n!r} is not a parameter of {type(self.module).__name__}; "
                    f"allowed: {', '.join(module_params)}"
                )
            if t.shape[1:] != ref.shape or t.dim() != ref.dim() + 1:
                raise ValueError(
                    f"params[{n!r}]: got shape {tuple(t.shape)}; expected (num_tasks, "
                    f"{', '.join(str(s) for s in ref.shape)})"
                )
            num_tasks = t.shape[0] if num_tasks is None else num_tasks
            if t.shape[0] != num_tasks:
                raise ValueError(
                    f"params[{n!r}]: {t.shape[0]} tasks, but other parameters have {num_tasks}; "
                    "every tensor needs the same leading task dimension"
                )
        for path, leaf in _leaves(batch, "batch"):
            if leaf.dim() == 0 or leaf.shape[0] != num_tasks:
                raise ValueError(
                    f"{path}: got shape {tuple(leaf.shape)}; every batch tensor needs the leading "
                    f"task dimension {num_tasks}"
                )


def _key(name: str) -> str:
    return name.replace(".", "-")


def _leaves(tree: Any, path: str) -> list[tuple[str, Tensor]]:
    out: list[tuple[str, Tensor]] = []

    def keep(leaf_path: str, leaf: Tensor) -> Tensor:
        out.append((leaf_path, leaf))
        return leaf

    map_batch(tree, keep, path)
    return out


def batched_loss(loss_fn: LossFn, params: Mapping[str, Tensor], batch: Any) -> Tensor:
    """The inner loss of every task, shape (T,): ``vmap(loss_fn)`` over the task dimension."""
    losses: Tensor = torch.func.vmap(loss_fn)(dict(params), batch)
    return losses


def merge_rollouts(batch: Any, rollouts: int) -> Any:
    """Episodes of N = T * ``rollouts`` sub-environments as the inner batches of T tasks.

    Every tensor of ``batch`` is ``(N, S, ...)``; rows ``i * rollouts`` to ``(i + 1) * rollouts
    - 1`` are task i's rollouts. They become one row ``(T, rollouts * S, ...)`` whose steps are
    those rollouts one after the other, so a task's inner loss averages over all its rollouts (and
    standardises their advantages together: which rollout did better survives). ``rollouts=1``
    returns ``batch`` itself.
    """
    if rollouts < 1:
        raise ValueError(f"rollouts: got {rollouts}; must be >= 1")
    if rollouts == 1:
        return batch

    def merge(path: str, t: Tensor) -> Tensor:
        if t.dim() < 2 or t.shape[0] % rollouts:
            raise ValueError(
                f"{path}: got shape {tuple(t.shape)}; merging needs (N, S, ...) with N a "
                f"multiple of rollouts={rollouts}"
            )
        return t.reshape(t.shape[0] // rollouts, rollouts * t.shape[1], *t.shape[2:])

    return map_batch(batch, merge)


def expand_rollouts(params: Mapping[str, Tensor], rollouts: int) -> Params:
    """Per-task parameters ``(T, ...)`` as per-rollout ones ``(T * rollouts, ...)``: each task's
    set repeated for its ``rollouts`` consecutive sub-environments (gradients flow back)."""
    if rollouts < 1:
        raise ValueError(f"rollouts: got {rollouts}; must be >= 1")
    if rollouts == 1:
        return dict(params)
    return {n: t.repeat_interleave(rollouts, dim=0) for n, t in params.items()}


def map_batch(tree: Any, fn: Callable[[str, Tensor], Tensor], path: str = "batch") -> Any:
    """``fn(path, tensor)`` applied to every tensor of a batch (tensors in tuples, NamedTuples,
    lists and dicts), keeping its structure; ``path`` names each tensor in errors."""
    if isinstance(tree, Tensor):
        return fn(path, tree)
    if isinstance(tree, Mapping):
        return {k: map_batch(v, fn, f"{path}[{k!r}]") for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(map_batch(getattr(tree, k), fn, f"{path}.{k}") for k in tree._fields))
    if isinstance(tree, (tuple, list)):
        return type(tree)(map_batch(v, fn, f"{path}[{i}]") for i, v in enumerate(tree))
    raise ValueError(
        f"{path}: got {type(tree).__name__}; a batch holds tensors in tuples, lists and dicts"
    )


# --------------------------------------------------------------------------------------------
# Inner losses


class PolicyGradientBatch(NamedTuple):
    """One episode per task for :func:`policy_gradient_inner_loss`.

    Shapes with a leading task dimension T (drop it inside ``loss_fn``): ``obs`` the policy's
    input, (T, S, obs_dim) or a tuple of such tensors (e.g. ``(obs, belief)``); ``actions``
    (T, S, act_dim) the Gaussian samples (before any tanh squashing, whose correction does not
    depend on the parameters); ``advantages`` (T, S) from the value baseline; ``mask`` (T, S) 1
    for real steps and 0 for padding after an early end.
    """

    obs: Any
    actions: Tensor
    advantages: Tensor
    mask: Tensor


class TaskModelBatch(NamedTuple):
    """Observations per task for :func:`task_model_inner_loss`.

    ``obs`` (T, S, obs_dim) or a tuple of such tensors (the policy's input); ``context`` (T, ...)
    what the reward model conditions on for the task (e.g. the belief from the context encoder);
    ``mask`` (T, S) 1 for real steps.
    """

    obs: Any
    context: Tensor
    mask: Tensor


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def policy_gradient_inner_loss(
    dist_fn: Callable[[Params, Any], tuple[Tensor, Tensor]],
    *,
    normalize_advantages: bool = True,
    estimator: str = "reinforce",
) -> Callable[[Params, PolicyGradientBatch], Tensor]:
    """The MAML-RL inner loss ``-(log pi(a|s; theta) * A).mean()`` over the valid steps.

    ``dist_fn(params, obs) -> (mean, log_std)`` gives the Gaussian policy for one task's
    ``batch.obs`` (``log_std`` broadcasts against ``mean``), typically built on
    :func:`functional_model`; for a module called as ``policy(obs, belief)`` pass
    ``obs=(obs, belief)`` and ``dist_fn = lambda p, x: model(p, *x)[:2]``. Advantages are
    constants (detached); with ``normalize_advantages`` they are standardised per task over the
    valid steps, which makes the step size independent of the reward scale.

    ``estimator="lvc"`` is ProMP's low-variance curvature surrogate (Rothfuss et al., 2019):
    ``-(pi / stop_gradient(pi) * A).mean()``, written as ``-((stop_gradient(log pi) + pi /
    stop_gradient(pi) - 1) * A).mean()`` so that its value and gradient equal those of
    ``"reinforce"`` at every ``theta`` (the ratio is 1), and the inner step is the same; its
    second derivative gains ``-(A * grad log pi grad log pi^T).mean()``, the per-step part of the
    term through which the outer loss credits the pre-update policy for sampling the data it
    adapts on. MAML-RL's surrogate leaves that term out, so its meta-gradient never rewards
    exploration that makes the inner step informative.
    """
    if estimator not in ("reinforce", "lvc"):
        raise ValueError(f"estimator: got {estimator!r}; allowed: 'reinforce', 'lvc'")

    def loss(params: Params, batch: PolicyGradientBatch) -> Tensor:
        mask = batch.mask.to(batch.advantages.dtype)
        adv = batch.advantages.detach()
        if normalize_advantages:
            mean = _masked_mean(adv, mask)
            var = _masked_mean((adv - mean).pow(2), mask)
            adv = (adv - mean) / (var.sqrt() + 1e-8)
        mu, log_std = dist_fn(params, batch.obs)
        log_prob = gaussian_log_prob(mu, log_std, batch.actions)
        if estimator == "lvc":
            # log pi (its value, no gradient) + ratio - 1 (value 0, the gradient of log pi): the
            # value and gradient of REINFORCE's surrogate, the curvature of LVC's.
            fixed = log_prob.detach()
            surrogate = fixed + torch.exp(log_prob - fixed) - 1.0
            return -_masked_mean(surrogate * adv, mask)
        return -_masked_mean(log_prob * adv, mask)

    return loss


def task_model_inner_loss(
    action_fn: Callable[[Params, Any], Tensor],
    reward_fn: Callable[[Any, Tensor, Tensor], Tensor],
) -> Callable[[Params, TaskModelBatch], Tensor]:
    """Minus the reward that the learned task model predicts for the policy's actions.

    ``action_fn(params, obs) -> actions`` is the policy's deterministic action (its mean) for one
    task's observations; ``reward_fn(obs, actions, context) -> rewards`` (shape (S,)) is the task
    model's reward prediction. Gradients reach the policy through the actions; to keep the task
    model out of the outer update, build ``reward_fn`` on detached model parameters.
    """

    def loss(params: Params, batch: TaskModelBatch) -> Tensor:
        actions = action_fn(params, batch.obs)
        rewards = reward_fn(batch.obs, actions, batch.context)
        return -_masked_mean(rewards, batch.mask.to(rewards.dtype))

    return loss
