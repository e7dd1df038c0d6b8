"""Truncated back-propagation through the encoder in PPO (``encoder.rl_bptt_steps``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.configs import toy_config
from helpers.encoder import random_transitions, small_encoder
from helpers.params import assert_same_params, checkpoint_params
from meta_rl.agent.task_model import TrialTensors
from meta_rl.checkpoint import load_checkpoint
from meta_rl.config import to_dict
from meta_rl.experiment import config_hash, hashed_config, load_experiment
from meta_rl.logging import read_metrics
from meta_rl.training.ppo_update import Stretches, sub_beliefs, to_stretches
from meta_rl.training.trainer import Trainer, train

torch.set_num_threads(1)


def _trials(t_len: int, n: int, masked: bool = False) -> TrialTensors:
    obs, action, reward, next_obs, done = random_transitions(t_len, n)
    mask = torch.ones(t_len, n, dtype=torch.bool)
    if masked:
        mask[3, 1] = False  # an autoreset step: the hidden state is kept
    return TrialTensors(obs, action, reward, next_obs, done, mask)


def test_to_stretches_cuts_each_trial_in_order() -> None:
    x = torch.arange(12 * 2).reshape(12, 2)  # x[t, n] = 2t + n
    cut = to_stretches(x, 4)
    assert cut.shape == (4, 6)
    # Column s * N + n is steps 4s..4s+3 of trial n.
    for s in range(3):
        for n in range(2):
            assert cut[:, s * 2 + n].tolist() == [2 * t + n for t in range(4 * s, 4 * s + 4)]
    with pytest.raises(ValueError, match="stretches of 5"):
        to_stretches(x, 5)


@pytest.mark.parametrize("masked", [False, True])
def test_stretch_beliefs_equal_whole_trial_beliefs(masked: bool) -> None:
    """Before any update the stretches' beliefs are exactly those of whole trials: the first
    stretch starts at the prior, the others at the hidden state the trial reached."""
    enc = small_encoder()
    trials = _trials(12, 3, masked)
    whole = sub_beliefs(enc, trials, torch.arange(3))  # (12, 3, F)
    stretches = Stretches.of(enc, trials, 4)
    assert stretches.first.tolist() == [True] * 3 + [False] * 6
    feats = stretches.beliefs(enc, torch.arange(9))  # (4, 9, F)
    torch.testing.assert_close(feats, to_stretches(whole, 4), atol=1e-6, rtol=0)
    # Any subset of stretches, in any order, gives the same rows.
    idx = torch.tensor([7, 0, 4])
    torch.testing.assert_close(
        stretches.beliefs(enc, idx), to_stretches(whole, 4)[:, idx], atol=1e-6, rtol=0
    )


def test_the_gradient_stops_at_the_stretch_start() -> None:
    """A loss on the last stretch reaches the encoder through its own steps only: the earlier
    transitions of its trial get no gradient (the whole-trial graph gives them some)."""
    enc = small_encoder()
    base = _trials(12, 2)
    obs = base.obs.clone().requires_grad_(True)
    trials = TrialTensors(obs, base.action, base.reward, base.next_obs, base.done, base.mask)
    stretches = Stretches.of(enc, trials, 4)
    last_of_trial_0 = torch.tensor([4])  # stretch 2 of trial 0
    stretches.beliefs(enc, last_of_trial_0).sum().backward()
    assert obs.grad is not None
    assert float(obs.grad[:8].abs().sum()) == 0.0  # steps 0-7: before the stretch
    assert float(obs.grad[8:11, 0].abs().sum()) > 0.0  # its steps (the last one feeds no belief)
    assert float(obs.grad[:, 1].abs().sum()) == 0.0  # another trial
    assert all(p.grad is not None for p in enc.parameters())

    obs.grad = None
    sub_beliefs(enc, trials, torch.tensor([0]))[8:].sum().backward()
    grad = obs.grad
    assert grad is not None and float(grad[:8, 0].abs().sum()) > 0.0


def test_config_refuses_bptt_without_rl_gradients_or_with_maml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"encoder.rl_bptt_steps: got 4 .*rl_gradients"):
        load_experiment(None, ["encoder.rl_bptt_steps=4", "encoder.rl_gradients=false"])
    with pytest.raises(ValueError, match=r"encoder.rl_bptt_steps: got 4 .*maml"):
        load_experiment(
            None, ["encoder.rl_bptt_steps=4", "encoder.rl_gradients=true", "maml.enabled=true"]
        )
    with pytest.raises(ValueError, match=r"encoder.rl_bptt_steps"):
        load_experiment(None, ["encoder.rl_bptt_steps=0", "encoder.rl_gradients=true"])
    # The trial length is known once the env is: 2 episodes x 8 steps.
    cfg = toy_config(tmp_path, "encoder.rl_gradients=true", "encoder.rl_bptt_steps=5")
    with pytest.raises(
        ValueError,
        match=r"encoder.rl_bptt_steps: got 5; allowed: null or a "
        r"divisor of the trial length 16",
    ):
        Trainer(cfg, None)


def test_bptt_over_whole_trials_is_the_exact_update(tmp_path: Path) -> None:
    """rl_bptt_steps equal to the trial length is the whole-trial update, bit for bit."""
    over = ("encoder.rl_gradients=true", "train.iterations=2")
    a = train(toy_config(tmp_path / "a", *over))
    b = train(toy_config(tmp_path / "b", *over, "encoder.rl_bptt_steps=16"))
    ckpt = "checkpoints/ckpt_00000002.pt"
    for k, v in checkpoint_params(a / ckpt).items():
        assert torch.equal(v, checkpoint_params(b / ckpt)[k]), k


def test_truncated_run_trains_and_resumes_exactly(tmp_path: Path) -> None:
    over = (
        "encoder.rl_gradients=true",
        "encoder.rl_bptt_steps=8",
        "train.checkpoint_every=1",
    )
    full = train(toy_config(tmp_path / "a", "train.iterations=3", *over))
    whole = train(toy_config(tmp_path / "w", "train.iterations=3", over[0], over[2]))
    killed = train(toy_config(tmp_path / "b", "train.iterations=2", *over))
    resumed = train(toy_config(tmp_path / "b", "train.iterations=3", *over), resume=killed)
    ckpt = "checkpoints/ckpt_00000003.pt"
    assert_same_params(checkpoint_params(full / ckpt), checkpoint_params(resumed / ckpt))
    assert read_metrics(full)[-1]["train/return"] == read_metrics(resumed)[-1]["train/return"]
    # It is another update than the whole-trial one: the encoder's parameters differ.
    enc_full = {k: v for k, v in checkpoint_params(full / ckpt).items() if k.startswith("encoder.")}
    enc_whole = {
        k: v for k, v in checkpoint_params(whole / ckpt).items() if k.startswith("encoder.")
    }
    assert any(not torch.equal(v, enc_whole[k]) for k, v in enc_full.items())
    assert load_checkpoint(full / ckpt)["config"]["encoder"]["rl_bptt_steps"] == 8


def test_the_key_at_its_default_leaves_the_config_hash_of_older_runs() -> None:
    plain = load_experiment(None, ["encoder.rl_gradients=true"])
    cut = load_experiment(None, ["encoder.rl_gradients=true", "encoder.rl_bptt_steps=4"])
    assert "rl_bptt_steps" not in hashed_config(to_dict(plain))["encoder"]
    assert hashed_config(to_dict(cut))["encoder"]["rl_bptt_steps"] == 4
    assert config_hash(plain) != config_hash(cut)
