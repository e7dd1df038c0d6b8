"""Full agent vs its ablations on push with hidden goals (a short CPU run, one table)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from meta_rl.checkpoint import load_checkpoint
from meta_rl.config import load_config
from meta_rl.evaluation.ablations import (
    ABLATION_CONFIGS,
    ablation_pairs,
    bench_ablations,
    evaluate_ablations,
    paired_table,
    pool_paired_differences,
    pool_training_seeds,
    seeds_table,
)
from meta_rl.evaluation.config import EvalConfig
from meta_rl.experiment import load_experiment
from meta_rl.training.trainer import train

if TYPE_CHECKING:
    from conftest import Margins

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

# Small enough for the three runs together to stay within a few minutes on a 2-core CPU.
SHORT = (
    "env.tasks_per_batch=8",
    "env.eval_tasks=16",
    "env.episode_steps=50",
    "policy.hidden=[64, 64]",
    "encoder.hidden_size=32",
    "task_model.hidden=[64]",
    "ppo.epochs=2",
    "ppo.minibatches=2",
    "ppo.lr=0.001",
    "train.device=cpu",
)


def test_ablation_configs_switch_the_parts() -> None:
    cfgs = {n: load_experiment(ROOT / "configs" / p) for n, p in ABLATION_CONFIGS.items()}
    assert cfgs["full"].maml.enabled and cfgs["full"].encoder.use_context
    assert not cfgs["context_only"].maml.enabled and cfgs["context_only"].encoder.use_context
    assert cfgs["maml_only"].maml.enabled and not cfgs["maml_only"].encoder.use_context
    assert cfgs["maml_only"].task_model.updates_per_iteration == 0
    for cfg in cfgs.values():
        assert cfg.env.id == "metarl/Push-v0" and not cfg.env.kwargs.get("reveal_task", False)


def test_ablation_pairs_the_first_agent_with_each_other_and_each_with_its_controls() -> None:
    evaluated = ["full", "full zero-shot", "ctx", "ctx zero-shot", "ctx no-refine", "ctx2"]
    assert ablation_pairs(["full", "ctx", "ctx2"], evaluated) == {
        "full - ctx": (["full"], ["ctx"]),
        "full - ctx2": (["full"], ["ctx2"]),
        "full - full zero-shot": (["full"], ["full zero-shot"]),
        "ctx - ctx zero-shot": (["ctx"], ["ctx zero-shot"]),
        "ctx - ctx no-refine": (["ctx"], ["ctx no-refine"]),
    }
    assert ablation_pairs(["full"], ["full"]) == {}


@pytest.mark.slow
def test_full_agent_and_ablations_on_push(
    tmp_path: Path, learning_seed: int, margins: Margins
) -> None:
    summary = bench_ablations(
        tmp_path,
        iterations=60,
        eval_every=2,  # the first evaluation (iteration 2) is of a barely trained agent
        config_dir=ROOT / "configs",
        overrides=(*SHORT, f"train.seed={learning_seed}"),
        eval_cfg=load_config(
            EvalConfig,
            ROOT / "configs" / "eval" / "ablations.yaml",
            ["num_tasks=6", "num_bootstrap=200", "progress_bar=false"],
        ),
        jobs=2,  # two agents train at once, each in its own process
    )
    results = summary["ablations"]
    assert list(results) == ["full", "context_only", "maml_only"]
    print("\n" + summary["table"])  # the comparison table (pytest -s shows it)
    for name, r in results.items():
        assert len(r["success"]) == len(r["return"]) == 3, name
        # Each episode's in-loop success is a share of the run's 16 held-out trials.
        assert all(math.isclose(v * 16, round(v * 16), abs_tol=1e-9) for v in r["success"]), name
        assert all(0.0 <= v <= 1.0 for v in r["success"]), name
        assert all(math.isfinite(v) for v in r["return"]), name
        assert r["env_steps"] == 60 * 8 * 3 * 50, name
    # The MAML agents learned their step sizes; the context-only agent has none.
    for name in ("full", "maml_only"):
        run = Path(results[name]["run_dir"])
        nets = load_checkpoint(run / "checkpoints" / "ckpt_00000060.pt")["networks"]
        sizes = [v for k, v in nets.items() if k.startswith("maml.log_step_sizes.")]
        initial = math.log(load_experiment(ROOT / "configs" / ABLATION_CONFIGS[name]).maml.inner_lr)
        assert sizes and any(not torch.allclose(v, torch.full_like(v, initial)) for v in sizes)
    nets = load_checkpoint(
        Path(results["context_only"]["run_dir"]) / "checkpoints" / "ckpt_00000060.pt"
    )["networks"]
    assert not any(k.startswith("maml.") for k in nets)
    # Learning, not only running: averaged over the three agents, the held-out return of the
    # last episode of a trial rose from the first evaluation (iteration 2) to the last.
    gain = [r["return"][-1] - r["first_eval_return"][-1] for r in results.values()]
    first = [r["first_eval_return"][-1] for r in results.values()]
    print("gain", gain, "first", first)
    margins(
        "push_ablations_learn",
        learning_seed,
        {"mean_return_gain_over_first": (sum(gain) / abs(sum(first)), 0.05)},
    )
    assert (tmp_path / "ablations.md").read_text().startswith("| agent |")
    # One evaluation of every agent and its zero-shot control on the same held-out tasks.
    names = ["full", "context_only", "maml_only"]
    assert list(summary["eval"]) == [n for name in names for n in (name, f"{name} zero-shot")]
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    per_task = {}  # method -> (tasks, 3): each task's success per episode, its seeds averaged
    for name, curves in summary["eval"].items():
        trials = report["methods"][name]["per_trial"]
        success = np.asarray(trials["success"], dtype=float)  # (trials, K) of 0/1
        assert set(np.unique(success)) <= {0.0, 1.0}, name
        assert [c["mean"] for c in curves["success"]] == pytest.approx(success.mean(0)), name
        for c in curves["success"]:
            assert c["ci_low"] <= c["mean"] <= c["ci_high"], name
        tasks = np.asarray(trials["task_index"])
        per_task[name] = np.stack([success[tasks == t].mean(0) for t in range(6)])
    # The comparison the module is about: the full agent against each ablation, and every
    # agent against its zero-shot control, paired per task (the same tasks and env seeds).
    assert list(summary["paired"]) == [
        "full - context_only",
        "full - maml_only",
        *(f"{n} - {n} zero-shot" for n in names),
    ]
    for label, p in summary["paired"].items():
        a, b = p["a"][0], p["b"][0]
        expected = (per_task[a] - per_task[b]).mean(0)
        assert [d["mean"] for d in p["difference"]] == pytest.approx(expected), label
    assert (tmp_path / "paired.md").read_text().startswith("| paired difference |")
    assert report["protocol"]["deterministic"] is False and len(report["tasks"]) == 6
    assert report["protocol"]["env_kwargs"] == {"side_goals": 0.1, "push_target": "inward"}
    assert summary["jobs"] == 2
    assert "full zero-shot" in summary["eval_table"]
    assert (tmp_path / "eval" / "adaptation_curve.png").stat().st_size > 0
    assert len(list((tmp_path / "eval" / "videos").glob("*.mp4"))) == 1


def _tiny_run(tmp_path: Path, name: str, *overrides: str) -> Path:
    cfg = load_experiment(
        None,
        [
            "env.tasks_per_batch=2",
            "env.eval_tasks=2",
            "env.episodes_per_trial=2",
            "env.episode_steps=5",
            "train.iterations=1",
            "train.device=cpu",
            "policy.hidden=[8]",
            "logging.wandb_mode=disabled",
            "logging.progress_bar=false",
            f"runs_dir={tmp_path}",
            f"experiment={name}",
            *overrides,
        ],
    )
    return train(cfg)


def test_evaluate_ablations_refuses_runs_of_different_envs(tmp_path: Path) -> None:
    a = _tiny_run(tmp_path, "a", "env.id=metarl/Push-v0", "env.kwargs={goal_sector: 45}")
    b = _tiny_run(tmp_path, "b", "env.id=metarl/Push-v0")
    cfg = EvalConfig(num_tasks=2, num_seeds=1, num_episodes=2, num_videos=0, wandb_mode="disabled")
    with pytest.raises(
        ValueError, match=r"run_dirs: 'b' was trained on 'metarl/Push-v0' with \{\}"
    ):
        evaluate_ablations({"a": a, "b": b}, cfg, tmp_path / "eval")
    with pytest.raises(ValueError, match="run_dirs: need at least one trained run"):
        evaluate_ablations({}, cfg, tmp_path / "eval")


def test_bench_ablations_refuses_bad_jobs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"jobs: got 0; allowed: an integer >= 1"):
        bench_ablations(tmp_path, jobs=0)


def test_bench_train_compare_evaluates_trained_runs_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs trained apart (another seed, several rollouts per task) in one table; real physics,
    the filmed agent adapting on two rollouts per task."""
    from meta_rl.cli import main

    push = ("env.id=metarl/Push-v0", "env.kwargs={side_goals: 0.1, push_target: inward}")
    maml = _tiny_run(
        tmp_path, "maml", *push, "maml.enabled=true", "maml.rollouts_per_task=2", "train.seed=1"
    )
    plain = _tiny_run(tmp_path, "plain", *push)
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(
        "num_tasks: 5\nnum_seeds: 1\nnum_episodes: 2\nnum_videos: 1\nnum_bootstrap: 100\n"
        "video_size: [96, 96]\nwandb_mode: disabled\nprogress_bar: false\n"
    )
    out = tmp_path / "cmp"
    argv = ["bench-train", "--eval-config", str(cfg), "--out", str(out)]
    # Two runs under one name: training seeds of one configuration (here the same run twice).
    # A third configuration, "again", is the first's run once more: paired with it, run by run.
    compare = [
        *("--compare", f"maml={maml}", "--compare", f"plain={plain},{plain}"),
        *("--compare", f"again={maml}"),
    ]
    assert main([*argv, *compare, "num_tasks=2"]) == 0  # an override of the protocol
    data = json.loads((out / "eval" / "eval.json").read_text())
    assert data["protocol"]["num_tasks"] == 2
    assert list(data["methods"]) == [
        "maml",
        "maml zero-shot",
        "plain #0",
        "plain #0 zero-shot",
        "plain #1",
        "plain #1 zero-shot",
        "again",
        "again zero-shot",
    ]
    assert (out / "eval" / "seeds.png").stat().st_size > 0
    seeds = json.loads((out / "eval" / "seeds.json").read_text())
    assert list(seeds) == [
        "maml",
        "plain",
        "again",
        "maml zero-shot",
        "plain zero-shot",
        "again zero-shot",
    ]
    assert seeds["plain"]["seeds"] == 2 and seeds["maml"]["seeds"] == 1
    for k in range(2):  # the pooled curve of a run and its copy is the run's own
        assert seeds["plain"]["success"][k]["mean"] == pytest.approx(
            data["methods"]["plain #0"]["success"][k]["mean"]
        )
    # Two rollouts per trial for the MAML agent and its control: success in steps of 1/2.
    for name in ("maml", "maml zero-shot"):
        success = [v for row in data["methods"][name]["per_trial"]["success"] for v in row]
        assert all(v in (0.0, 0.5, 1.0) for v in success)
    # Each configuration minus its control, paired: a run and its copy give the run's own.
    paired = json.loads((out / "eval" / "paired.json").read_text())
    # The first configuration against each other one of as many runs ("plain" has two): the
    # same networks on the same tasks and seeds differ by nothing.
    assert list(paired) == [
        "maml - again",
        "maml - zero-shot",
        "plain - zero-shot",
        "again - zero-shot",
    ]
    assert (paired["maml - again"]["a"], paired["maml - again"]["b"]) == (["maml"], ["again"])
    assert [d["mean"] for d in paired["maml - again"]["difference"]] == [0.0, 0.0]
    assert paired["plain - zero-shot"]["b"] == ["plain #0 zero-shot", "plain #1 zero-shot"]
    for k in range(2):
        own = (
            data["methods"]["plain #0"]["success"][k]["mean"]
            - data["methods"]["plain #0 zero-shot"]["success"][k]["mean"]
        )
        assert paired["plain - zero-shot"]["difference"][k]["mean"] == pytest.approx(own)
    assert len(data["files"]["videos"]) == 1
    printed = capsys.readouterr().out
    assert "| maml zero-shot |" in printed and "| plain - zero-shot | " in printed
    assert main([*argv, "--compare", "nameless"]) == 2
    allowed = "allowed: NAME=RUN_DIR[,RUN_DIR...]"
    assert f"--compare: got 'nameless'; {allowed}" in capsys.readouterr().err
    assert main([*argv, "--compare", f"x={plain},"]) == 2
    assert main(["bench-train", "--compare", f"maml={maml}"]) == 2
    assert "--compare needs --eval-config" in capsys.readouterr().err


