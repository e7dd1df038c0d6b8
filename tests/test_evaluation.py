"""The evaluation protocol, reports and the evaluate pipeline.

Most tests drive scripted agents on the 1-D toy task family (meta_rl.evaluation.toy); the
end-to-end tests train a tiny meta-RL checkpoint on MuJoCo reach (configs/smoke.yaml, one
iteration) and evaluate it through the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from helpers.agents import StillAgent
from meta_rl.evaluation.config import EvalConfig
from meta_rl.evaluation.protocol import (
    AdaptiveAgent,
    TrialResults,
    make_eval_env,
    run_trials,
    sample_tasks,
    set_env_tasks,
)
from meta_rl.evaluation.report import load_eval_json
from meta_rl.evaluation.runner import Method, evaluate_checkpoint, evaluate_methods
from meta_rl.evaluation.toy import ToyTask, register_toy_env

torch.set_num_threads(1)
TOY = register_toy_env()

# The top-level keys of eval.json and of each method entry, as docs/evaluation.md lists them.
EVAL_KEYS = {
    "schema_version",
    "created",
    "env_id",
    "split",
    "checkpoint",
    "protocol",
    "tasks",
    "methods",
    "files",
    "config",
}
METHOD_KEYS = {
    "distinct_trials",
    "kind",
    "source",
    "physics_errors",
    "seeds_identical",
    "success",
    "success_final",
    "return",
    "gain",
    "per_trial",
    "breakdown",
    "vs_reference",
}
SUMMARY_KEYS = {"episode", "mean", "ci_low", "ci_high", "iqm", "std", "n"}


class ScriptedAdaptiveAgent:
    """Learns the goal of the 1-D toy task from rewards: it improves over the episodes.

    Episode 1 stands still and reads the distance |goal - x| from the reward; episode 2 goes to
    x + distance; episode 3 on goes to whichever candidate had a reward near 0 in episode 2.
    """

    def begin_trial(self, num_envs: int) -> None:
        self.n = num_envs
        self.k = 0
        self.target = np.zeros(num_envs)
        self.cands = np.zeros((num_envs, 2))
        self.best = np.full(num_envs, -np.inf)
        self.calls: list[str] = ["begin"]

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        assert obs.shape == (self.n, 1)
        if self.k == 0:
            return np.zeros((self.n, 1), dtype=np.float32)
        return np.clip((self.target - obs[:, 0]) / 0.25, -1, 1)[:, None].astype(np.float32)

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
    ) -> None:
        self.calls.append("observe")
        if self.k == 0:
            self.cands = np.stack([next_obs[:, 0] - reward, next_obs[:, 0] + reward], axis=1)
        else:
            self.best = np.maximum(self.best, reward)

    def end_episode(self) -> None:
        self.calls.append("end")
        if self.k == 0:
            self.target = self.cands[:, 0]
        elif self.k == 1:
            self.target = np.where(self.best > -0.05, self.cands[:, 0], self.cands[:, 1])
        self.k += 1


def _run(
    agent: AdaptiveAgent,
    num_tasks: int = 4,
    num_seeds: int = 2,
    num_episodes: int = 4,
    seed: int = 0,
) -> tuple[list[ToyTask], TrialResults]:
    tasks = sample_tasks(TOY, num_tasks, "test", np.random.default_rng(seed))
    env = make_eval_env(TOY, num_tasks * num_seeds, seed=0, env_kwargs={"split": "test"})
    try:
        set_env_tasks(env, tasks * num_seeds)
        return tasks, run_trials(
            agent,
            env,
            num_tasks=num_tasks,
            num_seeds=num_seeds,
            num_episodes=num_episodes,
            deterministic=True,
            env_seed=0,
            progress=False,
        )
    finally:
        env.close()


def test_scripted_agent_improves_over_the_episodes_of_a_trial() -> None:
    tasks, res = _run(ScriptedAdaptiveAgent(), num_tasks=6, num_seeds=2)
    assert res.success.shape == (12, 4)
    rate = res.success.mean(axis=0)
    # Standing still never reaches |goal| > 0.6; once both candidates were tried, every trial
    # succeeds; episode 2 succeeds exactly for the goals on the positive side.
    assert rate[0] == 0.0
    positive = np.array([t.goal > 0 for t in tasks] * 2, dtype=float)
    np.testing.assert_array_equal(res.success[:, 1], positive)
    np.testing.assert_array_equal(res.success[:, 2:], 1.0)
    assert res.returns[:, 3].mean() > res.returns[:, 0].mean()
    np.testing.assert_array_equal(res.lengths, 10)
    np.testing.assert_array_equal(res.task_index, np.tile(np.arange(6), 2))
    np.testing.assert_array_equal(res.seed_index, np.repeat(np.arange(2), 6))


def test_gain_is_paired_episode_k_minus_episode_1() -> None:
    """Tasks of very different difficulty, each 1 better in episode 3 than in episode 1: the
    episodes' own intervals overlap, the paired gain is exactly 1 with a zero-width interval."""
    from meta_rl.evaluation.protocol import TrialResults
    from meta_rl.evaluation.report import markdown_table, summarize_method

    base = np.linspace(0.0, 20.0, 8)
    returns = np.stack([base, base + 0.5, base + 1.0], axis=1)
    zeros = np.zeros_like(returns)
    results = TrialResults(
        success=zeros,
        success_final=zeros,
        returns=returns,
        lengths=zeros + 10,
        task_index=np.arange(8),
        seed_index=np.zeros(8, dtype=int),
        physics_errors=0,
    )
    m = summarize_method(
        "m", "agent", None, results, confidence_level=0.95, num_bootstrap=500, bootstrap_seed=0
    )
    first, last = m.curves["return"][0], m.curves["return"][-1]
    assert last.ci_low < first.ci_high  # unpaired, the rise is lost in the task spread
    g = m.gains["return"]
    assert g.mean == pytest.approx(1.0) and g.ci_low == pytest.approx(1.0)
    assert g.ci_high == pytest.approx(1.0) and g.n == 8
    assert m.gains["success"].mean == 0.0
    assert "gain k=3 - k=1" in markdown_table([m]) and "+1.0 [+1.0, +1.0]" in markdown_table([m])


