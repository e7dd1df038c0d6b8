"""The MAML / Meta-SGD inner loop: maths against finite differences and hand computations."""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import Tensor, nn

import meta_rl.agent.maml as maml_module
from meta_rl.agent.maml import (
    MetaSGD,
    PolicyGradientBatch,
    TaskModelBatch,
    batched_loss,
    functional_model,
    policy_gradient_inner_loss,
    select_adapted_names,
    task_model_inner_loss,
)
from meta_rl.agent.networks import gaussian_log_prob
from meta_rl.experiment import MAMLConfig

if TYPE_CHECKING:
    from conftest import Margins

torch.set_num_threads(1)

Batch = tuple[Tensor, Tensor]


def tiny_net(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).to(dtype)


def mse_fn(net: nn.Module) -> Callable[[dict[str, Tensor], Batch], Tensor]:
    model = functional_model(net)

    def mse(params: dict[str, Tensor], batch: Batch) -> Tensor:
        x, y = batch
        return ((model(params, x) - y) ** 2).mean()

    return mse


def regression_data(
    num_tasks: int, n: int, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[Batch, Batch]:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(num_tasks, 2, 1, generator=gen, dtype=dtype)
    xs = torch.randn(num_tasks, n, 2, generator=gen, dtype=dtype)
    xq = torch.randn(num_tasks, n, 2, generator=gen, dtype=dtype)
    return (xs, torch.sin(xs @ w)), (xq, torch.sin(xq @ w))


def cfg(**changes: Any) -> MAMLConfig:
    base = MAMLConfig(enabled=True, adapt_layers="all", inner_lr=0.3, inner_steps=2)
    return base.replace(**changes)


def outer_loss(meta: MetaSGD, support: Batch, query: Batch) -> Tensor:
    mse = mse_fn(meta.module)
    params = meta.adapt(meta.init_params(support[0].shape[0]), mse, support)
    return batched_loss(mse, params, query).mean()


def meta_grads(meta: MetaSGD, support: Batch, query: Batch) -> list[Tensor]:
    tensors = [*meta.module.parameters(), *meta.parameters()]
    return list(torch.autograd.grad(outer_loss(meta, support, query), tensors))


def loop_outer_loss(meta: MetaSGD, support: Batch, query: Batch, first_order: bool) -> Tensor:
    """The same meta-objective, one task at a time with plain autograd (the reference)."""
    mse = mse_fn(meta.module)
    names = meta.adapted_names
    losses = []
    for i in range(support[0].shape[0]):
        params: dict[str, Tensor] = dict(meta.module.named_parameters())
        for _ in range(meta.cfg.inner_steps):
            loss = mse(params, (support[0][i], support[1][i]))
            grads = torch.autograd.grad(
                loss, [params[n] for n in names], create_graph=not first_order
            )
            for n, g in zip(names, grads, strict=True):
                params[n] = params[n] - meta.step_size(n) * g
        losses.append(mse(params, (query[0][i], query[1][i])))
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------------------------
# Construction


def test_select_adapted_names_all_and_last() -> None:
    net = tiny_net()
    assert select_adapted_names(net, "all") == ("0.weight", "0.bias", "2.weight", "2.bias")
    assert select_adapted_names(net, "last") == ("2.weight", "2.bias")

    class Policy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
            self.critic = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
            self.log_std = nn.Parameter(torch.zeros(1))

    policy = Policy()
    assert select_adapted_names(policy, "last", scope="actor") == ("actor.2.weight", "actor.2.bias")
    assert select_adapted_names(policy, "all", scope="actor") == (
        "actor.0.weight",
        "actor.0.bias",
        "actor.2.weight",
        "actor.2.bias",
    )
    policy.actor[2].bias.requires_grad_(False)
    assert select_adapted_names(policy, "last", scope="actor") == ("actor.2.weight",)
    with pytest.raises(ValueError, match=r"scope: 'decoder' is not a submodule.*'actor'"):
        select_adapted_names(policy, "last", scope="decoder")
    with pytest.raises(ValueError, match=r"scope: 'actor.1' holds no trainable parameter"):
        select_adapted_names(policy, "all", scope="actor.1")
    with pytest.raises(ValueError, match=r"adapt_layers: got 'first'; allowed: 'all', 'last'"):
        select_adapted_names(policy, "first")


def test_meta_sgd_names_override_and_errors() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(), names=["0.bias", "0.bias", "2.weight"])
    assert meta.adapted_names == ("0.bias", "2.weight")
    with pytest.raises(ValueError, match=r"names: '3.weight' is not a parameter.*allowed: 0\.w"):
        MetaSGD(net, cfg(), names=["3.weight"])
    with pytest.raises(ValueError, match=r"names: got an empty sequence"):
        MetaSGD(net, cfg(), names=[])
    with pytest.raises(ValueError, match=r"name: '0.weight' is not adapted"):
        meta.step_size("0.weight")


