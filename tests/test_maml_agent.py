"""MAML inside the agent and the trainer: adaptation per trial, no leakage, the outer loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.agents import toy_agent
from helpers.configs import toy_maml_config
from helpers.toy_family import TOY_ID
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.checkpoint import load_checkpoint
from meta_rl.experiment import load_experiment
from meta_rl.logging import read_metrics
from meta_rl.task_envs.vector import make_task_vector_env
from meta_rl.training.rollout import collect_trials
from meta_rl.training.trainer import Trainer, train

torch.set_num_threads(1)


def _policy_state(agent: MetaAgent) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in agent.networks.policy.state_dict().items()}


def test_end_episode_adapts_and_begin_trial_resets_to_the_meta_parameters(
    tmp_path: Path,
) -> None:
    agent = toy_agent(toy_maml_config(tmp_path))
    before = _policy_state(agent)
    venv = make_task_vector_env(TOY_ID, 3)
    tasks = venv.task_distribution.sample(3, "train", np.random.default_rng(0))
    collect_trials(venv, agent, tasks, episodes=2, episode_steps=6, seed=0)
    adapted = agent.adapted_params()
    meta = dict(agent.networks.policy.named_parameters())
    assert agent.maml is not None
    for name in agent.maml.adapted_names:  # the output layer, one set per task
        assert adapted[name].shape == (3, *meta[name].shape)
        assert not torch.allclose(adapted[name], meta[name].expand_as(adapted[name]))
        assert not torch.allclose(adapted[name][0], adapted[name][1])
    for name in set(meta) - set(agent.maml.adapted_names):
        assert torch.equal(adapted[name][0], meta[name])
    assert sorted(agent.inner_batches) == [0, 1]
    # The module itself is never written.
    for k, v in _policy_state(agent).items():
        assert torch.equal(v, before[k]), k
    agent.begin_trial(3)
    assert agent.inner_batches == {}
    for name, value in agent.adapted_params().items():
        assert torch.equal(value[2], meta[name])


def test_zero_shot_never_adapts_nor_reads_the_context(tmp_path: Path) -> None:
    agent = toy_agent(toy_maml_config(tmp_path))
    frozen = agent.zero_shot()
    assert frozen.networks is agent.networks and not frozen.use_context and frozen.maml is None
    venv = make_task_vector_env(TOY_ID, 3)
    tasks = venv.task_distribution.sample(3, "train", np.random.default_rng(0))
    batch = collect_trials(venv, frozen, tasks, episodes=3, episode_steps=6, seed=0)
    meta = dict(agent.networks.policy.named_parameters())
    for name, p in frozen.adapted_params().items():  # still the meta-parameters
        torch.testing.assert_close(p, meta[name].expand_as(p), rtol=0, atol=0)
    assert frozen.inner_batches == {}
    prior = batch.beliefs[:1].expand_as(batch.beliefs)
    torch.testing.assert_close(batch.beliefs, prior, rtol=0, atol=0)  # the prior at every step


def test_no_adapted_parameters_leak_from_one_trial_to_the_next(tmp_path: Path) -> None:
    cfg = toy_maml_config(tmp_path)
    venv = make_task_vector_env(TOY_ID, 2)
    first = venv.task_distribution.sample(2, "train", np.random.default_rng(1))
    second = venv.task_distribution.sample(2, "train", np.random.default_rng(2))
    used = toy_agent(cfg)
    collect_trials(venv, used, first, episodes=2, episode_steps=6, seed=3)
    fresh = toy_agent(cfg)
    used.generator.manual_seed(9)
    fresh.generator.manual_seed(9)
    after_first = collect_trials(venv, used, second, episodes=2, episode_steps=6, seed=4)
    from_scratch = collect_trials(venv, fresh, second, episodes=2, episode_steps=6, seed=4)
    torch.testing.assert_close(after_first.raw_actions, from_scratch.raw_actions, rtol=0, atol=0)
    # Episode 2 acts with adapted parameters: other actions than a non-adapting agent's.
    plain = toy_agent(cfg.replace(maml=cfg.maml.replace(enabled=False)))
    plain.generator.manual_seed(9)
    fixed = collect_trials(venv, plain, second, episodes=2, episode_steps=6, seed=4)
    torch.testing.assert_close(from_scratch.raw_actions[:6], fixed.raw_actions[:6], rtol=0, atol=0)
    assert not torch.equal(from_scratch.raw_actions[6:], fixed.raw_actions[6:])


def test_adapting_episodes_explore_even_when_deterministic_actions_are_asked(
    tmp_path: Path,
) -> None:
    agent = toy_agent(toy_maml_config(tmp_path, "maml.adapt_episodes=1"))
    venv = make_task_vector_env(TOY_ID, 2)
    tasks = venv.task_distribution.sample(2, "test", np.random.default_rng(0))
    batch = collect_trials(
        venv, agent, tasks, episodes=2, episode_steps=5, seed=0, deterministic=True
    )
    first, second = batch.raw_actions[:5], batch.raw_actions[5:]
    out = agent.networks.policy(batch.obs, batch.beliefs)
    # Episode 1 (adapted on) sampled; episode 2 is the adapted policy's mean action.
    assert (first - out.mean[:5]).abs().min() > 1e-4
    assert not torch.allclose(second, out.mean[5:], atol=1e-7)  # adapted, not the meta-policy
    assert len(agent.inner_batches) == 1


def test_adapt_episodes_limits_adaptation_to_the_first_k_episodes(tmp_path: Path) -> None:
    agent = toy_agent(toy_maml_config(tmp_path, "maml.adapt_episodes=1"))
    venv = make_task_vector_env(TOY_ID, 2)
    tasks = venv.task_distribution.sample(2, "train", np.random.default_rng(0))
    collect_trials(venv, agent, tasks, episodes=3, episode_steps=5, seed=0)
    assert sorted(agent.inner_batches) == [0]


def _step_sizes(trainer: Trainer) -> dict[str, torch.Tensor]:
    maml = trainer.networks.maml
    assert maml is not None
    return {k: torch.as_tensor(v).detach().clone() for k, v in maml.step_sizes().items()}


def test_a_trainer_iteration_changes_the_step_sizes_and_the_policy(tmp_path: Path) -> None:
    trainer = Trainer(toy_maml_config(tmp_path), tmp_path / "run", None)
    sizes = _step_sizes(trainer)
    policy = {k: v.detach().clone() for k, v in trainer.networks.policy.named_parameters()}
    metrics = trainer.iteration()
    trainer.close()
    for k, v in _step_sizes(trainer).items():
        assert not torch.equal(v, sizes[k]), k
    for k, v in trainer.networks.policy.named_parameters():
        assert not torch.equal(v, policy[k]), k
    assert metrics["losses/updates"] == 4.0
    assert metrics["maml/inner_loss_post"] < metrics["maml/inner_loss_pre"]


def _meta_gradients(tmp_path: Path, *overrides: str) -> dict[str, torch.Tensor]:
    trainer = Trainer(toy_maml_config(tmp_path, *overrides), tmp_path / "run", None)
    batch = trainer.collect()
    adv, ret = trainer.advantages(batch)
    trainer.networks.train()
    terms = trainer.maml_loss(batch, adv, ret, torch.arange(batch.rewards.shape[1]))
    trainer.close()
    named = dict(trainer.networks.named_parameters())
    grads = torch.autograd.grad(terms.total, list(named.values()), allow_unused=True)
    return {
        k: torch.zeros_like(p) if g is None else g
        for (k, p), g in zip(named.items(), grads, strict=True)
    }


def test_outer_gradient_flows_through_the_inner_step_and_second_order_differs(
    tmp_path: Path,
) -> None:
    second = _meta_gradients(tmp_path / "so")
    first = _meta_gradients(tmp_path / "fo", "maml.first_order=true")
    step_sizes = [k for k in second if k.startswith("maml.log_step_sizes.")]
    assert step_sizes
    for k in step_sizes:  # step sizes act only through the inner step
        assert second[k].abs().sum() > 0, k
        assert first[k].abs().sum() > 0, k
    # A hidden layer is not adapted (adapt_layers: last): its second-order gradient holds the
    # terms through the inner gradient of the output layer, which first order drops.
    hidden = "policy.actor.0.weight"
    assert second[hidden].abs().sum() > 0
    assert not torch.allclose(second[hidden], first[hidden], rtol=1e-4, atol=1e-8)
    # The critic is not adapted and the value loss is the same in both.
    torch.testing.assert_close(second["policy.critic.0.weight"], first["policy.critic.0.weight"])


def test_the_lvc_estimator_changes_only_the_meta_gradient(tmp_path: Path) -> None:
    """Same collected trials and inner steps (same seeds), another outer gradient."""
    reinforce = _meta_gradients(tmp_path / "r")
    lvc = _meta_gradients(tmp_path / "l", "maml.inner_estimator=lvc")
    out = "policy.actor.4.weight"  # the adapted output layer
    assert not torch.allclose(lvc[out], reinforce[out], rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(lvc["policy.critic.0.weight"], reinforce["policy.critic.0.weight"])


@pytest.mark.parametrize("outer", ["all", "adapted"])
def test_outer_episodes_adapted_leaves_the_pre_update_episode_out_of_the_policy_loss(
    tmp_path: Path, outer: str
) -> None:
    """With 'adapted', episode 1's advantages do not reach the gradient (its actions were the
    meta-parameters'); the meta-parameters and step sizes still learn from the later episodes."""
    trainer = Trainer(
        toy_maml_config(tmp_path, f"maml.outer_episodes={outer}"), tmp_path / "run", None
    )
    batch = trainer.collect()
    adv, ret = trainer.advantages(batch)
    steps = batch.rewards.shape[0] // 3
    shifted = adv.clone()
    shifted[:steps] = torch.randn(steps, adv.shape[1], generator=torch.Generator().manual_seed(0))
    trainer.networks.train()
    named = dict(trainer.networks.named_parameters())
    grads = []
    for a in (adv, shifted):
        terms = trainer.maml_loss(batch, a, ret, torch.arange(batch.rewards.shape[1]))
        grads.append(
            dict(
                zip(
                    named,
                    torch.autograd.grad(terms.total, list(named.values()), allow_unused=True),
                    strict=True,
                )
            )
        )
    trainer.close()
    actor = "policy.actor.0.weight"
    same = torch.allclose(grads[0][actor], grads[1][actor])
    assert same == (outer == "adapted")
    sizes = [k for k in named if k.startswith("maml.log_step_sizes.")]
    assert all(grads[0][k] is not None and grads[0][k].abs().sum() > 0 for k in sizes)


