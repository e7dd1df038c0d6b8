"""The commanded pick-place family (``metarl/PickPlaceCommanded-v0``,
``meta_rl/skills/commanded.py``): pick-place whose action is a goal command to the shipped
revealed skill. Contracts: commands map onto the goal box, the skill sees no true task
feature, the batched simulator equals the single env, refusals name the argument, and the
meta-agent trains and evaluates on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the ids)
from envs.pick_place import PickPlaceEnv
from helpers.configs import pick_place_config
from meta_rl.agent.task_model import TrialTensors
from meta_rl.skills.commanded import (
    COMMANDED_ID,
    CommandedVectorEnv,
    Targets,
    goal_box,
)
from meta_rl.task_envs.vector import make_task_vector_env
from meta_rl.training.trainer import train

torch.set_num_threads(1)


def _tasks(venv: CommandedVectorEnv, n: int, split: str = "train", seed: int = 7) -> list:
    return venv.task_distribution.sample(n, split, np.random.default_rng(seed))


def _goal_commands(venv: CommandedVectorEnv, tasks: list) -> np.ndarray:
    c = venv.commander
    return (np.array([t.goal for t in tasks]) - c.centre) / c.half_width


def test_the_goal_box_holds_every_goal_and_commands_map_onto_it() -> None:
    venv = make_task_vector_env(COMMANDED_ID, 2, num_threads=0)
    assert isinstance(venv, CommandedVectorEnv)
    assert venv.single_action_space.shape == (3,)
    low, high = goal_box(venv.task_distribution)
    c = venv.commander
    np.testing.assert_allclose(c.goals(-np.ones((1, 3)))[0], low)
    np.testing.assert_allclose(c.goals(np.ones((1, 3)))[0], high)
    np.testing.assert_allclose(c.goals(5 * np.ones((1, 3)))[0], high)  # clipped
    for split in ("train", "test"):
        goals = np.array([t.goal for t in _tasks(venv, 2000, split, seed=99)])
        assert (goals > low).all() and (goals < high).all()
    venv.close()


def test_the_skill_places_the_object_when_commanded_to_the_goal() -> None:
    """The mapping is right: commanding the true goal succeeds (the skill: 0.90 on 100 unseen
    objects), commanding the box's centre mostly does not."""
    n = 16
    venv = make_task_vector_env(COMMANDED_ID, n, num_threads=0)
    assert isinstance(venv, CommandedVectorEnv)
    tasks = _tasks(venv, n)
    venv.set_tasks(tasks)
    rates = []
    for commands in (_goal_commands(venv, tasks), np.zeros((n, 3))):
        venv.reset(seed=0)
        success = np.zeros(n)
        for _ in range(150):
            *_, info = venv.step(commands)
            success = np.maximum(success, info["success"])
        rates.append(success.mean())
    assert rates[0] >= 0.75, rates
    assert rates[1] <= rates[0] - 0.4, rates
    venv.close()


def test_no_leak_the_arm_moves_the_same_whatever_the_hidden_goal_and_object_features() -> None:
    """Tasks that differ only in the goal: the same commands give the same trajectories (the
    goal never reaches the skill; only the reward differs). The skill's object inputs are its
    training means, the same for every task."""
    n = 4
    a = make_task_vector_env(COMMANDED_ID, n, num_threads=0)
    b = make_task_vector_env(COMMANDED_ID, n, num_threads=0)
    assert isinstance(a, CommandedVectorEnv) and isinstance(b, CommandedVectorEnv)
    tasks = _tasks(a, n)
    moved = [dataclasses.replace(t, goal=(t.goal[0], -t.goal[1], t.goal[2] + 0.03)) for t in tasks]
    a.set_tasks(tasks)
    b.set_tasks(moved)
    obs_a, _ = a.reset(seed=3)
    obs_b, _ = b.reset(seed=3)
    commands = np.random.default_rng(0).uniform(-1, 1, (40, n, 3))
    rewards_differ = False
    for cmd in commands:
        obs_a, r_a, *_ = a.step(cmd)
        obs_b, r_b, *_ = b.step(cmd)
        np.testing.assert_array_equal(obs_a, obs_b)
        rewards_differ |= not np.allclose(r_a, r_b)
    assert rewards_differ
    features = a.commander.object_features
    assert features.shape == (6,)
    assert np.array_equal(features, b.commander.object_features)
    a.close()
    b.close()


