"""Imitation and posterior sampling (docs/imitation.md): the task-inference head as a posterior
(a mixture density), a student that acts on draws from it, DAgger on a revealed expert
(``train.algorithm: dagger``), and the generic ``reveal_task`` of a wrapped family."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from meta_rl.agent.particles import (
    FeatureDynamicsModel,
    FeatureObservationModel,
    FeatureRewardModel,
    ParticlePosterior,
    fuse,
)
from meta_rl.agent.privileged import TaskInferenceHead
from meta_rl.agent.task_model import TrialTensors
from meta_rl.checkpoint import load_checkpoint
from meta_rl.config import ConfigError, to_dict
from meta_rl.evaluation.toy import TOY_ENV_ID, register_toy_env
from meta_rl.experiment import ExperimentConfig, hashed_config, load_experiment
from meta_rl.logging import read_metrics
from meta_rl.training.optim import Counters, GuardedOptimizer
from meta_rl.training.privileged import reward_model_loss, reward_model_update
from meta_rl.training.trainer import Trainer, train

torch.set_num_threads(1)
register_toy_env()


def _cfg(tmp_path: Path, *overrides: str) -> ExperimentConfig:
    """A tiny run on the 1-D toy family (goals at +-0.2..0.6: two modes a mean cannot find)."""
    return load_experiment(
        None,
        [
            f"env.id={TOY_ENV_ID}",
            "env.batched=false",
            "env.tasks_per_batch=4",
            "env.eval_tasks=2",
            "env.episodes_per_trial=2",
            "env.episode_steps=6",
            "encoder.hidden_size=8",
            "encoder.embed_size=4",
            "encoder.latent_dim=2",
            "task_model.hidden=[8]",
            "task_model.updates_per_iteration=1",
            "task_model.belief_samples=2",
            "task_model.decode_samples=4",
            "policy.hidden=[8]",
            "ppo.epochs=1",
            "ppo.minibatches=2",
            "train.iterations=2",
            "train.eval_every=1",
            "train.checkpoint_every=1",
            "train.device=cpu",
            "logging.wandb_mode=disabled",
            "logging.progress_bar=false",
            f"runs_dir={tmp_path / 'runs'}",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def expert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A revealed-task policy on the toy family (2 PPO iterations: any policy is an expert
    for the contracts tested here)."""
    path = tmp_path_factory.mktemp("expert")
    return train(_cfg(path, "env.kwargs.reveal_task=true", "encoder.use_context=false"))


def _killed_and_resumed(
    tmp_path: Path, over: tuple[str, ...]
) -> tuple[Path, Path, dict[str, Any], dict[str, Any]]:
    """A 3-iteration run, and a run stopped after 2 then resumed to 3: both run directories and
    their third checkpoints, whose networks must be identical (checked here)."""
    full = train(_cfg(tmp_path / "a", "train.iterations=3", *over))
    killed = train(_cfg(tmp_path / "b", "train.iterations=2", *over))
    resumed = train(_cfg(tmp_path / "b", "train.iterations=3", *over), resume=killed)
    ckpt = "checkpoints/ckpt_00000003.pt"
    a, b = load_checkpoint(full / ckpt), load_checkpoint(resumed / ckpt)
    for k, v in a["networks"].items():
        torch.testing.assert_close(v, b["networks"][k], atol=0, rtol=0, msg=k)
    return full, resumed, a, b


# ---------------------------------------------------------------------- the head as a posterior


def test_a_one_component_head_is_a_gaussian_and_its_nll_the_negative_log_likelihood() -> None:
    torch.manual_seed(0)
    head = TaskInferenceHead(4, 3, hidden=(5,), components=1)
    belief, target = torch.randn(7, 4), torch.randn(7, 3)
    log_w, means, log_std = head.mixture(belief)
    assert log_w.shape == (7, 1) and means.shape == log_std.shape == (7, 1, 3)
    normal = torch.distributions.Normal(means[:, 0], log_std[:, 0].exp())
    # The constant log(2 pi) / 2 per feature is left out of the loss.
    expected = -(normal.log_prob(target).sum(-1) + 1.5 * math.log(2 * math.pi)) / 3
    torch.testing.assert_close(head.nll(belief, target), expected)
    torch.testing.assert_close(head(belief), means[:, 0])


def test_a_mixture_head_loss_and_mean_follow_the_mixture_formula() -> None:
    torch.manual_seed(1)
    head = TaskInferenceHead(4, 2, hidden=(5,), components=3)
    belief, target = torch.randn(6, 4), torch.randn(6, 2)
    log_w, means, log_std = head.mixture(belief)
    torch.testing.assert_close(log_w.exp().sum(-1), torch.ones(6))
    lo, hi = TaskInferenceHead.LOG_STD_RANGE
    assert bool((log_std >= lo).all() and (log_std <= hi).all())
    dens = torch.zeros(6)
    for k in range(3):
        normal = torch.distributions.Normal(means[:, k], log_std[:, k].exp())
        dens += log_w[:, k].exp() * normal.log_prob(target).sum(-1).exp()
    expected = -(dens.log() + math.log(2 * math.pi)) / 2
    torch.testing.assert_close(head.nll(belief, target), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head(belief), (log_w.exp().unsqueeze(-1) * means).sum(1))