def test_methods_are_compared_with_the_agent_trial_by_trial() -> None:
    """Two methods on tasks of very different difficulty, the ablation exactly 0.5 below the
    agent on every trial: the paired difference is -0.5 with a zero-width interval while the
    methods' own intervals overlap; the agent is the reference and is not compared."""
    from meta_rl.evaluation.protocol import TrialResults
    from meta_rl.evaluation.report import (
        MethodResult,
        attach_paired_differences,
        markdown_table,
        summarize_method,
    )

    base = np.linspace(0.0, 20.0, 8)
    agent_returns = np.stack([base, base + 1.0], axis=1)
    rng = np.random.default_rng(3)
    success = (rng.random((8, 2)) < 0.5).astype(float)
    flipped = success.copy()
    flipped[0, 1] = 1.0 - flipped[0, 1]  # one trial of episode 2 differs

    def method(name: str, kind: str, returns: np.ndarray, succ: np.ndarray) -> MethodResult:
        results = TrialResults(
            success=succ,
            success_final=succ,
            returns=returns,
            lengths=np.full_like(returns, 10),
            task_index=np.arange(8),
            seed_index=np.zeros(8, dtype=int),
            physics_errors=0,
        )
        return summarize_method(
            name, kind, None, results, confidence_level=0.95, num_bootstrap=500, bootstrap_seed=0
        )

    baseline = method("baseline", "other", agent_returns - 3.0, success)
    agent = method("agent", "agent", agent_returns, success)
    ablation = method("ablation", "ablation", agent_returns - 0.5, flipped)
    ref = attach_paired_differences(
        [baseline, agent, ablation], confidence_level=0.95, num_bootstrap=500, bootstrap_seed=0
    )
    assert ref is agent and agent.reference is None and agent.vs_reference == {}
    assert ablation.reference == "agent" and baseline.reference == "agent"
    for k in (0, 1):
        d = ablation.vs_reference["return"][k]
        assert d.mean == pytest.approx(-0.5) and d.ci_low == pytest.approx(-0.5)
        assert d.ci_high == pytest.approx(-0.5) and d.n == 8
    own = ablation.curves["return"][1], agent.curves["return"][1]
    assert own[0].ci_high > own[1].ci_low  # unpaired, the difference is lost in the spread
    assert baseline.vs_reference["return"][0].mean == pytest.approx(-3.0)
    diff = ablation.vs_reference["success"]
    assert diff[0].mean == 0.0 and diff[1].mean == pytest.approx((flipped - success)[0, 1] / 8)
    table = markdown_table([baseline, agent, ablation])
    assert "paired difference to agent" in table and "| ablation - agent |" in table
    assert "| agent - agent |" not in table
    # Without an agent nothing is compared.
    alone = method("alone", "other", agent_returns, success)
    assert (
        attach_paired_differences(
            [alone], confidence_level=0.95, num_bootstrap=10, bootstrap_seed=0
        )
        is None
    )
    assert alone.reference is None and "paired difference" not in markdown_table([alone])