@pytest.mark.parametrize("command", ["goal", "velocity"])
def test_the_batched_simulator_equals_the_single_env_step_for_step(command: str) -> None:
    n = 2
    venv = make_task_vector_env(COMMANDED_ID, n, num_threads=0, command=command)
    assert isinstance(venv, CommandedVectorEnv)
    tasks = _tasks(venv, n)
    venv.set_tasks(tasks)
    obs_v, _ = venv.reset(seed=11)
    singles = [gym.make(COMMANDED_ID, command=command) for _ in range(n)]
    obs_s = []
    for i, env in enumerate(singles):
        arm = env.unwrapped  # the pick-place env under the command wrapper
        assert isinstance(arm, PickPlaceEnv)
        arm.set_task(tasks[i])
        obs_s.append(env.reset(seed=11 + i)[0])
    np.testing.assert_allclose(obs_v, np.array(obs_s), atol=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(30):
        cmd = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        obs_v, r_v, *_ = venv.step(cmd)
        for i, env in enumerate(singles):
            o, r, *_ = env.step(cmd[i])
            # The skill's forward pass on a batch of n rows and of 1 rounds differently.
            np.testing.assert_allclose(obs_v[i], o, rtol=1e-3, atol=1e-4)
            assert r_v[i] == pytest.approx(r, abs=1e-4)
    venv.close()


def test_object_commands_are_what_the_skill_reads_of_the_object() -> None:
    """``object_command``: the action gains the named features' columns, which map onto each
    feature's box over both splits; unnamed features stay at the skill's training means; in
    velocity mode only the goal's columns move the target."""
    venv = make_task_vector_env(COMMANDED_ID, 2, num_threads=1, object_command=["shape", "mass"])
    assert isinstance(venv, CommandedVectorEnv)
    c = venv.commander
    assert venv.single_action_space.shape == (7,) and c.columns == [0, 1, 2, 4]
    cmd = np.array([[0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0], [0, 0, 0, 1.0, 1.0, 1.0, 2.0]])
    objects = c.objects(cmd)
    every = np.array(
        [
            t.features()[3:]
            for split in ("train", "test")
            for t in venv.task_distribution.sample(4096, split, np.random.default_rng(0))
        ]
    )
    np.testing.assert_allclose(objects[0, [0, 1, 2, 4]], every.min(axis=0)[[0, 1, 2, 4]], atol=1e-5)
    np.testing.assert_allclose(objects[1, [0, 1, 2, 4]], every.max(axis=0)[[0, 1, 2, 4]], atol=1e-5)
    np.testing.assert_allclose(objects[:, [3, 5]], np.tile(c.object_features[[3, 5]], (2, 1)))
    np.testing.assert_allclose(c.feature_commands(objects), np.clip(cmd[:, 3:], -1, 1), atol=1e-5)
    venv.reset(seed=0)
    venv.step(np.zeros((2, 7), dtype=np.float32))
    venv.close()
    targets = Targets(2, "velocity", 0.5)
    out = targets.commands(np.array([[1.0, 0, 0, 0.3], [0, -1.0, 0, -0.3]]))
    np.testing.assert_allclose(out, [[0.5, 0, 0, 0.3], [0, -0.5, 0, -0.3]])


def test_velocity_commands_move_a_target_that_restarts_with_each_episode() -> None:
    n, speed = 3, 0.1
    venv = make_task_vector_env(
        COMMANDED_ID, n, num_threads=0, command="velocity", speed=speed, max_episode_steps=4
    )
    assert isinstance(venv, CommandedVectorEnv)
    assert venv.single_observation_space.shape == (32,)
    command = venv.obs_slices["command"]
    assert command == slice(29, 32)
    obs, _ = venv.reset(seed=0)
    np.testing.assert_array_equal(obs[:, command], 0.0)
    actions = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [3.0, -3.0, 0.0]])
    for t in range(1, 5):
        obs, *_ = venv.step(actions)
        expected = np.clip(t * speed * np.clip(actions, -1, 1), -1, 1)
        np.testing.assert_allclose(obs[:, command], expected, atol=1e-6)
    obs, reward, *_ = venv.step(actions)  # the autoreset step: a new episode at the centre
    np.testing.assert_array_equal(obs[:, command], 0.0)
    np.testing.assert_array_equal(reward, 0.0)
    obs, *_ = venv.step(actions)
    np.testing.assert_allclose(obs[:, command], speed * np.clip(actions, -1, 1), atol=1e-6)
    for _ in range(30):  # held at the box's edge
        obs, *_ = venv.step(np.ones((n, 3)))
    assert obs[:, command].max() <= 1.0
    venv.close()