def test_the_belief_learns_a_mixture_heads_mean_and_the_head_its_likelihood() -> None:
    """The mixture's loss is its likelihood on the detached belief plus its mean's squared
    error: the gradient that reaches the belief (the encoder) is the squared error's alone."""
    torch.manual_seed(2)
    head = TaskInferenceHead(4, 3, hidden=(5,), components=2)
    belief = torch.randn(6, 4, requires_grad=True)
    target = torch.randn(6, 3)
    loss = head.loss(belief, target)
    mse = ((head(belief) - target) ** 2).mean(-1)
    torch.testing.assert_close(loss, head.nll(belief, target) + mse)
    (grad,) = torch.autograd.grad(loss.sum(), belief)
    (mse_grad,) = torch.autograd.grad(mse.sum(), belief)
    torch.testing.assert_close(grad, mse_grad)
    head.zero_grad()
    head.nll(belief.detach(), target).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_a_point_head_keeps_its_squared_error() -> None:
    head = TaskInferenceHead(4, 3, hidden=(5,))
    belief, target = torch.randn(7, 4), torch.randn(7, 3)
    torch.testing.assert_close(head.loss(belief, target), ((head(belief) - target) ** 2).mean(-1))
    assert torch.equal(head.sample(belief, torch.Generator()), head(belief))


def test_draws_follow_the_mixture_weights_and_repeat_with_the_generator() -> None:
    head = TaskInferenceHead(1, 1, hidden=(2,), components=2)
    with torch.no_grad():  # a fixed posterior: weights 0.2 / 0.8, means -5 / +5, std e^-2.3
        last = head.net[-1]
        assert isinstance(last, torch.nn.Linear)
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.log(0.2), math.log(0.8), -5.0, 5.0, -30.0, -30.0]))
    belief = torch.zeros(4000, 1)
    with torch.no_grad():
        draws = head.sample(belief, torch.Generator().manual_seed(3))
        again = head.sample(belief, torch.Generator().manual_seed(3))
    assert abs(float((draws > 0).float().mean()) - 0.8) < 0.03
    assert float((draws.abs() - 5.0).abs().max()) < 1.0
    assert torch.equal(draws, again)


# ---------------------------------------------------------------------- config


def test_defaults_leave_the_config_hash_as_before() -> None:
    data = hashed_config(to_dict(load_experiment(None)))
    assert "imitation" not in data and "algorithm" not in data["train"]
    assert "privileged" not in data
    dagger = hashed_config(
        to_dict(load_experiment(None, ["train.algorithm=dagger", "imitation.expert=runs/x"]))
    )
    assert dagger["train"]["algorithm"] == "dagger"
    assert dagger["imitation"]["expert"] == "runs/x"
    # Refinement's step size and count decide nothing while it is off; with it on, they do.
    particles = ["privileged.teacher=runs/t", "privileged.hypotheses=particles"]

    def priv(*over: str) -> dict[str, Any]:
        out: dict[str, Any] = hashed_config(to_dict(load_experiment(None, [*particles, *over])))
        return out["privileged"]

    assert priv() == priv("privileged.refine_top=9", "privileged.refine_lr=0.5")
    assert "refine_steps" not in priv() and "refine_top" not in priv()
    on = priv("privileged.refine_steps=60")
    assert (on["refine_steps"], on["refine_top"], on["refine_lr"]) == (60, 4, 0.05)
    assert on != priv("privileged.refine_steps=60", "privileged.refine_top=9")
    # Refinement within episodes is how the trained agent acts, never read by training: the
    # hash leaves it out at every value.
    assert "refine_every" not in on
    assert priv("privileged.refine_steps=60", "privileged.refine_every=0") == on
    assert priv("privileged.refine_steps=60", "privileged.refine_every=30") == on


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["privileged.hypotheses=sample"], r"privileged\.hypotheses: got 'sample'"),
        (
            [
                "privileged.teacher=runs/t",
                "privileged.task_inference_weight=1",
                "privileged.hypotheses=sample",
            ],
            r"task_head_components >= 1",
        ),
        (["privileged.resample_every=5"], r"privileged\.resample_every: got 5"),
        (["privileged.redraw_nats=1"], r"privileged\.redraw_nats: got 1"),
        (["privileged.hypotheses=particles"], r"privileged\.hypotheses: got 'particles'"),
        (["privileged.likelihood_temperature=0.5"], r"privileged\.likelihood_temperature"),
        (["privileged.refine_steps=5"], r"privileged\.refine_steps: got 5 with privileged\.hyp"),
        (["privileged.refine_lr=0"], r"privileged\.refine_lr"),
        (
            ["privileged.refine_every=5"],
            r"privileged\.refine_every: got 5 with privileged\.refine_steps 0",
        ),
        (["privileged.refine_every=-1"], r"privileged\.refine_every"),
        (["train.algorithm=dagger"], r"train\.algorithm: got 'dagger' with imitation\.expert"),
        (["imitation.expert=runs/x"], r"imitation\.expert: got 'runs/x' with train\.algorithm"),
        (
            ["train.algorithm=dagger", "imitation.expert=runs/x", "maml.enabled=true"],
            r"maml\.enabled",
        ),
        (["train.algorithm=bc"], r"train\.algorithm"),
        (["privileged.task_head_components=-1"], r"privileged\.task_head_components"),
        (["privileged.reward_noise=wide"], r"privileged\.reward_noise: got 'wide'.*learned"),
    ],
)
def test_bad_imitation_settings_are_refused_naming_the_key(
    overrides: list[str], message: str
) -> None:
    with pytest.raises((ConfigError, ValueError), match=message):
        load_experiment(None, overrides)


# ---------------------------------------------------------------------- reveal_task of a family