def test_protocol_calls_the_agent_in_order() -> None:
    agent = ScriptedAdaptiveAgent()
    _run(agent, num_tasks=2, num_seeds=1, num_episodes=3)
    # begin once, then per episode 10 observed steps and one end_episode.
    expected = ["begin"] + (["observe"] * 10 + ["end"]) * 3
    assert agent.calls == expected


def test_same_seeds_give_the_same_trials_and_returns_match_a_hand_rollout() -> None:
    _, a = _run(StillAgent())
    tasks, b = _run(StillAgent())
    np.testing.assert_array_equal(a.returns, b.returns)
    # A still agent stays at its start x0 (|x0| <= 0.02): the return is -10 |goal - x0|.
    goals = np.array([t.goal for t in tasks] * 2)
    np.testing.assert_allclose(-a.returns[:, 0] / 10, np.abs(goals), atol=0.021)
    assert a.success.sum() == 0 and a.success_final.sum() == 0


def test_env_of_the_wrong_size_is_refused() -> None:
    env = make_eval_env(TOY, 3, seed=0)
    try:
        with pytest.raises(ValueError, match=r"num_tasks \* num_seeds \* rollouts_per_trial = 4"):
            run_trials(
                StillAgent(),
                env,
                num_tasks=2,
                num_seeds=2,
                num_episodes=1,
                deterministic=True,
                env_seed=0,
                progress=False,
            )
    finally:
        env.close()


def test_a_split_without_tasks_is_a_clear_error(tmp_path: Path) -> None:
    cfg = EvalConfig(num_tasks=2, num_seeds=1, num_episodes=1, wandb_mode="disabled")
    with pytest.raises(ValueError, match=r"split 'test' of 'metarl-toy/Reach1D-v0' has no tasks"):
        evaluate_methods(
            [Method("still", StillAgent())],
            env_id=TOY,
            cfg=cfg,
            out_dir=tmp_path,
            env_kwargs={"empty_splits": ("test",)},
        )


def test_duplicate_method_names_are_refused(tmp_path: Path) -> None:
    cfg = EvalConfig(num_tasks=1, num_seeds=1, num_episodes=1, wandb_mode="disabled")
    with pytest.raises(ValueError, match=r"names must be unique"):
        evaluate_methods(
            [Method("a", StillAgent()), Method("a", StillAgent())],
            env_id=TOY,
            cfg=cfg,
            out_dir=tmp_path,
        )


def _check_png(path: Path) -> None:
    img = imageio.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 5.0  # not blank