def test_bad_arguments_are_refused_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"skill: got .*nowhere.*does not exist"):
        make_task_vector_env(COMMANDED_ID, 2, skill=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"command: got 'torque'; allowed: goal, velocity"):
        make_task_vector_env(COMMANDED_ID, 2, command="torque")
    with pytest.raises(ValueError, match=r"speed: got 0; allowed: a number in \(0, 1\]"):
        make_task_vector_env(COMMANDED_ID, 2, command="velocity", speed=0)
    with pytest.raises(ValueError, match=r"reveal_task: got True; allowed: false"):
        make_task_vector_env(COMMANDED_ID, 2, reveal_task=True)
    with pytest.raises(ValueError, match=r"object_command: got \['colour'\]; allowed: distinct"):
        make_task_vector_env(COMMANDED_ID, 2, object_command=["colour"])
    with pytest.raises(ValueError, match=r"object_command: got 'size'; allowed: a list"):
        gym.make(COMMANDED_ID, object_command="size")
    hidden = train(pick_place_config(tmp_path / "hidden", "train.iterations=1"))
    with pytest.raises(ValueError, match=r"skill: .* reveal_task=False .*allowed: a metarl/Pick"):
        make_task_vector_env(COMMANDED_ID, 2, skill=str(hidden))


def test_the_meta_agent_trains_on_it_and_metarl_evaluate_reads_it(tmp_path: Path) -> None:
    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import evaluate_checkpoint

    overrides = (f"env.id={COMMANDED_ID}", "privileged.critic=true")
    run = train(pick_place_config(tmp_path, *overrides, "privileged.task_inference_weight=1.0"))
    cfg = EvalConfig(num_tasks=2, num_seeds=1, num_episodes=2, num_videos=0, wandb_mode="disabled")
    report = evaluate_checkpoint(run, cfg, out_dir=tmp_path / "eval")
    assert (tmp_path / "eval").is_dir()
    assert report is not None


def test_gymnasium_s_env_checker_passes() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make(COMMANDED_ID)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space.shape == (3,)
    env.close()