def test_a_wrapped_family_reveals_its_task_features_when_asked() -> None:
    import examples.hidden_pendulum  # noqa: F401  (registers the id)

    hidden = gym.make("byo/HiddenPendulum-v0")
    shown = gym.make("byo/HiddenPendulum-v0", reveal_task=True)
    try:
        assert hidden.observation_space.shape is not None
        assert shown.observation_space.shape == (hidden.observation_space.shape[0] + 3,)
        a, _ = hidden.reset(seed=4)
        b, _ = shown.reset(seed=4)
        task = shown.unwrapped.task if hasattr(shown.unwrapped, "task") else None
        env = shown
        while not hasattr(env, "task"):
            env = env.env  # type: ignore[attr-defined]
        task = env.task  # type: ignore[attr-defined]
        np.testing.assert_allclose(b[:3], a, rtol=1e-6)
        np.testing.assert_allclose(b[3:], task.features())
        action = np.array([0.5], dtype=np.float32)
        a2, *_ = hidden.step(action)
        b2, *_ = shown.step(action)
        np.testing.assert_allclose(b2[:3], a2, rtol=1e-6)
        np.testing.assert_allclose(b2[3:], task.features())
    finally:
        hidden.close()
        shown.close()


# ---------------------------------------------------------------------- posterior sampling


def _draws(trainer: Trainer, steps: int) -> list[torch.Tensor]:
    """The hypotheses the student's policy read over ``steps`` steps of one episode."""
    agent = trainer.agent
    n = trainer.venv.num_envs
    trainer.venv.set_tasks(
        trainer.venv.task_distribution.sample(n, "train", np.random.default_rng(0))
    )
    obs, _ = trainer.venv.reset(seed=1)
    agent.begin_trial(n)
    out = []
    for _ in range(steps):
        step = agent.step(obs, deterministic=True)
        out.append(step.belief[:, :1].clone())
        next_obs, reward, _, _, _ = trainer.venv.step(step.env_action)
        agent.observe(obs, step.env_action, reward, next_obs, np.zeros(n))
        obs = next_obs
    return out


def test_a_student_holds_its_hypothesis_through_an_episode_and_redraws_when_told(
    tmp_path: Path, expert: Path
) -> None:
    student = (
        f"privileged.teacher={expert}",
        "privileged.task_inference_weight=1",
        "privileged.task_head_components=2",
        "privileged.hypotheses=sample",
    )
    trainer = Trainer(_cfg(tmp_path / "a", *student), None)
    try:
        draws = _draws(trainer, 4)
        assert all(torch.equal(d, draws[0]) for d in draws)
        trainer.agent.end_episode()
        assert not torch.equal(_draws(trainer, 1)[0], draws[0])
    finally:
        trainer.close()
    trainer = Trainer(_cfg(tmp_path / "b", *student, "privileged.resample_every=2"), None)
    try:
        draws = _draws(trainer, 4)
        assert torch.equal(draws[0], draws[1]) and torch.equal(draws[2], draws[3])
        assert not torch.equal(draws[1], draws[2])
    finally:
        trainer.close()