def _check_mp4(path: Path, min_frames: int) -> list[np.ndarray]:
    with imageio.get_reader(path, format="FFMPEG") as reader:  # type: ignore[attr-defined]
        frames = [np.asarray(f) for f in reader.iter_data()]  # type: ignore[attr-defined]
    assert len(frames) >= min_frames
    assert all(f.std() > 5.0 for f in frames)  # every frame shows something
    return frames


def _check_wandb_run(run_dir: Path, keys: list[str]) -> None:
    # W&B's offline transaction log stores metric names verbatim; media are copied beside it.
    (log,) = run_dir.glob("*.wandb")
    data = log.read_bytes()
    for key in keys:
        assert key.encode() in data, key
    assert list((run_dir / "files" / "media" / "videos").rglob("*.mp4"))
    assert list((run_dir / "files" / "media" / "images").rglob("*.png"))


def test_evaluate_methods_writes_every_output(tmp_path: Path) -> None:
    cfg = EvalConfig(
        num_tasks=3, num_seeds=2, num_episodes=3, num_videos=1, num_bootstrap=200, video_fps=10
    )
    report = evaluate_methods(
        [
            Method("scripted", ScriptedAdaptiveAgent(), kind="agent"),
            Method("still", StillAgent(), kind="zero_shot"),
        ],
        env_id=TOY,
        cfg=cfg,
        out_dir=tmp_path / "eval",
        wandb_root=tmp_path,
        wandb_project="metarl-test",
    )
    data = load_eval_json(tmp_path / "eval" / "eval.json")
    assert set(data) == EVAL_KEYS
    assert set(data["methods"]) == {"scripted", "still"}
    for entry in data["methods"].values():
        assert set(entry) == METHOD_KEYS
        assert [set(s) for s in entry["success"]] == [SUMMARY_KEYS] * 3
        assert np.asarray(entry["per_trial"]["success"]).shape == (6, 3)
    # The toy's initial position is drawn at reset: seeds give different trials.
    assert data["methods"]["still"]["seeds_identical"] is False
    scripted = data["methods"]["scripted"]["success"]
    assert scripted[0]["mean"] == 0.0 and scripted[2]["mean"] == 1.0
    gain = data["methods"]["scripted"]["gain"]
    assert set(gain) == {"success", "success_final", "return"}
    assert gain["success"]["mean"] == gain["success"]["ci_low"] == 1.0  # every trial: 0 -> 1
    assert data["methods"]["still"]["gain"]["success"]["mean"] == 0.0
    # The zero-shot control against the agent, trial by trial; the agent is the reference.
    assert data["methods"]["scripted"]["vs_reference"] == {}
    versus = data["methods"]["still"]["vs_reference"]
    assert versus["method"] == "scripted"
    still_s = np.asarray(data["methods"]["still"]["per_trial"]["success"])
    scripted_s = np.asarray(data["methods"]["scripted"]["per_trial"]["success"])
    assert [e["mean"] for e in versus["success"]] == pytest.approx(
        list((still_s - scripted_s).mean(0))
    )
    assert [set(e) for e in versus["return"]] == [SUMMARY_KEYS] * 3
    assert data["protocol"]["num_trials"] == 6
    assert [t["object"] for t in data["tasks"]] == [t.object_name for t in report.tasks]
    assert "| scripted |" in (tmp_path / "eval" / "eval.md").read_text()
    _check_png(tmp_path / "eval" / "adaptation_curve.png")
    _check_png(tmp_path / "eval" / "return_curve.png")
    (video,) = data["files"]["videos"]
    frames = _check_mp4(tmp_path / "eval" / video["path"], min_frames=11)
    assert frames[0].shape[1] > 2 * 256  # two clips side by side
    assert video["success"] == [False, True]
    run_dir = Path(data["files"]["wandb_run"])
    assert run_dir.parent == tmp_path / "wandb"
    _check_wandb_run(
        run_dir,
        ["eval/success@1", "eval/return@3", "eval/still/success@3", "eval/adaptation_curve"],
    )


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        evaluate_checkpoint(tmp_path / "no_such_run")
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in"):
        evaluate_checkpoint(tmp_path / "empty_run")