def test_the_scripted_searcher_locates_hidden_goals_from_the_reward_and_places_them() -> None:
    """scripts/commanded_search.py: its tour's place readings locate the goal (the goal itself
    never reaches it) and the skill then places the object there in episodes 2 and 3."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("cs", root / "scripts/commanded_search.py")
    assert spec is not None and spec.loader is not None
    cs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cs)
    # The grid fit recovers a point from exact distances.
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, 11)] * 3, indexing="ij"), -1).reshape(-1, 3)
    points = np.random.default_rng(0).uniform(0, 1, (6, 3))
    goal = np.array([0.3, 0.7, 0.5])
    found = cs.locate(points, np.linalg.norm(points - goal, axis=1), grid)
    np.testing.assert_allclose(found, goal, atol=1e-9)
    r = cs.run(tasks=8, place_scale=10.0, split="train", seed=5, hold=15, start=40)
    assert r["located"] == 1.0 and r["within_5cm"] >= 0.75, r
    assert r["success"].shape == (3, 8)
    assert r["success"][2].mean() >= 0.6, r  # the skill alone at the box's centre: ~0.1


def test_the_expert_tours_in_episode_1_then_commands_the_true_goal() -> None:
    """imitate_searcher.expert_commands: the searcher's tour while it lasts, then the command
    whose goal point is the task's true goal, in every later step and episode; where commands
    name object features, the true ones throughout."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import commanded_search
    import imitate_searcher as im

    venv = make_task_vector_env(COMMANDED_ID, 3, num_threads=1, object_command=["size", "mass"])
    assert isinstance(venv, CommandedVectorEnv)
    tasks = _tasks(venv, 3)
    features = np.array([t.features() for t in tasks])
    goals = features[:, :3]
    labels = im.expert_commands(features, venv.commander, 450)
    assert labels.shape == (450, 3, 5)
    np.testing.assert_allclose(
        venv.commander.objects(labels[0])[:, [3, 4]], features[:, [6, 7]], rtol=1e-5
    )
    tour_end = im.START + im.HOLD * (len(commanded_search.TOUR) - 1)
    for t in (0, im.START, im.START + im.HOLD, tour_end - 1):
        np.testing.assert_allclose(
            labels[t, :, :3], np.tile(commanded_search.tour_command(t, im.START, im.HOLD), (3, 1))
        )
    for t in (tour_end, 149, 150, 449):
        np.testing.assert_allclose(venv.commander.goals(labels[t]), goals, atol=1e-6)
    venv.close()