def test_a_row_redraws_when_the_evidence_contradicts_its_hypothesis(
    tmp_path: Path, expert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(
        tmp_path,
        f"privileged.teacher={expert}",
        "privileged.task_inference_weight=1",
        "privileged.task_head_components=2",
        "privileged.hypotheses=component",
        "privileged.redraw_nats=1.0",
    )
    trainer = Trainer(cfg, None)
    try:
        head = trainer.networks.task_head
        assert head is not None
        # The posterior's log-density at each row's hypothesis: 0 when drawn, then row 1 falls
        # by 2 nats (contradicted) and row 3 by 0.5 (within the allowance).
        densities = iter([torch.zeros(4), torch.tensor([0.0, -2.0, 0.0, -0.5]), torch.zeros(4)])
        monkeypatch.setattr(head, "log_density", lambda belief, x: next(densities))
        agent = trainer.agent
        draws = iter([torch.zeros(4, 1), torch.full((4, 1), 7.0)])
        monkeypatch.setattr(agent, "_draw", lambda belief, within: next(draws))
        agent.begin_trial(4)
        belief = agent.belief_features()
        first = agent._current_hypothesis(belief)
        assert first is not None and torch.equal(first, torch.zeros(4, 1))
        second = agent._current_hypothesis(belief)
        assert second is not None
        assert torch.equal(second, torch.tensor([[0.0], [7.0], [0.0], [0.0]]))
    finally:
        trainer.close()


# ---------------------------------------------------------------------- the particle posterior


class _KnownReward(FeatureRewardModel):
    """A reward model that predicts the first feature as the reward, whatever the transition."""

    def __init__(self) -> None:
        super().__init__(1, 1, 1, hidden=(2,))
        self.sigma.fill_(0.5)

    def forward(self, obs, action, next_obs, features):  # type: ignore[no-untyped-def]
        shape = torch.broadcast_shapes(obs.shape[:-1], features.shape[:-1])
        return features[..., 0].expand(shape)


def test_particles_are_weighed_by_the_reward_likelihood() -> None:
    particles = torch.tensor([[0.0], [1.0], [2.0]])
    post = ParticlePosterior(
        _KnownReward(), particles, 2, temperature=2.0, generator=torch.Generator()
    )
    zeros = torch.zeros(2, 1)
    post.update(zeros, zeros, torch.tensor([1.0, 2.0]), zeros)
    # log-likelihood -(r - f)^2 / (2 (T sigma)^2) with T sigma = 1, shifted so each row's best is 0.
    expected = torch.tensor([[-0.5, 0.0, -0.5], [-2.0, -0.5, 0.0]])
    torch.testing.assert_close(post.log_weights, expected)
    post.update(zeros, zeros, torch.tensor([9.0, 9.0]), zeros, mask=torch.tensor([False, True]))
    torch.testing.assert_close(post.log_weights[0], expected[0])  # a masked row is left alone
    for _ in range(30):
        post.update(zeros, zeros, torch.tensor([1.0, 2.0]), zeros)
    assert post.draw().tolist() == [1, 2]  # the posterior has settled on the right particles


def test_a_learned_reward_noise_weighs_each_transition_by_its_own_width() -> None:
    """With learned_noise the log-likelihood is the Gaussian's log-density tempered by 1/T^2,
    -((r - f)^2 / (sigma^2 v) + log v) / (2 T^2): a particle that predicts a wide reward is
    hurt less by a miss and pays log v for its width."""

    class Widths(FeatureRewardModel):
        """Predicts the reward f (the first feature) with variance 4 where f >= 1, else 1."""

        def __init__(self) -> None:
            super().__init__(1, 1, 1, hidden=(2,), learned_noise=True)
            self.sigma.fill_(0.5)

        def distribution(self, obs, action, next_obs, features):  # type: ignore[no-untyped-def]
            shape = torch.broadcast_shapes(obs.shape[:-1], features.shape[:-1])
            mean = features[..., 0].expand(shape)
            return mean, torch.where(mean >= 1.0, math.log(4.0), 0.0)

    particles = torch.tensor([[0.0], [1.0], [3.0]])
    post = ParticlePosterior(Widths(), particles, 1, temperature=2.0, generator=torch.Generator())
    zeros = torch.zeros(1, 1)
    post.update(zeros, zeros, torch.tensor([2.0]), zeros)
    # sigma^2 = 1/4, T^2 = 4: f = 0: -(4 / 0.25) / 8 = -2; f = 1: -(1 / 1 + log 4) / 8;
    # f = 3: the same. Shifted so the best is 0.
    loglik = torch.tensor([-2.0, -(1.0 + math.log(4.0)) / 8, -(1.0 + math.log(4.0)) / 8])
    torch.testing.assert_close(post.log_weights[0], loglik - loglik.max())


def test_a_learned_reward_noise_fits_each_transition_s_width_and_calibrates() -> None:
    """The beta-NLL fit learns a narrow width where the reward is exact and a wide one where
    it is noisy, and the update sets sigma to the fresh errors in units of those widths (about
    1 once the widths are right). The hand-computed loss: beta 1/2, w * (err^2 / v + log v) / 2
    with w = sqrt(v) held constant."""
    torch.manual_seed(0)
    model = FeatureRewardModel(1, 1, 1, hidden=(32, 32), learned_noise=True)
    zero = torch.zeros(1, 1)
    mean, log_var = model.distribution(zero, zero, zero, zero)
    loss = reward_model_loss(model, zero, zero, zero, zero, torch.tensor([1.0]))
    v = log_var.exp()
    torch.testing.assert_close(loss, (v.sqrt() * ((1.0 - mean) ** 2 / v + log_var) / 2).mean())
    torch.testing.assert_close(model(zero, zero, zero, zero), mean)
    gen = torch.Generator().manual_seed(0)
    n = 4096
    noisy = (torch.rand(1, n, 1, generator=gen) < 0.5).float()  # the feature: 1 noisy, 0 exact
    obs = torch.rand(1, n, 1, generator=gen)
    reward = (obs[..., 0] + noisy[..., 0] * torch.randn(1, n, generator=gen)).float()
    mask = torch.ones(1, n, dtype=torch.bool)
    actions, done = torch.zeros(1, n, 1), torch.zeros(1, n)
    trials = TrialTensors(obs, actions, reward, obs, done, mask)
    params = list(model.parameters())
    guard = GuardedOptimizer(torch.optim.Adam(params, lr=3e-3), params, 10.0, Counters(), 5)
    for _ in range(6):
        reward_model_update(
            model, trials, reward, noisy[0], updates=100, batch_size=512, guard=guard, generator=gen
        )
    with torch.no_grad():
        mean, log_var = model.distribution(obs[0], actions[0], obs[0], noisy[0])
    width = (0.5 * log_var).exp()
    assert float(width[noisy[0, :, 0] == 1].mean()) == pytest.approx(1.0, abs=0.2)
    assert float(width[noisy[0, :, 0] == 0].mean()) < 0.05
    metrics = reward_model_update(
        model, trials, reward, noisy[0], updates=1, batch_size=512, guard=guard, generator=gen
    )
    calibration = float(((mean - reward[0]) ** 2 / log_var.exp()).mean().sqrt())
    assert metrics["privileged/reward_noise_calibration"] == pytest.approx(calibration, rel=1e-5)
    assert float(model.sigma) == metrics["privileged/reward_noise_calibration"]
    assert 0.5 < calibration < 3.0


def test_the_posterior_reads_a_running_average_of_the_trained_reward_model() -> None:
    """With an average, the update calibrates the average (its sigma and logged error come from
    the average's errors on the fresh batch, the trained model's sigma is left alone), trains the
    other model, then moves the average to w * itself + (1 - w) * trained with
    w = min(momentum, n / (n + 1)): a copy after the first iteration, the plain mean next."""
    torch.manual_seed(0)
    model = FeatureRewardModel(1, 1, 1, hidden=(8,))
    average = FeatureRewardModel(1, 1, 1, hidden=(8,))  # a different start, to see each rule
    gen = torch.Generator().manual_seed(0)
    n = 64
    obs = torch.rand(1, n, 1, generator=gen)
    reward = 2.0 * obs[..., 0]
    zeros, mask = torch.zeros(1, n, 1), torch.ones(1, n, dtype=torch.bool)
    trials = TrialTensors(obs, zeros, reward, obs, zeros[..., 0], mask)
    features = torch.zeros(n, 1)
    params = list(model.parameters())
    guard = GuardedOptimizer(torch.optim.Adam(params, lr=1e-2), params, 10.0, Counters(), 5)

    def update(momentum: float, made: int) -> dict[str, float]:
        return reward_model_update(
            model,
            trials,
            reward,
            features,
            updates=3,
            batch_size=16,
            guard=guard,
            generator=gen,
            average=average,
            averaging=(momentum, made),
        )

    def flat(m: FeatureRewardModel) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    with torch.no_grad():
        rmse = float(((average(obs[0], zeros[0], obs[0], features) - reward[0]) ** 2).mean().sqrt())
    metrics = update(0.9, 0)
    assert metrics["privileged/reward_model_rmse"] == pytest.approx(rmse, rel=1e-5)
    assert float(average.sigma) == pytest.approx(rmse, rel=1e-5)
    assert float(model.sigma) == 1.0  # the trained model is not what the posterior reads
    torch.testing.assert_close(flat(average), flat(model))  # n = 0: the average is a copy
    before_avg, before_model = flat(average), flat(model)
    update(0.9, 1)  # n = 1: w = 1/2
    torch.testing.assert_close(flat(average), 0.5 * before_avg + 0.5 * flat(model))
    assert not torch.equal(flat(model), before_model)
    before_avg = flat(average)
    update(0.25, 5)  # w = min(0.25, 5/6)
    torch.testing.assert_close(flat(average), 0.25 * before_avg + 0.75 * flat(model))


def test_a_particle_hypothesis_is_kept_until_it_falls_behind() -> None:
    particles = torch.tensor([[0.0], [1.0], [2.0]])
    post = ParticlePosterior(
        _KnownReward(), particles, 3, temperature=1.0, generator=torch.Generator().manual_seed(0)
    )
    post.log_weights = torch.tensor([[0.0, -50.0, -50.0]] * 3)
    assert post.hypotheses(True, None)[:, 0].tolist() == [0.0, 0.0, 0.0]
    # Now particle 2 is the only likely one; particle 0 is 4 nats behind in row 0, 40 in rows 1-2.
    post.log_weights = torch.tensor([[-4.0, -50.0, 0.0], [-40.0, -50.0, 0.0], [-40.0, -50.0, 0.0]])
    kept = post.hypotheses(False, 5.0)[:, 0].tolist()
    assert kept == [0.0, 2.0, 2.0]
    assert post.hypotheses(False, None)[:, 0].tolist() == [0.0, 2.0, 2.0]  # no rule: kept
    assert post.hypotheses(True, None)[:, 0].tolist() == [2.0, 2.0, 2.0]  # scheduled redraw


def test_the_first_observation_weighs_the_particles_by_the_observation_model() -> None:
    class Echo(FeatureObservationModel):
        """Predicts the observation [feature, 0]; dimension 1 is wide (log-variance log 4)."""

        def __init__(self) -> None:
            super().__init__(2, 1, hidden=(2,))
            self.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))

        def forward(self, features):  # type: ignore[no-untyped-def]
            return torch.cat([features, torch.zeros_like(features)], dim=-1)

    particles = torch.tensor([[0.0], [1.0], [3.0]])
    post = ParticlePosterior(
        _KnownReward(), particles, 1, temperature=1.0, generator=torch.Generator()
    )
    post.observe_start(Echo(), torch.tensor([[1.0, 2.0]]), temperature=1.0)
    # -(o0 - f)^2 / 2 - (o1 - 0)^2 / (2 * 4), shifted so the best is 0: f = 1 fits best.
    torch.testing.assert_close(post.log_weights, torch.tensor([[-0.5, 0.0, -2.0]]))