def test_learned_step_sizes_are_parameters_shaped_like_the_adapted_ones() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(adapt_layers="last", inner_lr=0.05))
    assert meta.log_step_sizes is not None
    assert sorted(dict(meta.named_parameters())) == [
        "log_step_sizes.2-bias",
        "log_step_sizes.2-weight",
    ]
    # The policy is referenced, not registered: an agent owning both saves each tensor once.
    assert list(meta.state_dict()) == ["log_step_sizes.2-weight", "log_step_sizes.2-bias"]
    for name, p in net.named_parameters():
        if name in meta.adapted_names:
            alpha = meta.step_size(name)
            assert isinstance(alpha, Tensor)
            assert alpha.shape == p.shape and alpha.dtype == p.dtype
            torch.testing.assert_close(alpha, torch.full_like(p, 0.05))


def test_fixed_step_sizes_do_not_exist_as_parameters() -> None:
    meta = MetaSGD(tiny_net(), cfg(learn_step_sizes=False, inner_lr=0.07))
    assert list(meta.parameters()) == []
    assert meta.log_step_sizes is None
    assert meta.step_sizes() == dict.fromkeys(meta.adapted_names, 0.07)


def test_init_params_expands_without_copy() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg())
    params = meta.init_params(5)
    assert list(params) == [n for n, _ in net.named_parameters()]
    for name, p in net.named_parameters():
        assert params[name].shape == (5, *p.shape)
        assert params[name].data_ptr() == p.data_ptr()
        assert params[name].stride(0) == 0
    sum(t.sum() for t in params.values()).backward()  # type: ignore[union-attr]
    for p in net.parameters():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, torch.full_like(p, 5.0))
    with pytest.raises(ValueError, match=r"num_tasks: got 0; must be >= 1"):
        meta.init_params(0)


def test_adapts_after_follows_the_config() -> None:
    net = tiny_net()
    assert [MetaSGD(net, cfg()).adapts_after(k) for k in range(3)] == [True, True, True]
    assert [MetaSGD(net, cfg(adapt_episodes=2)).adapts_after(k) for k in range(3)] == [
        True,
        True,
        False,
    ]
    assert not MetaSGD(net, cfg(enabled=False)).adapts_after(0)
    with pytest.raises(ValueError, match=r"episode: got -1; must be >= 0"):
        MetaSGD(net, cfg()).adapts_after(-1)


def test_adapt_rejects_badly_shaped_inputs() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg())
    mse = mse_fn(net)
    support, _ = regression_data(3, 4, seed=0)
    params = meta.init_params(3)
    with pytest.raises(ValueError, match=r"params: missing the adapted parameter '0.weight'"):
        meta.adapt({k: v for k, v in params.items() if k != "0.weight"}, mse, support)
    with pytest.raises(ValueError, match=r"params\['0.bias'\]: got shape \(3,\); expected"):
        meta.adapt({**params, "0.bias": params["0.bias"][:, 0]}, mse, support)
    with pytest.raises(ValueError, match=r"params\['2.bias'\]: 2 tasks, but other parameters"):
        meta.adapt({**params, "2.bias": params["2.bias"][:2]}, mse, support)
    with pytest.raises(ValueError, match=r"params: 'head.weight' is not a parameter"):
        meta.adapt({**params, "head.weight": params["2.weight"]}, mse, support)
    with pytest.raises(ValueError, match=r"batch\[1\]: got shape \(2, 4, 1\); every batch tensor"):
        meta.adapt(params, mse, (support[0], support[1][:2]))
    with pytest.raises(ValueError, match=r"batch\[0\]: got str"):
        meta.adapt(params, mse, ("x", support[1]))
    with pytest.raises(ValueError, match=r"steps: got -1; must be >= 0"):
        meta.adapt(params, mse, support, steps=-1)