def test_outer_episodes_adapted_needs_an_adapted_episode() -> None:
    with pytest.raises(ValueError, match=r"maml.outer_episodes: got 'adapted'; it needs"):
        load_experiment(None, ["maml.outer_episodes=adapted", "env.episodes_per_trial=3"])
    with pytest.raises(ValueError, match=r"env.episodes_per_trial >= 2 \(got True, 1\)"):
        load_experiment(
            None,
            ["maml.enabled=true", "maml.outer_episodes=adapted", "env.episodes_per_trial=1"],
        )


def test_without_the_inner_loop_step_sizes_get_no_gradient(tmp_path: Path) -> None:
    grads = _meta_gradients(tmp_path, "maml.adapt_episodes=1", "env.episodes_per_trial=1")
    for k, g in grads.items():
        if k.startswith("maml.log_step_sizes."):
            assert torch.count_nonzero(g) == 0, k


@pytest.mark.parametrize("extra", [(), ("maml.adapt_layers=all", "maml.first_order=true")])
def test_checkpoint_resume_round_trip_includes_the_step_sizes(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    full = train(toy_maml_config(tmp_path / "a", "train.iterations=3", *extra))
    killed = train(toy_maml_config(tmp_path / "b", "train.iterations=2", *extra))
    resumed = train(toy_maml_config(tmp_path / "b", "train.iterations=3", *extra), resume=killed)
    a = load_checkpoint(full / "checkpoints/ckpt_00000003.pt")["networks"]
    b = load_checkpoint(resumed / "checkpoints/ckpt_00000003.pt")["networks"]
    keys = [k for k in a if k.startswith("maml.log_step_sizes.")]
    assert keys and "inner_reward_scale" in a
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    initial = float(np.log(0.5))
    assert any(not torch.allclose(a[k], torch.full_like(a[k], initial)) for k in keys)
    assert read_metrics(full)[-1]["train/return"] == read_metrics(resumed)[-1]["train/return"]
    # The loaded agent carries the learned step sizes and adapts during evaluation.
    agent = MetaAgent.from_checkpoint(full / "checkpoints/ckpt_00000003.pt", device="cpu")
    assert agent.maml is not None and agent.maml.log_step_sizes is not None
    for k in keys:
        name = k.removeprefix("maml.log_step_sizes.")
        torch.testing.assert_close(agent.maml.log_step_sizes[name].detach(), a[k])
    venv = make_task_vector_env(TOY_ID, 2)
    tasks = venv.task_distribution.sample(2, "test", np.random.default_rng(5))
    collect_trials(venv, agent, tasks, episodes=2, episode_steps=8, seed=0, deterministic=True)
    assert sorted(agent.inner_batches) == [0, 1]


def test_task_model_inner_loss_trains(tmp_path: Path) -> None:
    run_dir = train(toy_maml_config(tmp_path, "maml.inner_loss=task_model", "train.iterations=1"))
    last = read_metrics(run_dir)[-1]
    assert np.isfinite(last["maml/inner_loss_pre"]) and np.isfinite(last["losses/policy_loss"])
    assert last["maml/inner_loss_post"] < last["maml/inner_loss_pre"]


def test_bench_meta_update_times_the_three_updates_on_the_same_data(tmp_path: Path) -> None:
    from meta_rl.training.benchmark import bench_meta_update

    cost = bench_meta_update(toy_maml_config(tmp_path), tmp_path / "bench", repeats=2)
    for key in ("plain_s", "maml_s", "maml_first_order_s"):
        assert cost[key] > 0.0
    assert cost["ratio_maml_to_plain"] == pytest.approx(cost["maml_s"] / cost["plain_s"])
    assert cost["samples"] == 4 * 3 * 8
    with pytest.raises(ValueError, match=r"maml\.enabled"):
        bench_meta_update(toy_maml_config(tmp_path, "maml.enabled=false"), tmp_path / "b2")


def test_bench_train_cli_refuses_meta_update_cost_without_ablations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from meta_rl.cli import main

    assert main(["bench-train", "--meta-update-cost"]) == 2
    assert (
        "metarl bench-train: error: --meta-update-cost needs --ablations" in capsys.readouterr().err
    )
    assert main(["bench-train", "--eval-config", "configs/eval/ablations.yaml"]) == 2
    assert "--eval-config needs --ablations" in capsys.readouterr().err
    assert main(["bench-train", "--jobs", "2"]) == 2
    assert "--jobs needs --ablations" in capsys.readouterr().err
    # An unknown ablation is refused before any training.
    assert main(["bench-train", "env.tasks_per_batch=2", "--ablations", "full", "nope"]) == 2
    assert "ablations: got 'nope'; allowed: full" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_maml_training_runs_on_the_gpu(tmp_path: Path) -> None:
    run_dir = train(toy_maml_config(tmp_path, "train.device=cuda", "train.iterations=1"))
    last = read_metrics(run_dir)[-1]
    assert np.isfinite(last["losses/policy_loss"])
    assert last["maml/inner_loss_post"] < last["maml/inner_loss_pre"]


def test_evaluation_with_no_maml_runs_the_same_agent_without_its_inner_step(
    tmp_path: Path,
) -> None:
    """``no_maml`` adds the MAML-off ablation: the same networks and belief, episode 1 exactly
    the agent's (both act with the meta-parameters), the later ones without the inner step; a
    checkpoint trained without MAML is refused, naming the field."""
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import evaluate_checkpoint

    agent = toy_agent(toy_maml_config(tmp_path, "maml.inner_loss=task_model"))
    off = agent.without_maml()
    assert off.networks is agent.networks and off.use_context and off.maml is None
    run_dir = train(toy_maml_config(tmp_path, "maml.inner_loss=task_model", "train.iterations=1"))
    cfg = EvalConfig(
        num_tasks=4, num_seeds=1, num_episodes=3, no_maml=True, num_videos=0, wandb_mode="disabled"
    )
    report = evaluate_checkpoint(run_dir, cfg, out_dir=tmp_path / "eval")
    by_name = {m.name: m for m in report.methods}
    assert set(by_name) == {"meta-agent", "zero-shot", "no-maml"}
    ret = {n: m.results.returns for n, m in by_name.items()}  # (trials, K)
    np.testing.assert_array_equal(ret["meta-agent"][..., 0], ret["no-maml"][..., 0])
    assert not np.array_equal(ret["meta-agent"][..., 1:], ret["no-maml"][..., 1:])
    plain = train(toy_maml_config(tmp_path / "plain", "maml.enabled=false", "train.iterations=1"))
    with pytest.raises(ValueError, match="no_maml"):
        evaluate_checkpoint(plain, cfg, out_dir=tmp_path / "eval2")
