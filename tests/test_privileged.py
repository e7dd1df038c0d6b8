"""Privileged task information at training time only: the asymmetric critic, the task-inference
loss, and the proof that neither the actor nor evaluation ever sees the true task features."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.tasks import SHAPE_GEOMETRY, Task
from helpers.configs import pick_place_config
from helpers.training import one_iteration
from meta_rl.agent.agent_networks import AgentNetworks
from meta_rl.agent.encoder import ContextEncoder
from meta_rl.agent.meta_agent import MetaAgent
from meta_rl.agent.privileged import TaskInferenceHead
from meta_rl.agent.task_model import TrialTensors
from meta_rl.checkpoint import load_checkpoint
from meta_rl.config import ConfigError, to_dict
from meta_rl.experiment import config_hash, hashed_config, load_experiment
from meta_rl.logging import read_metrics
from meta_rl.training import trainer as trainer_module
from meta_rl.training.privileged import (
    standardize_features,
    task_features,
    task_inference_errors,
    task_inference_loss,
)
from meta_rl.training.trainer import Trainer, train

torch.set_num_threads(1)
TASK_DIM = 3 + 3 + 3  # goal, shape geometry, size, mass, friction


ON = ("privileged.critic=true", "privileged.task_inference_weight=1.0")


def test_defaults_are_off_and_leave_the_config_hash_and_networks_unchanged() -> None:
    cfg = load_experiment(None)
    assert not cfg.privileged.critic and cfg.privileged.task_inference_weight == 0.0
    assert not cfg.privileged.enabled
    assert "privileged" not in hashed_config(to_dict(cfg))
    on = load_experiment(None, ["privileged.critic=true"])
    assert config_hash(on) != config_hash(cfg)
    assert hashed_config(to_dict(on))["privileged"]["critic"] is True
    nets = AgentNetworks(10, 4, cfg, task_dim=TASK_DIM)  # switches off: nothing privileged built
    assert nets.privileged_critic is None and nets.task_head is None
    assert not any(k.startswith(("privileged_critic", "task_head")) for k in nets.state_dict())


def test_asymmetric_critic_input_width_and_head_shapes() -> None:
    cfg = load_experiment(None, list(ON))
    obs_dim, act_dim = 10, 4
    nets = AgentNetworks(obs_dim, act_dim, cfg, task_dim=TASK_DIM)
    assert nets.privileged_critic is not None and nets.task_head is not None
    belief_dim = 2 * cfg.encoder.latent_dim
    assert nets.privileged_critic.in_dim == obs_dim + belief_dim + TASK_DIM
    first = nets.privileged_critic.net[0]
    assert isinstance(first, torch.nn.Linear) and first.in_features == obs_dim + belief_dim + 9
    v = nets.privileged_critic(
        torch.zeros(7, 3, obs_dim), torch.zeros(7, 3, belief_dim), torch.zeros(7, 3, TASK_DIM)
    )
    assert v.shape == (7, 3)
    assert nets.task_head(torch.zeros(5, belief_dim)).shape == (5, TASK_DIM)
    # Without task_dim (how the acting agent is loaded) nothing privileged is built.
    plain = AgentNetworks(obs_dim, act_dim, cfg)
    assert plain.privileged_critic is None and plain.task_head is None
    # The actor and its own critic are initialised exactly as without the switches.
    torch.manual_seed(0)
    a = AgentNetworks(obs_dim, act_dim, cfg, task_dim=TASK_DIM)
    torch.manual_seed(0)
    b = AgentNetworks(obs_dim, act_dim, load_experiment(None))
    for k, v in b.state_dict().items():
        assert torch.equal(a.state_dict()[k], v), k


def test_task_features_of_pick_place_tasks_and_a_clear_error_without_them() -> None:
    task = Task("sphere", 0.02, 0.1, 1.0, (0.0, 0.0), 0.0, (0.05, 0.1, 0.2))
    f = task_features([task, task])
    assert f.shape == (2, TASK_DIM) and f.dtype == torch.float32
    np.testing.assert_allclose(f[0, :3].numpy(), [0.05, 0.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose(f[0, 3:6].numpy(), SHAPE_GEOMETRY["sphere"], rtol=1e-6)
    np.testing.assert_allclose(f[0, 6:].numpy(), [0.02, 0.1, 1.0], rtol=1e-6)
    with pytest.raises(ValueError, match="features\\(\\)"):
        task_features([object()])


def _trials(t_len: int, n: int, obs_dim: int, act_dim: int, seed: int = 0) -> TrialTensors:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(t_len, n, dtype=torch.bool)
    mask[2, 0] = False  # a masked step counts for nothing
    return TrialTensors(
        obs=torch.randn(t_len, n, obs_dim, generator=g),
        action=torch.randn(t_len, n, act_dim, generator=g),
        reward=torch.randn(t_len, n, generator=g),
        next_obs=torch.randn(t_len, n, obs_dim, generator=g),
        done=torch.zeros(t_len, n),
        mask=mask,
    )


def test_task_inference_loss_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    obs_dim, act_dim, latent, t_len, n, f_dim = 3, 2, 2, 5, 3, 4
    enc = ContextEncoder(obs_dim, act_dim, latent_dim=latent, hidden_size=8, embed_size=4)
    head = TaskInferenceHead(2 * latent, f_dim, hidden=(6,))
    trials = _trials(t_len, n, obs_dim, act_dim)
    feats = torch.tensor(
        [[0.1, 1.0, 0.0, 2.0], [0.3, 0.0, 0.0, 0.5], [0.2, 0.0, 0.0, 1.0]], dtype=torch.float32
    )
    loss = task_inference_loss(enc, head, trials, feats)

    # By hand: step the encoder, skip masked steps, standardise each feature over the 3 tasks.
    f = feats.numpy().astype(np.float64)
    std = f.std(0)
    target = (f - f.mean(0)) / (std + 1e-6)
    assert np.allclose(target[:, 2], 0.0)  # a constant feature is no target
    hidden = enc.initial_state(n)
    errors = []
    with torch.no_grad():
        for t in range(t_len):
            hidden, belief = enc.step(
                hidden,
                trials.obs[t],
                trials.action[t],
                trials.reward[t],
                trials.next_obs[t],
                trials.done[t],
                trials.mask[t],
            )
            pred = head(belief.features()).numpy()
            for i in range(n):
                if trials.mask[t, i]:
                    errors.append(np.mean((pred[i] - target[i]) ** 2))
    assert len(errors) == t_len * n - 1
    assert float(loss.detach()) == pytest.approx(float(np.mean(errors)), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(standardize_features(feats).numpy(), target, rtol=1e-5, atol=1e-6)


def test_task_inference_gradients_reach_the_encoder_and_the_head_only() -> None:
    cfg = load_experiment(None, ["privileged.task_inference_weight=0.5"])
    obs_dim, act_dim = 3, 2
    nets = AgentNetworks(obs_dim, act_dim, cfg, task_dim=TASK_DIM)
    assert nets.task_head is not None
    feats = torch.randn(3, TASK_DIM, generator=torch.Generator().manual_seed(1))
    task_inference_loss(
        nets.encoder, nets.task_head, _trials(4, 3, obs_dim, act_dim), feats
    ).backward()
    for name, p in nets.named_parameters():
        reached = p.grad is not None and bool(p.grad.abs().sum() > 0)
        if name.startswith(("encoder.", "task_head.")):
            assert reached, name
        else:
            assert not reached, name


def _collect(trainer: Trainer) -> tuple[torch.Tensor, ...]:
    batch = trainer.collect()
    assert batch.task_features is not None
    return batch.raw_actions, batch.beliefs, batch.values, batch.task_features


def test_no_leak_perturbed_task_features_leave_actions_beliefs_and_evaluation_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = pick_place_config(tmp_path, *ON)
    ref = Trainer(cfg, None)
    try:
        actions, beliefs, values, feats = _collect(ref)
        ref_adv, _ = ref.advantages(ref.collect())
        ref_eval = ref.evaluate()
    finally:
        ref.close()

    def perturbed(tasks: list[Task], device: torch.device | str = "cpu") -> torch.Tensor:
        f = task_features(tasks, device)
        return f + 10.0 * torch.randn(f.shape, generator=torch.Generator().manual_seed(3))

    monkeypatch.setattr(trainer_module, "task_features", perturbed)
    other = Trainer(cfg, None)
    try:
        actions2, beliefs2, values2, feats2 = _collect(other)
        adv2, _ = other.advantages(other.collect())
        eval2 = other.evaluate()
    finally:
        other.close()
    assert not torch.allclose(feats, feats2)  # the perturbation reached the training batch
    assert torch.equal(actions, actions2) and torch.equal(beliefs, beliefs2)
    assert torch.equal(values, values2)  # what the agent recorded while acting
    assert eval2 == ref_eval
    assert not torch.allclose(ref_adv, adv2)  # ... while the asymmetric critic did read them


def test_training_with_both_switches_trains_the_privileged_parts_and_ships_without_them(
    tmp_path: Path,
) -> None:
    cfg = pick_place_config(tmp_path, *ON)
    metrics, changed = one_iteration(cfg)
    assert "losses/task_inference" in metrics and np.isfinite(metrics["losses/task_inference"])
    assert any(k.startswith("privileged_critic.") for k in changed)
    assert any(k.startswith("task_head.") for k in changed)
    assert any(k.startswith("policy.actor.") for k in changed)
    # The policy's own critic gets no loss: the asymmetric critic replaces it.
    assert not any(k.startswith("policy.critic.") for k in changed)

    run_dir = train(cfg)
    agent = MetaAgent.from_checkpoint(run_dir, device="cpu")
    assert agent.networks.privileged_critic is None and agent.networks.task_head is None


def test_asymmetric_critic_with_maml_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"privileged\.critic"):
        load_experiment(None, ["privileged.critic=true", "maml.enabled=true"])
    load_experiment(None, ["privileged.task_inference_weight=1", "maml.enabled=true"])
    with pytest.raises(ValueError, match=r"task_model\.updates_per_iteration >= 1"):
        load_experiment(
            None, ["privileged.task_inference_weight=1", "task_model.updates_per_iteration=0"]
        )


@pytest.mark.parametrize("bptt", [[], ["encoder.rl_bptt_steps=5"]], ids=["whole", "truncated"])
def test_asymmetric_critic_with_rl_gradients_trains_on_trial_minibatches(
    tmp_path: Path, bptt: list[str]
) -> None:
    """Minibatches of whole trials, or of stretches (truncated BPTT, test_bptt.py)."""
    metrics, changed = one_iteration(
        pick_place_config(tmp_path, *ON, "encoder.rl_gradients=true", *bptt)
    )
    assert np.isfinite(metrics["losses/value_loss"]) and metrics["losses/updates"] > 0
    assert any(k.startswith("privileged_critic.") for k in changed)
    assert not any(k.startswith("policy.critic.") for k in changed)


def test_a_resumed_run_with_both_switches_makes_the_same_next_update(tmp_path: Path) -> None:
    over = (*ON, "train.checkpoint_every=1", "train.eval_every=10")
    full = train(pick_place_config(tmp_path / "a", "train.iterations=2", *over))
    killed = train(pick_place_config(tmp_path / "b", "train.iterations=1", *over))
    resumed = train(pick_place_config(tmp_path / "b", "train.iterations=2", *over), resume=killed)
    ckpt = "checkpoints/ckpt_00000002.pt"
    a, b = load_checkpoint(full / ckpt), load_checkpoint(resumed / ckpt)
    assert a["networks"].keys() == b["networks"].keys()
    assert any(k.startswith("privileged_critic.") for k in a["networks"])
    for k in a["networks"]:
        torch.testing.assert_close(a["networks"][k], b["networks"][k], atol=1e-6, rtol=0, msg=k)
    assert read_metrics(full)[-1]["losses/task_inference"] == pytest.approx(
        read_metrics(resumed)[-1]["losses/task_inference"], abs=1e-6
    )


def test_information_gain_is_the_drop_of_the_task_error_and_telescopes_over_a_trial() -> None:
    torch.manual_seed(0)
    obs_dim, act_dim, latent, t_len, n, f_dim = 3, 2, 2, 5, 3, 4
    enc = ContextEncoder(obs_dim, act_dim, latent_dim=latent, hidden_size=8, embed_size=4)
    head = TaskInferenceHead(2 * latent, f_dim, hidden=(6,))
    trials = _trials(t_len, n, obs_dim, act_dim)  # step 2 of trial 0 is masked
    feats = torch.tensor(
        [[0.1, 1.0, 0.0, 2.0], [0.3, 0.0, 0.0, 0.5], [0.2, 0.0, 0.0, 1.0]], dtype=torch.float32
    )
    errors = task_inference_errors(enc, head, trials, feats)
    target = standardize_features(feats)

    def err(belief_features: torch.Tensor) -> torch.Tensor:
        return ((head(belief_features) - target) ** 2).mean(-1)

    hidden, belief = enc.initial_state(n), enc.prior(n)
    with torch.no_grad():
        for t in range(t_len):
            before = err(belief.features())
            hidden, belief = enc.step(
                hidden, trials.obs[t], trials.action[t], trials.reward[t], trials.next_obs[t],
                trials.done[t], trials.mask[t],
            )  # fmt: skip
            torch.testing.assert_close(errors.before[t], before)
            torch.testing.assert_close(errors.after[t], err(belief.features()))
    gain = errors.gain(trials.mask)
    assert gain[2, 0] == 0.0  # a masked step teaches nothing
    torch.testing.assert_close(gain.sum(0), errors.before[0] - errors.after[-1])
    assert errors.before.requires_grad is False and errors.after.requires_grad is False


def test_information_gain_needs_the_task_inference_head() -> None:
    with pytest.raises(
        ValueError, match=r"privileged\.info_gain_weight: got 1\.0 .*task_inference_weight"
    ):
        load_experiment(None, ["privileged.info_gain_weight=1.0"])
    cfg = load_experiment(
        None, ["privileged.task_inference_weight=1", "privileged.info_gain_weight=1"]
    )
    assert cfg.privileged.info_gain_weight == 1.0


def test_the_information_gain_reaches_the_rl_reward_only(tmp_path: Path) -> None:
    """The trainer adds ``info_gain_weight`` x the gain to the rewards of GAE, and nowhere else:
    the task model reads the env's rewards; the metrics show the error over the trial."""
    cfg = pick_place_config(
        tmp_path, "privileged.task_inference_weight=1.0", "privileged.info_gain_weight=3.0"
    )
    trainer = Trainer(cfg, None)
    try:
        batch = trainer.collect()
        assert batch.info_gain is not None and batch.info_gain.shape == batch.rewards.shape
        assert float(batch.info_gain.abs().sum()) > 0.0
        scaler = copy.deepcopy(trainer.state.scaler)
        adv, ret = trainer.advantages(batch)
        trainer.state.scaler = copy.deepcopy(scaler)
        by_hand = dataclasses.replace(
            batch, rewards=batch.rewards + 3.0 * batch.info_gain, info_gain=None
        )
        adv_hand, ret_hand = trainer.advantages(by_hand)
        torch.testing.assert_close(adv, adv_hand)
        torch.testing.assert_close(ret, ret_hand)
        trainer.state.scaler = copy.deepcopy(scaler)
        adv_plain, _ = trainer.advantages(dataclasses.replace(batch, info_gain=None))
        assert not torch.allclose(adv, adv_plain)
        trials = batch.trial_tensors(trainer.agent)
        torch.testing.assert_close(trials.reward, trainer.networks.normalize_reward(batch.rewards))
        metrics = trainer.iteration()
    finally:
        trainer.close()
    for k in ("prior", "ep1", "ep2"):
        assert np.isfinite(metrics[f"privileged/task_error_{k}"])
    assert np.isfinite(metrics["privileged/info_gain"])