class _KnownDynamics(FeatureDynamicsModel):
    """Predicts the change [feature * action, 0]; dimension 1 is wide (log-variance log 4)."""

    def __init__(self) -> None:
        super().__init__(2, 1, 1, hidden=(2,))
        self.log_var.copy_(torch.tensor([0.0, math.log(4.0)]))

    def forward(self, obs, action, features):  # type: ignore[no-untyped-def]
        shape = torch.broadcast_shapes(obs.shape[:-1], action.shape[:-1], features.shape[:-1])
        moved = (features[..., :1] * action).expand(*shape, 1)
        return torch.cat([moved, torch.zeros_like(moved)], dim=-1)


def test_transitions_weigh_the_particles_by_the_dynamics_model_too() -> None:
    """With observe_dynamics, a transition adds the next observation's log-likelihood,
    -sum_d (change_d - predicted_d)^2 / (2 T^2 var_d), to the reward's; the variance has a
    floor; masked rows are left alone; refinement fits both, so it finds a feature that only
    the dynamics tell (the rewards here are the same under every particle)."""

    class _Flat(_KnownReward):
        def forward(self, obs, action, next_obs, features):  # type: ignore[no-untyped-def]
            shape = torch.broadcast_shapes(obs.shape[:-1], features.shape[:-1])
            return torch.zeros(shape)

    particles = torch.tensor([[0.0], [1.0], [3.0]])
    post = ParticlePosterior(_Flat(), particles, 2, temperature=2.0, generator=torch.Generator())
    post.observe_dynamics(_KnownDynamics(), temperature=2.0)
    obs = torch.tensor([[0.5, 0.0], [0.0, 0.0]])
    action = torch.tensor([[1.0], [1.0]])
    next_obs = torch.tensor([[1.5, 4.0], [2.0, 0.0]])  # row 0 moved by 1, row 1 by 2
    post.update(obs, action, torch.zeros(2), next_obs)
    # Row 0: -(1 - f)^2 / (2 * 4) - 4^2 / (2 * 4 * 4) for f = 0, 1, 3 (the last term is shared);
    # row 1: -(2 - f)^2 / 8. Each row's best shifted to 0.
    expected = torch.tensor([[-1 / 8, 0.0, -4 / 8], [-4 / 8, -1 / 8, -1 / 8]])
    expected = expected - expected.max(dim=1, keepdim=True).values
    torch.testing.assert_close(post.log_weights, expected)
    post.update(obs, action, torch.zeros(2), next_obs * 9, mask=torch.tensor([True, False]))
    assert post.log_weights[1].tolist() == expected[1].tolist()
    # The floor: a dimension predicted exactly on its data keeps a variance of VAR_FLOOR.
    model = _KnownDynamics()
    model.log_var.fill_(-60.0)
    assert model.variance().tolist() == pytest.approx([FeatureDynamicsModel.VAR_FLOOR] * 2)
    # Refinement on dynamics alone: 20 steps that moved by 2 per unit action (T = 1, precision
    # 20 in all) and the prior's precision 1 put the mode at 20 * 2 / 21.
    post = ParticlePosterior(
        _Flat(), torch.tensor([[0.0]]), 1, temperature=1.0, generator=torch.Generator()
    )
    post.observe_dynamics(_KnownDynamics(), temperature=1.0)
    for _ in range(20):
        post.update(obs[1:], action[1:], torch.zeros(1), next_obs[1:])
    post.refine(steps=400, top=1, lr=0.05)
    torch.testing.assert_close(post.particles[0, 1, 0], torch.tensor(40 / 21), atol=2e-3, rtol=0)