def _report(successes: dict[str, Sequence[Sequence[float]]], num_seeds: int = 1):  # type: ignore[no-untyped-def]
    """An evaluation report whose methods have the given per-trial success (trials x K), the
    trials ordered task by task, ``num_seeds`` env seeds per task."""
    import numpy as np

    from meta_rl.evaluation.protocol import TrialResults
    from meta_rl.evaluation.report import EvalReport, MethodResult

    methods = []
    for name, rows in successes.items():
        x = np.asarray(rows, dtype=float)
        n = x.shape[0]
        results = TrialResults(
            success=x,
            success_final=x,
            returns=x,
            lengths=np.full_like(x, 10),
            task_index=np.arange(n) // num_seeds,
            seed_index=np.arange(n) % num_seeds,
            physics_errors=0,
        )
        methods.append(MethodResult(name, "agent", None, results, curves={}, gains={}))
    return EvalReport("e", "test", None, [], methods, {})


def test_paired_differences_subtract_seed_by_seed_over_the_same_tasks() -> None:
    """pool_paired_differences: per task and training seed, A's success minus B's (env seeds
    averaged), pooled over tasks and seeds; each seed's own mean difference beside it."""
    a0 = [[0, 1], [1, 1], [1, 1], [0, 1]]  # 2 tasks x 2 env seeds, K = 2
    b0 = [[0, 0], [1, 0], [1, 1], [0, 0]]
    a1 = [[1, 1], [1, 1], [0, 0], [0, 1]]
    b1 = [[1, 0], [1, 1], [0, 0], [0, 0]]
    report = _report({"a0": a0, "b0": b0, "a1": a1, "b1": b1, "short": a0[:2]}, num_seeds=2)
    out = pool_paired_differences(
        report, {"a - b": (["a0", "a1"], ["b0", "b1"])}, num_resamples=500
    )
    d = out["a - b"]
    # Episode 1: every pair equal -> 0. Episode 2, seed 0: tasks (1 - 0, 1 - 0.5) -> 0.75;
    # seed 1: tasks (1 - 0.5, 0.5 - 0) -> 0.5.
    assert d["per_seed_difference"] == [pytest.approx([0.0, 0.0]), pytest.approx([0.75, 0.5])]
    assert d["difference"][1]["mean"] == pytest.approx(0.625)
    assert d["difference"][0]["ci_low"] == d["difference"][0]["ci_high"] == 0.0
    assert "| a - b | +0.00 [+0.00, +0.00] (+0.00, +0.00) | +0.62 [" in paired_table(out)
    with pytest.raises(ValueError, match="'a0' and 'short' were evaluated on different tasks"):
        pool_paired_differences(report, {"x": (["a0"], ["short"])})
    with pytest.raises(ValueError, match="pairs: 'x' pairs 2 runs with 1"):
        pool_paired_differences(report, {"x": (["a0", "a1"], ["b0"])})