def test_imitating_the_searcher_writes_a_run_that_evaluate_and_resume_read(
    tmp_path: Path,
) -> None:
    """scripts/imitate_searcher.py: behaviour cloning of the expert's commands lowers the
    imitation loss, a DAgger round adds the agent's own trials, and the result is an ordinary
    run directory (evaluated and resumed by PPO)."""
    import subprocess
    import sys

    from meta_rl.evaluation.config import EvalConfig
    from meta_rl.evaluation.runner import evaluate_checkpoint

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path / "bc"
    small = [
        "env.tasks_per_batch=4",
        "env.eval_tasks=2",
        "env.episode_steps=150",
        "encoder.hidden_size=16",
        "encoder.embed_size=8",
        "task_model.hidden=[16]",
        "task_model.updates_per_iteration=1",
        "policy.hidden=[16]",
        "ppo.epochs=1",
        "ppo.minibatches=2",
        "train.eval_every=1",
        "env.num_threads=1",
        "logging.wandb_mode=disabled",
        "logging.progress_bar=false",
        "privileged.inference_features=[0, 1, 2]",
    ]
    out = subprocess.run(
        [
            sys.executable,
            str(root / "scripts/imitate_searcher.py"),
            "--config",
            str(root / "configs/pick_place_cpu.yaml"),
            "--run-dir",
            str(run_dir),
            "--trials",
            "6",
            "--epochs",
            "3",
            "--batch",
            "3",
            "--dagger-rounds",
            "1",
            "--dagger-trials",
            "2",
            "--dagger-epochs",
            "1",
            *small,
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    losses = [
        float(ln.split("imitation ")[1].split(",")[0])
        for ln in out.stdout.splitlines()
        if ln.startswith("cloning epoch")
    ]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert "DAgger round 1" in out.stdout and "round 1 epoch 1" in out.stdout, out.stdout
    assert "(8 trials)" in out.stdout  # the 6 searcher trials and the agent's 2
    cfg = EvalConfig(num_tasks=2, num_seeds=1, num_episodes=3, num_videos=0, wandb_mode="disabled")
    evaluate_checkpoint(run_dir, cfg, out_dir=tmp_path / "eval")
    assert (tmp_path / "eval" / "eval.md").is_file()
    resumed = subprocess.run(
        [sys.executable, "-m", "meta_rl", "train", "--resume", str(run_dir), "train.iterations=2"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            [
                sys.executable,
                str(root / "scripts/imitate_searcher.py"),
                "--config",
                str(root / "configs/pick_place_cpu.yaml"),
                "--run-dir",
                str(tmp_path / "v"),
                "env.kwargs.command=velocity",
            ],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=600,
            check=True,
        )


@pytest.mark.parametrize("use_context", [True, False])
def test_imitation_fits_the_policy_on_the_belief_it_acts_on(
    tmp_path: Path, use_context: bool
) -> None:
    """imitate_searcher.fit conditions the policy, at step t, on the belief after steps < t
    (the prior at t = 0); with ``encoder.use_context`` false (the context-off ablation) on the
    prior at every step, as the agent acts."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import imitate_searcher as im

    from meta_rl.training.trainer import Trainer

    cfg = pick_place_config(
        tmp_path, f"env.id={COMMANDED_ID}", f"encoder.use_context={use_context}"
    )
    trainer = Trainer(cfg, None)
    venv = trainer.venv
    assert isinstance(venv, CommandedVectorEnv)
    data, _ = im.agent_trials(trainer, venv, seed=3)
    nets = trainer.networks
    seen: list[torch.Tensor] = []
    forward = nets.policy.forward

    def spy(obs: torch.Tensor, cond: torch.Tensor) -> object:
        seen.append(cond.detach().clone())
        return forward(obs, cond)

    nets.policy.forward = spy  # type: ignore[method-assign,assignment]
    params = list(nets.encoder.parameters()) + list(nets.policy.actor.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    im.fit(trainer, data, opt, params, 1, 4, torch.Generator().manual_seed(0), "test")
    prior = nets.encoder.prior(4).features()
    (cond,) = seen
    assert cond.shape[:2] == data["obs"].shape[:2]
    torch.testing.assert_close(cond[0], prior)
    later = (cond[1:] - prior).abs().amax()
    assert (later == 0) if not use_context else (later > 1e-3)
    trainer.close()


def test_imitation_with_maml_replays_the_adaptation_the_agent_acts_with(tmp_path: Path) -> None:
    """With ``maml.enabled`` (the task-model inner loss), imitate_searcher.adapted_means gives,
    on the agent's own recorded trials, the commands the agent acted with: the meta-parameters
    in episode 1, the parameters adapted after episodes 1 and 2 in episodes 2 and 3; and the
    imitation loss reaches the Meta-SGD step sizes through the inner step."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import imitate_searcher as im

    from meta_rl.training.trainer import Trainer

    cfg = pick_place_config(
        tmp_path,
        f"env.id={COMMANDED_ID}",
        "env.episodes_per_trial=3",
        "maml.enabled=true",
        "maml.inner_loss=task_model",
        "maml.inner_lr=0.5",
    )
    trainer = Trainer(cfg, None)
    venv = trainer.venv
    assert isinstance(venv, CommandedVectorEnv)
    data, _ = im.agent_trials(trainer, venv, seed=3)
    nets, agent = trainer.networks, trainer.agent
    assert agent.inner_loss is not None and nets.maml is not None
    obs = nets.normalize(data["obs"])
    trials = TrialTensors(
        obs=obs,
        action=data["act"],
        reward=nets.normalize_reward(data["rew"]),
        next_obs=nets.normalize(data["next"]),
        done=data["done"],
        mask=torch.ones(obs.shape[:2], dtype=torch.bool),
    )
    beliefs, _ = trials.encode(nets.encoder)
    cond = nets.conditioning(nets.encoder.beliefs_with_prior(beliefs).features()[:-1])
    means = im.adapted_means(
        nets, agent.inner_loss, data["obs"], trials, cond, beliefs.mean, episodes=3
    )
    low, high = torch.as_tensor(agent.action_low), torch.as_tensor(agent.action_high)
    torch.testing.assert_close(
        torch.clamp(means.detach(), low, high), data["act"], atol=1e-4, rtol=1e-4
    )
    unadapted = nets.policy(data["obs"], cond).mean.detach()
    steps = obs.shape[0] // 3
    torch.testing.assert_close(means[:steps].detach(), unadapted[:steps])
    assert (means[steps:].detach() - unadapted[steps:]).abs().amax() > 1e-4  # it adapted
    means.square().sum().backward()
    grads = [p.grad for p in nets.maml.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    trainer.close()