def test_evaluate_command_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meta_rl.cli import main

    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "metarl evaluate: error: checkpoint" in err and "Traceback" not in err
    assert main(["evaluate", "--checkpoint", str(tmp_path), "num_tasks=0"]) == 2
    assert "num_tasks" in capsys.readouterr().err


def test_eval_configs_load() -> None:
    from meta_rl.config import load_config

    root = Path(__file__).resolve().parent.parent / "configs" / "eval"
    files = sorted(root.glob("*.yaml"))
    assert files
    for path in files:
        cfg = load_config(EvalConfig, path)
        assert cfg.num_episodes >= 1
    assert json.dumps(load_config(EvalConfig, root / "default.yaml").num_episodes) == "5"


# --------------------------------------------------------------------------------------------
# End to end on a real checkpoint (MuJoCo reach, configs/smoke.yaml for one iteration: ~5 s).


@pytest.fixture(scope="module")
def reach_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from meta_rl.experiment import load_experiment
    from meta_rl.training.trainer import train

    root = tmp_path_factory.mktemp("runs")
    smoke = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
    cfg = load_experiment(smoke, [f"runs_dir={root}", "train.iterations=1"])
    assert cfg.env.id == "metarl/Reach-v0" and cfg.env.episode_steps == 10
    return train(cfg)


def test_evaluate_command_end_to_end_on_a_trained_checkpoint(
    reach_run: Path, tmp_path: Path
) -> None:
    from meta_rl.baselines.config import BaselineConfig, SB3PPOConfig
    from meta_rl.baselines.train import train_baseline
    from meta_rl.cli import main

    baseline = train_baseline(
        BaselineConfig(
            kind="multitask",
            env_id="metarl/Reach-v0",
            total_timesteps=64,
            n_envs=1,
            ppo=SB3PPOConfig(n_steps=64, batch_size=32, n_epochs=1),
            progress_bar=False,
        ),
        run_dir=tmp_path / "multitask",
    )
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(reach_run),
            "--config",
            str(Path(__file__).resolve().parent.parent / "configs" / "eval" / "smoke.yaml"),
            "--baseline",
            str(baseline),
            "scratch_ppo=true",
            "scratch.batch_size=25",
            "video_size=[160,120]",
            "progress_bar=false",
        ]
    )
    assert code == 0
    out = reach_run / "eval"
    data = load_eval_json(out / "eval.json")
    assert set(data) == EVAL_KEYS
    assert data["env_id"] == "metarl/Reach-v0" and data["split"] == "test"
    assert list(data["methods"]) == ["meta-agent", "zero-shot", "multitask-ppo", "scratch-ppo"]
    for entry in data["methods"].values():
        assert set(entry) == METHOD_KEYS
        assert len(entry["success"]) == 2  # K = 2 in configs/eval/smoke.yaml
        assert np.asarray(entry["per_trial"]["return"]).shape == (4, 2)
        per_trial = np.asarray(entry["per_trial"]["success"], dtype=float)  # (trials, K)
        assert set(np.unique(per_trial)) <= {0.0, 1.0}
        for k, s in enumerate(entry["success"]):  # each episode's mean is its trials' mean
            assert s["mean"] == pytest.approx(per_trial[:, k].mean())
            assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    assert data["methods"]["scratch-ppo"]["kind"] == "scratch"
    # Episodes as long as in training (configs/smoke.yaml: env.episode_steps = 10).
    assert data["protocol"]["episode_steps"] == 10
    assert np.asarray(data["methods"]["zero-shot"]["per_trial"]["return"]).shape == (4, 2)
    assert all(t["task"]["shape"] for t in data["tasks"])
    _check_png(out / "adaptation_curve.png")
    (video,) = data["files"]["videos"]
    frames = _check_mp4(out / video["path"], min_frames=11)  # the reset frame + 10 steps
    assert len(frames) == 11
    run_dir = Path(data["files"]["wandb_run"])
    assert run_dir.parent == reach_run / "wandb"
    _check_wandb_run(run_dir, ["eval/success@1", "eval/success@2", "eval/return@2", "eval/video/0"])