def test_pooling_training_seeds_averages_tasks_and_seeds_and_keeps_each_seed() -> None:
    """pool_training_seeds: env seeds are averaged within a task, then the mean over tasks and
    training seeds, its two-stage interval, each seed's mean and the paired gain; a group of
    runs evaluated on other tasks or an empty group is refused."""
    a = [[0, 1], [0, 1], [1, 1], [1, 1], [0, 0], [0, 1], [1, 1], [0, 1]]  # 4 tasks x 2 env seeds
    b = [[1, 1], [1, 1], [0, 1], [0, 1], [0, 0], [0, 0], [1, 1], [1, 1]]
    report = _report({"a": a, "b": b, "short": a[:4]}, num_seeds=2)
    pooled = pool_training_seeds(report, {"cfg": ["a", "b"]}, num_resamples=500)["cfg"]
    assert pooled["seeds"] == 2 and pooled["members"] == ["a", "b"]
    # Seed a, episode 1: tasks 0, 1, 0, 0.5 -> 0.375; seed b: 1, 0, 0, 1 -> 0.5.
    assert pooled["per_seed_success"][0] == pytest.approx([0.375, 0.5])
    assert pooled["per_seed_success"][1] == pytest.approx([0.875, 0.75])
    assert pooled["success"][1]["mean"] == pytest.approx(0.8125)
    assert pooled["per_seed_gain"] == pytest.approx([0.5, 0.25])
    assert pooled["gain"]["mean"] == pytest.approx(0.375)
    for s in (*pooled["success"], pooled["gain"]):
        assert s["ci_low"] <= s["mean"] <= s["ci_high"]
        assert s["n"] == 8  # 4 tasks x 2 training seeds
    assert pooled["success"][0]["ci_low"] < pooled["success"][0]["ci_high"]
    table = seeds_table({"cfg": pooled})
    assert "| cfg | 2 | 0.44 [" in table and "(0.38, 0.50)" in table and "(+0.50, +0.25)" in table
    with pytest.raises(ValueError, match="'cfg' were evaluated on different tasks"):
        pool_training_seeds(report, {"cfg": ["a", "short"]})
    with pytest.raises(ValueError, match="groups: 'cfg' names no evaluated method"):
        pool_training_seeds(report, {"cfg": []})