def test_refinement_finds_a_task_between_the_particles() -> None:
    """refine: Adam on the likeliest particles' features up the trial's log-likelihood plus a
    unit Gaussian log-prior reaches the posterior's mode; the refined particle joins the row's
    particles weighed by its likelihood, the log-weights stay the trial's log-likelihoods up to
    a shift, the model's parameters get no gradient, and the result is deterministic."""

    def refined() -> ParticlePosterior:
        post = ParticlePosterior(
            _KnownReward(),
            torch.tensor([[0.0], [1.0], [3.0]]),
            2,
            temperature=1.0,
            generator=torch.Generator(),
        )
        zeros = torch.zeros(2, 1)
        for _ in range(10):  # row 0 sees rewards of 2, row 1 of 1 (a bank particle)
            post.update(zeros, zeros, torch.tensor([2.0, 1.0]), zeros)
        post.index = torch.tensor([0, 0])
        post.refine(steps=300, top=1, lr=0.05)
        return post

    post = refined()
    assert post.particles.shape == (2, 4, 1) and post.index is None
    # 10 rewards with T sigma = 0.5 (precision 40 in all) and the prior's precision 1: the mode
    # is 40 * r / 41.
    torch.testing.assert_close(
        post.particles[:, 3, 0], torch.tensor([80 / 41, 40 / 41]), atol=2e-3, rtol=0
    )
    assert post.log_weights.argmax(dim=1).tolist() == [3, 1]  # row 1: the bank's 1.0 is exact
    truth = post.trial_loglik(post.particles) - post.offset.unsqueeze(1)
    torch.testing.assert_close(post.log_weights, truth)
    assert all(p.grad is None for p in post.model.parameters())
    torch.testing.assert_close(refined().particles, post.particles, atol=0, rtol=0)
    # A second refinement replaces the refined particle; before any transition it does nothing.
    post.refine(steps=5, top=1, lr=0.05)
    assert post.particles.shape == (2, 4, 1)
    fresh = ParticlePosterior(
        _KnownReward(), torch.tensor([[0.0]]), 1, temperature=1.0, generator=torch.Generator()
    )
    fresh.refine(steps=5, top=1, lr=0.05)
    assert fresh.particles.shape == (1, 1)