# --------------------------------------------------------------------------------------------
# The maths of the inner step and the meta-gradient


def test_inner_step_lowers_the_inner_loss() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(inner_lr=0.05, inner_steps=1))
    mse = mse_fn(net)
    support, _ = regression_data(6, 8, seed=1)
    params = meta.init_params(6)
    before = batched_loss(mse, params, support)
    after = batched_loss(mse, meta.adapt(params, mse, support), support)
    assert torch.all(after < before)
    assert torch.all(batched_loss(mse, meta.adapt(params, mse, support, steps=5), support) < after)
    # Zero steps is the identity.
    zero = meta.adapt(params, mse, support, steps=0)
    assert all(zero[n] is params[n] for n in params)


def test_one_step_is_theta_minus_alpha_times_the_gradient() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(inner_steps=1))
    assert meta.log_step_sizes is not None
    with torch.no_grad():
        for p in meta.log_step_sizes.values():
            p.uniform_(-3.0, 0.0)  # distinct step sizes per entry
    mse = mse_fn(net)
    support, _ = regression_data(2, 5, seed=2)
    adapted = meta.adapt(meta.init_params(2), mse, support)
    for i in range(2):
        params: dict[str, Tensor] = dict(net.named_parameters())
        task = (support[0][i], support[1][i])
        grads = torch.autograd.grad(mse(params, task), list(params.values()))
        for (n, p), g in zip(params.items(), grads, strict=True):
            torch.testing.assert_close(adapted[n][i], p - meta.step_size(n) * g)


def test_meta_gradient_matches_finite_differences() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(inner_steps=2, inner_lr=0.3))
    support, query = regression_data(3, 6, seed=3)
    analytic = meta_grads(meta, support, query)
    tensors = [*net.parameters(), *meta.parameters()]
    eps = 1e-6
    for tensor, grad in zip(tensors, analytic, strict=True):
        numeric = torch.zeros_like(tensor)
        flat = tensor.data.view(-1)
        for j in range(flat.numel()):
            original = flat[j].item()
            with torch.no_grad():
                flat[j] = original + eps
                plus = outer_loss(meta, support, query).item()
                flat[j] = original - eps
                minus = outer_loss(meta, support, query).item()
                flat[j] = original
            numeric.view(-1)[j] = (plus - minus) / (2 * eps)
        torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-8)


def test_first_order_equals_the_gradient_with_the_inner_gradient_detached() -> None:
    net = tiny_net()
    support, query = regression_data(3, 6, seed=4)
    first = MetaSGD(net, cfg(first_order=True))
    second = MetaSGD(net, cfg(first_order=False))
    tensors_first = [*net.parameters(), *first.parameters()]
    reference = torch.autograd.grad(
        loop_outer_loss(first, support, query, first_order=True), tensors_first
    )
    got = meta_grads(first, support, query)
    for g, r in zip(got, reference, strict=True):
        torch.testing.assert_close(g, r)
    # On a non-linear net the second-order terms matter: the two meta-gradients differ.
    full = meta_grads(second, support, query)
    differences = [float((f - s).abs().max()) for f, s in zip(full, got, strict=True)]
    assert max(differences) > 1e-3
    # Both still reach every meta-parameter and every step size.
    assert all(float(g.abs().sum()) > 0 for g in got)