def test_inference_features_narrow_the_head_and_its_targets_to_those_columns(
    tmp_path: Path,
) -> None:
    from meta_rl.agent.privileged import inference_targets

    goal = ("privileged.inference_features=[0, 1, 2]",)
    cfg = load_experiment(None, [*ON, *goal])
    nets = AgentNetworks(10, 4, cfg, task_dim=TASK_DIM)
    assert nets.task_head is not None
    assert nets.task_head(torch.zeros(5, 2 * cfg.encoder.latent_dim)).shape == (5, 3)
    assert nets.privileged_critic is not None  # the critic still sees every feature
    assert nets.privileged_critic.in_dim == 10 + 2 * cfg.encoder.latent_dim + TASK_DIM
    features = torch.arange(2 * TASK_DIM, dtype=torch.float32).reshape(2, TASK_DIM)
    assert torch.equal(inference_targets(cfg.privileged, features), features[:, :3])
    assert inference_targets(load_experiment(None, list(ON)).privileged, features) is features
    # A training iteration: the loss and the information gain on the goal columns.
    metrics, changed = one_iteration(
        pick_place_config(tmp_path, *ON, *goal, "privileged.info_gain_weight=1")
    )
    assert np.isfinite(metrics["losses/task_inference"])
    assert np.isfinite(metrics["privileged/info_gain"])
    assert any(k.startswith("task_head.") for k in changed)
    # Left out of the hash at its default; refused when empty, repeated, with a teacher, or
    # outside the features.
    assert config_hash(load_experiment(None, list(ON))) != config_hash(cfg)
    for bad, match in [
        ("[]", r"inference_features: got \[\]"),
        ("[1, 1]", r"inference_features: got \[1, 1\]"),
    ]:
        with pytest.raises((ConfigError, ValueError), match=match):
            load_experiment(None, [*ON, f"privileged.inference_features={bad}"])
    with pytest.raises((ConfigError, ValueError), match=r"inference_features: .* with a teacher"):
        load_experiment(None, [*ON, *goal, "privileged.teacher=runs/t"])
    far = load_experiment(None, [*ON, "privileged.inference_features=[0, 99]"])
    with pytest.raises(ValueError, match=r"inference_features: got \[0, 99\]; allowed: .* 9"):
        AgentNetworks(10, 4, far, task_dim=TASK_DIM)