def test_each_feature_is_read_from_the_surer_posterior() -> None:
    particles = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    post = ParticlePosterior(
        _KnownReward(), particles, 1, temperature=1.0, generator=torch.Generator()
    )
    # Equal weights: feature 0 spread over {0, 2} (variance 1), feature 1 certain (variance 0).
    torch.testing.assert_close(post.variance(), torch.tensor([[1.0, 0.0]]))
    h = torch.tensor([[2.0, 0.0]])
    head_mean, head_var = torch.tensor([[1.0, 5.0]]), torch.tensor([[3.0, 1.0]])
    fused = fuse(h, post.variance().clamp_min(1e-6), head_mean, head_var)
    # Feature 0: 2 + 1 / (1 + 3) * (1 - 2) = 1.75; feature 1: the particles are sure, kept.
    torch.testing.assert_close(fused, torch.tensor([[1.75, 0.0]]), atol=1e-5, rtol=0)
    # A head far surer than the particles wins the feature.
    sure = fuse(h, torch.tensor([[1.0, 1.0]]), head_mean, torch.tensor([[1e-8, 1e-8]]))
    torch.testing.assert_close(sure, head_mean, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("observation", "refine", "dynamics", "noise"),
    [
        (False, 0, False, "global"),
        (True, 0, False, "global"),
        (True, 3, False, "learned"),
        (False, 3, True, "global"),
    ],
    ids=[
        "rewards",
        "and-first-observation",
        "refined-learned-noise-averaged",
        "refined-on-dynamics",
    ],
)
def test_a_particle_student_trains_its_reward_model_and_resumes_exactly(
    tmp_path: Path, expert: Path, observation: bool, refine: int, dynamics: bool, noise: str
) -> None:
    averaging = 0.5 if noise == "learned" else 0.0
    over = (
        f"privileged.reward_noise={noise}",
        f"privileged.reward_model_averaging={averaging}",
        f"privileged.observation_likelihood={str(observation).lower()}",
        f"privileged.dynamics_likelihood={str(dynamics).lower()}",
        f"privileged.refine_steps={refine}",
        # How the trained agent acts; training must not read it (resumed exactly all the same).
        f"privileged.refine_every={2 if dynamics else 0}",
        f"privileged.teacher={expert}",
        "privileged.hypotheses=particles",
        "privileged.particles=16",
        "privileged.reward_model_hidden=[8]",
        "privileged.reward_model_batch=16",
        "privileged.redraw_nats=2.0",
        "privileged.teacher_freeze_iterations=100",
        "task_model.updates_per_iteration=0",
    )
    full, _, a, _ = _killed_and_resumed(tmp_path, over)
    bank = a["networks"]["particle_bank"]
    assert bank.shape == (16, 1)
    # The prior: train-split goals, 0.2 <= |goal| <= 0.6 (docs of the toy family).
    assert bool(((bank.abs() >= 0.2) & (bank.abs() <= 0.6)).all())
    metrics = read_metrics(full)
    assert all(np.isfinite(m["privileged/reward_model_rmse"]) for m in metrics)
    scale = "reward_noise_calibration" if noise == "learned" else "reward_model_rmse"
    assert float(a["networks"]["reward_model.sigma"]) == metrics[-1][f"privileged/{scale}"]
    # With averaging the checkpoint also holds the trained model, which the average follows.
    trained = {k: v for k, v in a["networks"].items() if k.startswith("reward_model_trained.")}
    assert bool(trained) == (averaging > 0.0)
    if trained:
        key = next(k for k in trained if k.endswith("weight"))
        average = a["networks"][key.replace("reward_model_trained.", "reward_model.")]
        assert not torch.equal(trained[key], average)
    # The acting agent loads the particles and the model, and acts on particles.
    from meta_rl.agent.meta_agent import MetaAgent

    agent = MetaAgent.from_checkpoint(full)
    assert agent.networks.reward_model is not None
    assert agent.networks.reward_model.learned_noise == (noise == "learned")
    torch.testing.assert_close(agent.networks.particle_bank, bank)
    assert (agent.networks.observation_model is not None) == observation
    if observation:
        error = metrics[-1]["privileged/observation_model_error"]
        log_var = a["networks"]["observation_model.log_var"]
        assert abs(float(log_var.exp().mean()) - error) < 1e-5
    assert (agent.networks.dynamics_model is not None) == dynamics
    if dynamics:
        error = metrics[-1]["privileged/dynamics_model_error"]
        log_var = a["networks"]["dynamics_model.log_var"]
        assert abs(float(log_var.exp().mean()) - error) < 1e-5
    assert agent.refine_every == (2 if refine and dynamics else 0)
    if refine:
        _check_no_refine_evaluation(full, tmp_path)
        _check_refinement_within_episodes(full)
        _check_training_refines_only_as_episodes_begin(tmp_path, over)
        _check_exploration_trace(full, joined=8 if dynamics else 0)
    else:
        from meta_rl.evaluation.config import EvalConfig
        from meta_rl.evaluation.runner import evaluate_checkpoint

        with pytest.raises(ValueError, match=r"no_refine: checkpoint .* does not refine"):
            evaluate_checkpoint(full, EvalConfig(no_refine=True, wandb_mode="disabled"))
        with pytest.raises(ValueError, match=r"refine_every: checkpoint .* does not refine"):
            evaluate_checkpoint(full, EvalConfig(refine_every=5, wandb_mode="disabled"))


def _check_exploration_trace(run: Path, joined: int) -> None:
    """The episode-1 trace of a particle student: per step its actions, the hypotheses it
    read (particles of the bank, standardised), the posterior's effective size (the bank's
    before any evidence, at most the bank and the ``joined`` refined particles after) and the
    reward so far."""
    from meta_rl.evaluation.exploration import exploration_table, trace_checkpoint

    trace = trace_checkpoint(str(run), num_tasks=3, task_seed=1)
    steps = 6  # env.episode_steps of the tiny config
    assert trace.actions.shape == (3, steps, 1) and trace.success.shape == (3,)
    assert trace.hypotheses is not None and trace.features is not None
    assert trace.hypotheses.shape == (3, steps, 1) and trace.features.shape == (3, 1)
    assert trace.particles is not None and trace.particles.shape == (3, steps)
    assert bool((trace.particles <= 16 + joined + 1e-6).all())
    assert bool((trace.particles >= 1 - 1e-6).all())
    # The rewards have weighed the particles (the refinement-free trace pins it to the bank).
    assert trace.particles[:, -1].mean() < 16 + joined
    assert trace.reward_so_far.shape == (3, steps)
    assert len(exploration_table(trace).splitlines()) == 2 + len({0, 1, 2, 3, 4, 5})


def _check_refinement_within_episodes(run: Path) -> None:
    """``privileged.refine_every`` k: the particles are refined at steps k, 2k, ... of every
    episode, the first included, besides as each later episode begins; without it only then.
    Each refinement draws every row's hypothesis afresh."""
    from meta_rl.agent.meta_agent import MetaAgent
    from meta_rl.agent.particles import ParticlePosterior
    from meta_rl.evaluation.protocol import make_eval_env, sample_tasks, set_env_tasks
    from meta_rl.trial import run_trial

    def refined_at(every: int) -> list[int]:
        agent = MetaAgent.from_checkpoint(run).with_refine_every(every)
        assert agent.refine_every == every
        steps: list[int] = []
        original = ParticlePosterior.refine

        def spy(self: ParticlePosterior, *args: Any) -> None:
            steps.append(agent._steps_in_episode - 1)  # the step about to act
            original(self, *args)
            assert self.index is None

        env = make_eval_env(TOY_ENV_ID, 2, seed=0, env_kwargs={"split": "test"})
        set_env_tasks(env, sample_tasks(TOY_ENV_ID, 2, "test", np.random.default_rng(0), {}))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ParticlePosterior, "refine", spy)
            run_trial(env, agent, episodes=2, deterministic=True, seed=0, episode_steps=6)
        env.close()
        return steps

    assert refined_at(0) == [0]  # as episode 2 begins
    assert refined_at(2) == [2, 4, 0, 2, 4]