def test_vmap_across_tasks_equals_a_loop_over_tasks() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(inner_steps=3, inner_lr=0.2))
    support, query = regression_data(4, 5, seed=5)
    tensors = [*net.parameters(), *meta.parameters()]
    loop_loss = loop_outer_loss(meta, support, query, first_order=False)
    loop_grads = torch.autograd.grad(loop_loss, tensors)
    vmap_loss = outer_loss(meta, support, query)
    vmap_grads = torch.autograd.grad(vmap_loss, tensors)
    torch.testing.assert_close(vmap_loss, loop_loss)
    for v, g in zip(vmap_grads, loop_grads, strict=True):
        torch.testing.assert_close(v, g)
    # Per-task adapted values too, with a task whose data is unrelated to the others.
    mse = mse_fn(net)
    adapted = meta.adapt(meta.init_params(4), mse, support)
    for i in range(4):
        one = meta.adapt(meta.init_params(1), mse, (support[0][i : i + 1], support[1][i : i + 1]))
        for n in adapted:
            torch.testing.assert_close(adapted[n][i], one[n][0])


def test_adapt_under_no_grad_keeps_no_graph() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg())
    mse = mse_fn(net)
    support, _ = regression_data(3, 5, seed=6)
    with_graph = meta.adapt(meta.init_params(3), mse, support)
    with torch.no_grad():
        without = meta.adapt(meta.init_params(3), mse, support)
    for n in with_graph:
        assert not without[n].requires_grad
        torch.testing.assert_close(without[n], with_graph[n].detach())


# --------------------------------------------------------------------------------------------
# No leakage, flat memory


def test_last_layer_adaptation_leaves_other_layers_and_the_module_untouched() -> None:
    net = tiny_net()
    snapshot = {n: p.detach().clone() for n, p in net.named_parameters()}
    meta = MetaSGD(net, cfg(adapt_layers="last"))
    mse = mse_fn(net)
    support, query = regression_data(3, 5, seed=7)
    params = meta.init_params(3)
    adapted = meta.adapt(params, mse, support)
    assert adapted["0.weight"] is params["0.weight"] and adapted["0.bias"] is params["0.bias"]
    assert not torch.equal(adapted["2.weight"], params["2.weight"])
    # A second adaptation in the same trial continues from the adapted parameters.
    again = meta.adapt(adapted, mse, query)
    assert not torch.equal(again["2.weight"], adapted["2.weight"])
    assert again["0.weight"] is params["0.weight"]
    for n, p in net.named_parameters():
        assert torch.equal(p, snapshot[n])
    # The next trial starts from the meta-parameters, whatever happened before.
    fresh = meta.init_params(3)
    for n, value in snapshot.items():
        assert torch.equal(fresh[n], value.expand(3, *value.shape))


def test_memory_stays_flat_over_many_adaptations() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg(inner_steps=2))
    opt = torch.optim.SGD([*net.parameters(), *meta.parameters()], lr=1e-3)
    mse = mse_fn(net)
    support, query = regression_data(4, 5, seed=8)

    def live_tensors() -> int:
        gc.collect()
        return sum(issubclass(type(o), Tensor) for o in gc.get_objects())

    counts = []
    refs: list[weakref.ref[Tensor]] = []
    for cycle in range(200):
        adapted = meta.adapt(meta.init_params(4), mse, support)
        refs.append(weakref.ref(adapted["0.weight"]))
        loss = batched_loss(mse, adapted, query).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        del adapted, loss
        if cycle in (20, 199):
            counts.append(live_tensors())
    assert counts[0] == counts[1]
    # No adapted tensor (hence no graph that holds it) outlives its cycle.
    assert all(r() is None for r in refs)


# --------------------------------------------------------------------------------------------
# Step sizes learn


def test_learned_step_sizes_receive_gradients_and_change() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg())
    assert meta.log_step_sizes is not None
    before = {k: v.detach().clone() for k, v in meta.log_step_sizes.items()}
    opt = torch.optim.Adam(meta.parameters(), lr=1e-2)
    support, query = regression_data(3, 5, seed=9)
    opt.zero_grad()
    outer_loss(meta, support, query).backward()
    for p in meta.parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    opt.step()
    for k, v in meta.log_step_sizes.items():
        assert not torch.equal(v, before[k])


# --------------------------------------------------------------------------------------------
# Inner losses


def test_gaussian_log_prob_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    mean, log_std, actions = torch.randn(3, 7, 2, generator=gen, dtype=torch.float64)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, actions), expected)