def test_real_checkpoint_errors_and_video_command(
    reach_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from envs.tasks import SPLITS, SplitSpec
    from meta_rl.baselines.config import BaselineConfig
    from meta_rl.baselines.train import train_baseline
    from meta_rl.cli import main

    quiet = {"num_tasks": 2, "num_seeds": 1, "num_episodes": 1, "num_videos": 0}
    cfg = EvalConfig(wandb_mode="disabled", progress_bar=False, **quiet)  # type: ignore[arg-type]
    # A checkpoint of another environment than the one asked for.
    with pytest.raises(ValueError, match=r"trained on 'metarl/Reach-v0'.*'metarl/Push-v0'"):
        evaluate_checkpoint(reach_run, cfg.replace(env_id="metarl/Push-v0"))
    # A baseline of another environment than the checkpoint's.
    push = train_baseline(
        BaselineConfig(kind="scratch", env_id="metarl/Push-v0"), run_dir=tmp_path / "push"
    )
    with pytest.raises(ValueError, match=r"baselines: .* trained on 'metarl/Push-v0'"):
        evaluate_checkpoint(reach_run, cfg.replace(baselines=(str(push),)))
    # A checkpoint whose networks do not fit the agent's code (e.g. written by older code).
    from meta_rl.checkpoint import load_checkpoint, locate, save_checkpoint

    payload = load_checkpoint(locate(reach_run).file)
    payload["networks"] = dict(list(payload["networks"].items())[1:])
    save_checkpoint(tmp_path / "old.pt", payload)
    with pytest.raises(ValueError, match=r"cannot be loaded by this version of the agent"):
        evaluate_checkpoint(tmp_path / "old.pt", cfg)
    # A test split with no objects in it.
    monkeypatch.setitem(SPLITS, "test", SplitSpec(shapes=(), size=(), mass=(), friction=()))
    with pytest.raises(ValueError, match=r"split 'test' of 'metarl/Reach-v0'"):
        evaluate_checkpoint(reach_run, cfg, out_dir=tmp_path / "never")
    monkeypatch.undo()

    mp4 = tmp_path / "one.mp4"
    code = main(
        [
            "video",
            "--checkpoint",
            str(reach_run),
            "--task-index",
            "1",
            "--episode",
            "2",
            "--out",
            str(mp4),
            "num_tasks=2",
            "video_size=[160,120]",
        ]
    )
    assert code == 0
    assert len(_check_mp4(mp4, min_frames=11)) == 11
    assert main(["video", "--checkpoint", str(reach_run), "--task-index", "-1"]) == 2


class MaskRecorder(StillAgent):
    """Records the ``mask`` that the protocol passes to agents that accept one."""

    def begin_trial(self, num_envs: int) -> None:
        super().begin_trial(num_envs)
        self.masks: list[np.ndarray] = []

    def observe(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        done: np.ndarray,
        mask: np.ndarray | None = None,
    ) -> None:
        assert mask is not None
        self.masks.append(mask.copy())


def test_episodes_cut_short_by_physics_errors_are_not_counted_past_their_end() -> None:
    tasks = sample_tasks(TOY, 4, "test", np.random.default_rng(0))
    diverging = np.array([t.goal > 0 for t in tasks])
    assert 0 < diverging.sum() < 4
    env = make_eval_env(TOY, 4, seed=0, env_kwargs={"split": "test", "diverge_above": 0.0})
    agent = MaskRecorder()
    try:
        set_env_tasks(env, tasks)
        res = run_trials(
            agent,
            env,
            num_tasks=4,
            num_seeds=1,
            num_episodes=2,
            deterministic=True,
            env_seed=0,
            progress=False,
        )
    finally:
        env.close()
    np.testing.assert_array_equal(res.lengths[:, 0], np.where(diverging, 3, 10))
    np.testing.assert_array_equal(res.lengths[:, 1], np.where(diverging, 3, 10))
    assert res.physics_errors == 2 * diverging.sum()
    # The masks: every row on for 3 steps, then only the rows still in their episode.
    masks = np.array(agent.masks[:10])
    assert masks[:3].all()
    np.testing.assert_array_equal(masks[3:], np.tile(~diverging, (7, 1)))


def test_scripts_are_thin_entry_points(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    missing = subprocess.run(
        [sys.executable, str(root / "scripts" / "evaluate.py"), "--checkpoint", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=root,
    )
    assert missing.returncode == 2
    assert "metarl evaluate: error: no checkpoint in" in missing.stderr
    helped = subprocess.run(
        [sys.executable, str(root / "scripts" / "render_video.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=root,
    )
    assert helped.returncode == 0 and "--task-index" in helped.stdout


class ThreadRecorder(StillAgent):
    """Records torch's thread count while it is being evaluated."""

    def begin_trial(self, num_envs: int) -> None:
        super().begin_trial(num_envs)
        self.threads = torch.get_num_threads()


def test_evaluation_runs_torch_on_the_configured_threads(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent = ThreadRecorder()
        cfg = EvalConfig(
            num_tasks=1, num_seeds=1, num_episodes=1, num_videos=0, wandb_mode="disabled"
        )
        evaluate_methods([Method("a", agent)], env_id=TOY, cfg=cfg, out_dir=tmp_path)
        assert agent.threads == 1  # the default: small networks, one thread
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(before)


def test_wandb_mode_comes_from_the_environment_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_rl.evaluation.wandb_log import resolve_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode("online") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("offline") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode("online") == "offline"
    monkeypatch.setenv("WANDB_MODE", "sideways")
    with pytest.raises(ValueError, match=r"wandb_mode: got 'sideways'"):
        resolve_mode("offline")


def test_episode_steps_cut_every_episode_like_the_trainer() -> None:
    tasks = sample_tasks(TOY, 2, "test", np.random.default_rng(0))
    env = make_eval_env(TOY, 2, seed=0, env_kwargs={"split": "test"})
    agent = ScriptedAdaptiveAgent()
    try:
        set_env_tasks(env, tasks)
        res = run_trials(
            agent,
            env,
            num_tasks=2,
            num_seeds=1,
            num_episodes=2,
            deterministic=True,
            env_seed=0,
            progress=False,
            episode_steps=4,
        )
    finally:
        env.close()
    np.testing.assert_array_equal(res.lengths, 4)
    assert agent.calls == ["begin"] + (["observe"] * 4 + ["end"]) * 2


def test_a_video_that_cannot_be_rendered_is_skipped_and_the_results_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gymnasium as gym

    from meta_rl.evaluation.toy import ToyReachEnv

    def no_frames(self: ToyReachEnv) -> None:
        raise gym.error.DependencyNotInstalled("pygame is not installed")

    monkeypatch.setattr(ToyReachEnv, "render", no_frames)
    cfg = EvalConfig(
        num_tasks=3,
        num_seeds=1,
        num_episodes=2,
        num_videos=2,
        num_bootstrap=100,
        wandb_mode="disabled",
    )
    with pytest.warns(UserWarning, match=r"video of task 0 skipped .*pygame is not installed"):
        evaluate_methods([Method("still", StillAgent())], env_id=TOY, cfg=cfg, out_dir=tmp_path)
    data = load_eval_json(tmp_path / "eval.json")
    assert data["files"]["videos"] == []
    assert [v["task_index"] for v in data["files"]["videos_skipped"]] == [0, 1]
    assert data["methods"]["still"]["distinct_trials"] == 3
    assert (tmp_path / "eval.md").is_file() and (tmp_path / "adaptation_curve.png").is_file()


def test_reports_state_the_distinct_trials_when_seeds_are_identical() -> None:
    from meta_rl.evaluation.protocol import TrialResults
    from meta_rl.evaluation.report import (
        MethodResult,
        identical_seeds_note,
        summarize_method,
        trials_text,
    )

    def method(name: str, returns: np.ndarray) -> MethodResult:
        ones = np.ones_like(returns)
        results = TrialResults(
            success=ones, success_final=ones, returns=returns, lengths=ones,
            task_index=np.arange(6) % 2, seed_index=np.arange(6) // 2, physics_errors=0,
        )  # fmt: skip
        return summarize_method(
            name, "agent", None, results, confidence_level=0.9, num_bootstrap=100, bootstrap_seed=0
        )

    same = method("same", np.array([[1.0], [2.0]] * 3))  # 2 tasks x 3 identical seeds
    varied = method("varied", np.arange(6.0).reshape(6, 1))
    assert same.distinct_trials == 2 and varied.distinct_trials == 6
    assert trials_text([same], 2, 3) == "2 tasks x 3 seeds (identical seeds: 2 distinct trials)"
    assert trials_text([same, varied], 2, 3) == "2 tasks x 3 seeds"
    note = identical_seeds_note([same, varied], 2, 3)
    assert "identical trials for same: 2 distinct trials, not 6" in note
    assert identical_seeds_note([varied], 2, 3) == ""


def test_an_agent_trained_without_context_is_evaluated_without_it(tmp_path: Path) -> None:
    """``encoder.use_context: false`` (the revealed rung, MAML-only): the encoder still gets ELBO
    steps, but the policy only ever saw the prior, so evaluation must not run the encoder:
    the meta-agent and its zero-shot control then act alike (before the fix the evaluation ran
    the encoder and fed the policy beliefs it had never seen)."""
    from meta_rl.checkpoint import locate
    from meta_rl.evaluation.runner import load_meta_agent
    from meta_rl.experiment import load_experiment
    from meta_rl.training.trainer import train

    smoke = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
    overrides = [f"runs_dir={tmp_path}", "train.iterations=1", "encoder.use_context=false"]
    run = train(load_experiment(smoke, overrides))
    assert load_meta_agent(locate(run).file, "cpu").use_context is False
    cfg = EvalConfig(
        num_tasks=3, num_seeds=1, num_episodes=2, num_videos=0, zero_shot=True,
        wandb_mode="disabled", progress_bar=False,
    )  # fmt: skip
    evaluate_checkpoint(run, cfg, out_dir=tmp_path / "eval")
    methods = load_eval_json(tmp_path / "eval" / "eval.json")["methods"]
    assert methods["meta-agent"]["per_trial"] == methods["zero-shot"]["per_trial"]


def test_adapted_videos_film_the_tasks_that_failed_first_and_succeeded_last() -> None:
    """``video_tasks``: ``first`` films tasks 0, 1, ...; ``adapted`` first the tasks whose trial
    failed in episode 1 and succeeded in episode K (any seed), then the first others."""
    from types import SimpleNamespace

    from meta_rl.evaluation.runner import _filmed_tasks

    success = np.array([[1, 1, 1], [0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1]])
    results = SimpleNamespace(task_index=np.array([0, 1, 2, 3, 4, 3]), metric=lambda name: success)
    summary = SimpleNamespace(results=results)
    assert _filmed_tasks(summary, 5, 2, "first") == [0, 1]  # type: ignore[arg-type]
    assert _filmed_tasks(summary, 5, 2, "adapted") == [2, 3]  # type: ignore[arg-type]
    assert _filmed_tasks(summary, 5, 4, "adapted") == [2, 3, 0, 1]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="video_tasks"):
        EvalConfig(video_tasks="best")