def _check_training_refines_only_as_episodes_begin(tmp_path: Path, over: tuple[str, ...]) -> None:
    """``privileged.refine_every`` is how the trained agent acts: the trainer's collection and
    its in-loop evaluation refine only as each later episode begins, whatever it says."""
    from meta_rl.agent.particles import ParticlePosterior

    cfg = _cfg(tmp_path / "collect", *over, "privileged.refine_every=2", "train.iterations=1")
    trainer = Trainer(cfg, None)
    try:
        assert trainer.agent.refine_every == 0 and trainer._eval_agent().refine_every == 0
        steps: list[int] = []
        original = ParticlePosterior.refine

        def spy(self: ParticlePosterior, *args: Any) -> None:
            steps.append(trainer.agent._steps_in_episode - 1)  # the step about to act
            original(self, *args)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ParticlePosterior, "refine", spy)
            trainer.collect()
        assert steps == [0]  # once, as episode 2 of the trial begins
    finally:
        trainer.close()


def _check_no_refine_evaluation(run: Path, tmp_path: Path) -> None:
    """``no_refine`` adds the refinement-off ablation: the same networks, identical in
    episode 1 to an agent that refines only as later episodes begin, refined afterwards.
    ``refine_every`` adds the agent refining within episodes too: it acts otherwise from the
    trial's fourth step, episode 1 included, and is paired with the agent. An agent trained
    with ``privileged.refine_every`` acts so itself."""
    from meta_rl.agent.meta_agent import MetaAgent
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import evaluate_checkpoint

    within = MetaAgent.from_checkpoint(run).refine_every > 0

    cfg = EvalConfig(
        num_tasks=4,
        num_seeds=1,
        num_episodes=3,
        no_refine=True,
        refine_every=3,
        num_videos=0,
        wandb_mode="disabled",
        progress_bar=False,
    )
    report = evaluate_checkpoint(run, cfg, out_dir=tmp_path / "eval")
    by_name = {m.name: m.results.returns for m in report.methods}
    assert set(by_name) == {"meta-agent", "zero-shot", "no-refine", "refine-every-3"}
    agent, off = by_name["meta-agent"], by_name["no-refine"]
    assert np.array_equal(agent[:, 0], off[:, 0]) == (not within)
    assert not np.array_equal(agent[:, 1:], off[:, 1:])
    assert not np.array_equal(agent[:, 0], by_name["refine-every-3"][:, 0])
    every = next(m for m in report.methods if m.name == "refine-every-3")
    assert every.reference == "meta-agent" and every.vs_reference is not None


# ---------------------------------------------------------------------- DAgger


def test_dagger_imitates_the_expert_on_the_states_the_agent_visits(
    tmp_path: Path, expert: Path
) -> None:
    cfg = _cfg(tmp_path, "train.algorithm=dagger", f"imitation.expert={expert}")
    trainer = Trainer(cfg, None)
    try:
        assert trainer.expert is not None
        batch = trainer.collect()
        assert batch.task_features is not None
        labels = trainer.expert.actions(batch.obs, batch.task_features)
        # The labels are the expert's mean actions on the revealed observation.
        revealed = torch.cat(
            [batch.obs, batch.task_features.expand(batch.obs.shape[0], -1, -1)], -1
        )
        nets = trainer.expert.networks
        prior = nets.encoder.prior(1, revealed.device).features()[0]
        mean = nets.policy(revealed, prior.expand(*revealed.shape[:-1], -1)).mean
        torch.testing.assert_close(labels, mean.clamp(-1.0, 1.0))
        before = {k: v.clone() for k, v in trainer.networks.policy.state_dict().items()}
        metrics = trainer.iteration()
        assert metrics["losses/updates"] == cfg.imitation.epochs * cfg.imitation.minibatches
        assert np.isfinite(metrics["losses/imitation"])
        after = trainer.networks.policy.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before if "actor" in k)
    finally:
        trainer.close()


def test_a_killed_and_resumed_dagger_run_makes_the_same_next_update(
    tmp_path: Path, expert: Path
) -> None:
    over = ("train.algorithm=dagger", f"imitation.expert={expert}")
    full, resumed, a, b = _killed_and_resumed(tmp_path, over)
    assert a["meta"]["expert"]["file"] == b["meta"]["expert"]["file"]
    assert (
        read_metrics(full)[-1]["losses/imitation"] == read_metrics(resumed)[-1]["losses/imitation"]
    )


def test_an_expert_that_is_not_a_revealed_policy_is_refused(tmp_path: Path) -> None:
    hidden = train(_cfg(tmp_path / "hidden", "train.iterations=1"))
    cfg = _cfg(tmp_path / "s", "train.algorithm=dagger", f"imitation.expert={hidden}")
    with pytest.raises(ValueError, match=r"imitation\.expert: the expert .*reveal_task False"):
        Trainer(cfg, None)
    cfg = _cfg(tmp_path / "s", "train.algorithm=dagger", f"imitation.expert={tmp_path}/nowhere")
    with pytest.raises(ValueError, match=r"imitation\.expert: checkpoint .* does not exist"):
        Trainer(cfg, None)