def _policy(seed: int = 0) -> tuple[nn.Module, Callable[[dict[str, Tensor], Tensor], Any]]:
    class Policy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mean = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
            self.log_std = nn.Parameter(torch.full((2,), -0.5))

        def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
            return self.mean(obs), self.log_std

    torch.manual_seed(seed)
    policy = Policy().double()
    return policy, functional_model(policy)


def _pg_batch(num_tasks: int, steps: int, seed: int) -> PolicyGradientBatch:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(num_tasks, steps, dtype=torch.float64)
    mask[0, steps - 3 :] = 0.0  # task 0 ended early (physics error): padded steps
    return PolicyGradientBatch(
        obs=torch.randn(num_tasks, steps, 3, generator=gen, dtype=torch.float64),
        actions=torch.randn(num_tasks, steps, 2, generator=gen, dtype=torch.float64),
        advantages=torch.randn(num_tasks, steps, generator=gen, dtype=torch.float64),
        mask=mask,
    )


@pytest.mark.parametrize("normalize", [False, True])
def test_policy_gradient_loss_matches_a_hand_computation(normalize: bool) -> None:
    policy, model = _policy()
    loss_fn = policy_gradient_inner_loss(model, normalize_advantages=normalize)
    batch = _pg_batch(2, 10, seed=1)
    params = MetaSGD(policy, cfg()).init_params(2)
    losses = batched_loss(loss_fn, params, batch)
    for i in range(2):
        valid = batch.mask[i].bool()
        adv = batch.advantages[i][valid]
        if normalize:
            adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
        mean, log_std = policy(batch.obs[i][valid])
        dist = torch.distributions.Normal(mean, log_std.exp())
        expected = -(dist.log_prob(batch.actions[i][valid]).sum(-1) * adv).mean()
        torch.testing.assert_close(losses[i], expected)
    # Padded steps do not count, whatever they hold.
    garbage = batch._replace(advantages=batch.advantages.clone(), actions=batch.actions.clone())
    garbage.advantages[0, -3:] = 1e6
    garbage.actions[0, -3:] = -1e3
    torch.testing.assert_close(batched_loss(loss_fn, params, garbage), losses)


def test_policy_gradient_loss_takes_tuple_inputs_for_two_input_policies() -> None:
    """A policy called as ``policy(obs, belief)`` (like ActorCritic) adapts only its actor."""

    class ActorCritic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
            self.critic = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
            self.log_std = nn.Parameter(torch.full((2,), -0.5))

        def forward(self, obs: Tensor, belief: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            x = torch.cat([obs, belief], dim=-1)
            return self.actor(x), self.log_std.expand(x.shape[0], 2), self.critic(x)

    torch.manual_seed(7)
    policy = ActorCritic().double()
    model = functional_model(policy)
    meta = MetaSGD(policy, cfg(adapt_layers="last", inner_steps=1), scope="actor")
    assert meta.adapted_names == ("actor.2.weight", "actor.2.bias")
    loss_fn = policy_gradient_inner_loss(lambda p, x: model(p, *x)[:2])
    batch = _pg_batch(3, 12, seed=8)
    belief = torch.randn(3, 12, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    two_inputs = batch._replace(obs=(batch.obs, belief))
    params = meta.init_params(3)
    losses = batched_loss(loss_fn, params, two_inputs)
    mean, log_std, _ = policy(batch.obs[2], belief[2])
    log_prob = gaussian_log_prob(mean, log_std, batch.actions[2])
    adv = batch.advantages[2]
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
    torch.testing.assert_close(losses[2], -(log_prob * adv).mean())
    adapted = meta.adapt(params, loss_fn, two_inputs)
    assert torch.all(batched_loss(loss_fn, adapted, two_inputs) < losses)
    assert all(adapted[n] is params[n] for n in params if not n.startswith("actor.2."))


def test_policy_gradient_step_raises_the_likelihood_of_advantageous_actions() -> None:
    policy, model = _policy(seed=3)
    meta = MetaSGD(policy, cfg(adapt_layers="all", inner_lr=0.01, inner_steps=1))
    loss_fn = policy_gradient_inner_loss(model)
    batch = _pg_batch(3, 32, seed=4)
    params = meta.init_params(3)
    before = batched_loss(loss_fn, params, batch)
    adapted = meta.adapt(params, loss_fn, batch)
    after = batched_loss(loss_fn, adapted, batch)
    assert torch.all(after < before)
    # The gradient of the surrogate is a gradient of the policy only: advantages are constants.
    leaf = batch.advantages.clone().requires_grad_(True)
    batched_loss(loss_fn, adapted, batch._replace(advantages=leaf)).sum().backward()
    assert leaf.grad is None


def test_task_model_loss_raises_the_predicted_reward() -> None:
    torch.manual_seed(5)
    actor = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    model = functional_model(actor)
    meta = MetaSGD(actor, cfg(adapt_layers="last", inner_lr=0.1, inner_steps=3))

    def reward_fn(obs: Tensor, actions: Tensor, goal: Tensor) -> Tensor:
        return -((actions - goal) ** 2).sum(-1)  # a stand-in task model: reach the goal

    loss_fn = task_model_inner_loss(model, reward_fn)
    gen = torch.Generator().manual_seed(6)
    batch = TaskModelBatch(
        obs=torch.randn(4, 16, 3, generator=gen, dtype=torch.float64),
        context=torch.randn(4, 2, generator=gen, dtype=torch.float64),
        mask=torch.ones(4, 16, dtype=torch.float64),
    )
    params = meta.init_params(4)
    before = batched_loss(loss_fn, params, batch)
    after = batched_loss(loss_fn, meta.adapt(params, loss_fn, batch), batch)
    assert torch.all(after < before)
    expected = ((model(params_one(params, 1), batch.obs[1]) - batch.context[1]) ** 2).sum(-1)
    torch.testing.assert_close(before[1], expected.mean())


def params_one(params: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    return {n: t[i] for n, t in params.items()}


# --------------------------------------------------------------------------------------------
# End to end, docs, devices


def test_meta_sgd_learns_to_adapt_on_linear_regression_tasks(
    learning_seed: int, margins: Margins
) -> None:
    """Meta-training on y = slope * x (random slope) makes one inner step worth a lot."""
    torch.manual_seed(learning_seed)
    net = nn.Sequential(nn.Linear(1, 40), nn.Tanh(), nn.Linear(40, 40), nn.Tanh(), nn.Linear(40, 1))
    meta = MetaSGD(net, MAMLConfig(enabled=True, adapt_layers="all", inner_lr=0.01))
    mse = mse_fn(net)
    opt = torch.optim.Adam([*net.parameters(), *meta.parameters()], lr=3e-3)

    def tasks(n: int, gen: torch.Generator) -> tuple[Batch, Batch]:
        slope = torch.rand(n, 1, 1, generator=gen) * 4 - 2
        xs, xq = torch.rand(2, n, 10, 1, generator=gen) * 2 - 1
        return (xs, slope * xs), (xq, slope * xq)

    def evaluate() -> tuple[float, float]:
        support, query = tasks(64, torch.Generator().manual_seed(123))  # held-out tasks
        with torch.no_grad():
            params = meta.init_params(64)
            pre = batched_loss(mse, params, query).mean().item()
            post = batched_loss(mse, meta.adapt(params, mse, support), query).mean().item()
        return pre, post

    _, post_untrained = evaluate()
    gen = torch.Generator().manual_seed(learning_seed)
    for _ in range(150):
        support, query = tasks(16, gen)
        params = meta.adapt(meta.init_params(16), mse, support)
        loss = batched_loss(mse, params, query).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    pre, post = evaluate()
    margins(
        "meta_sgd_regression",
        learning_seed,
        {
            "pre_over_post_adaptation": (pre / post, 2.0),
            "untrained_over_trained": (post_untrained / post, 2.0),
        },
    )


def test_module_docstring_example_runs() -> None:
    doc = maml_module.__doc__
    assert doc is not None
    match = re.search(r"Example.*?::\n\n(.*?)\n\n(?=\S)", doc, re.S)
    assert match is not None
    code = "\n".join(line[4:] for line in match.group(1).splitlines())
    namespace: dict[str, Any] = {}
    exec(compile(code, "<maml example>", "exec"), namespace)
    meta = namespace["meta"]
    assert all(p.grad is not None for p in meta.parameters())
    assert namespace["params"]["0.weight"].shape == (8, 32, 1)


@pytest.mark.gpu
def test_adapt_on_cuda_matches_cpu() -> None:
    net = tiny_net()
    meta = MetaSGD(net, cfg())
    support, query = regression_data(3, 5, seed=10)
    cpu_loss = outer_loss(meta, support, query)
    cpu_grads = meta_grads(meta, support, query)
    net.cuda()
    meta.cuda()
    support_gpu = (support[0].cuda(), support[1].cuda())
    query_gpu = (query[0].cuda(), query[1].cuda())
    gpu_loss = outer_loss(meta, support_gpu, query_gpu)
    assert gpu_loss.device.type == "cuda"
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss)
    for g, c in zip(meta_grads(meta, support_gpu, query_gpu), cpu_grads, strict=True):
        torch.testing.assert_close(g.cpu(), c)


def test_lvc_surrogate_adds_the_score_outer_product_to_the_curvature() -> None:
    """ProMP's LVC: the same loss and inner gradient as REINFORCE at every theta; its Hessian is
    REINFORCE's minus ``mean(A * g g^T)`` with g the score of each step (mask and advantage
    standardisation included)."""
    policy, model = _policy()
    batch = _pg_batch(1, 12, seed=3)
    one = PolicyGradientBatch(*(x[0] for x in batch))
    params = {k: v.detach().clone() for k, v in policy.named_parameters()}
    names = list(params)
    flat = torch.cat([params[n].reshape(-1) for n in names])
    sizes = [params[n].numel() for n in names]

    def unflat(v: Tensor) -> dict[str, Tensor]:
        parts = torch.split(v, sizes)
        return {n: p.reshape(params[n].shape) for n, p in zip(names, parts, strict=True)}

    reinforce = policy_gradient_inner_loss(model)
    lvc = policy_gradient_inner_loss(model, estimator="lvc")
    torch.testing.assert_close(lvc(params, one), reinforce(params, one))
    g_r = torch.func.grad(lambda v: reinforce(unflat(v), one))(flat)
    g_l = torch.func.grad(lambda v: lvc(unflat(v), one))(flat)
    torch.testing.assert_close(g_l, g_r)
    h_r = torch.func.hessian(lambda v: reinforce(unflat(v), one))(flat)
    h_l = torch.func.hessian(lambda v: lvc(unflat(v), one))(flat)

    valid = one.mask.bool()
    adv = one.advantages[valid]
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)

    def log_prob(v: Tensor, t: int) -> Tensor:
        mean, log_std = model(unflat(v), one.obs[t])
        return gaussian_log_prob(mean, log_std, one.actions[t])

    scores = torch.stack(
        [torch.func.grad(log_prob)(flat, t) for t in range(len(one.mask)) if valid[t]]
    )
    outer = (adv[:, None, None] * scores[:, :, None] * scores[:, None, :]).mean(0)
    torch.testing.assert_close(h_l, h_r - outer)
    assert outer.abs().max() > 1e-3  # the term is not negligible here
    with pytest.raises(ValueError, match=r"estimator: got 'dice'; allowed: 'reinforce', 'lvc'"):
        policy_gradient_inner_loss(model, estimator="dice")


def test_lvc_changes_the_meta_gradient_but_not_the_adapted_parameters() -> None:
    policy, model = _policy()
    batch = _pg_batch(3, 10, seed=4)
    query = _pg_batch(3, 10, seed=5)
    meta = MetaSGD(policy, cfg(adapt_layers="all", inner_lr=0.1))
    grads, adapted = [], []
    for estimator in ("reinforce", "lvc"):
        loss_fn = policy_gradient_inner_loss(model, estimator=estimator)
        params = meta.adapt(meta.init_params(3), loss_fn, batch)
        adapted.append({k: v.detach() for k, v in params.items()})
        outer = batched_loss(loss_fn, params, query).sum()
        grads.append(torch.autograd.grad(outer, list(policy.parameters())))
    for k in adapted[0]:
        torch.testing.assert_close(adapted[1][k], adapted[0][k])
    assert any(not torch.allclose(a, b) for a, b in zip(*grads, strict=True))
