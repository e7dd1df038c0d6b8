"""Physics fingerprint: the scripted oracles' episodes match a recorded reference.

The learning proofs and every published figure rest on the simulator's behaviour. A MuJoCo release
that changes contacts, friction or the mocap weld enough to matter moves these numbers first, so
this test (run on every supported MuJoCo by ``scripts/test_matrix.sh``) finds such a release
before users do. Tolerances admit the solver noise seen between the supported releases
(``docs/install.md``: pick-place under MuJoCo 3.3.0 vs 4.0.0 gave final positions within 1.1 cm,
returns within 15 % per task and 3.8 % on average). Per task, success must agree, the final object
position (reach: the gripper) lie within 2 cm and the return within 25 %; per env, the mean
final-position error must stay under 1 cm and the mean return within 7.5 %.

To re-record after a deliberate env change: ``METARL_RECORD_PHYSICS=1 python -m pytest
tests/test_physics.py`` (the file says which MuJoCo recorded it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mujoco
import numpy as np
import pytest

from envs.batched import make_batched
from envs.oracles import make_oracle
from envs.tasks import TaskDistribution

REFERENCE = Path(__file__).parent / "data" / "physics_reference.json"
CASES = {"metarl/Reach-v0": "reach", "metarl/Push-v0": "push", "metarl/PickPlace-v0": "pick_place"}
TASKS_PER_SPLIT = 6
POSITION_TOL, MEAN_POSITION_TOL, RETURN_RTOL, MEAN_RETURN_RTOL = 0.02, 0.01, 0.25, 0.075


def fingerprint(env_id: str) -> dict[str, list[float]]:
    """One oracle episode on fixed train and test tasks: success, final position, return."""
    variant = CASES[env_id]
    dist = TaskDistribution(variant)
    tasks = [
        *dist.sample(TASKS_PER_SPLIT, "train", np.random.default_rng(7)),
        *dist.sample(TASKS_PER_SPLIT, "test", np.random.default_rng(8)),
    ]
    env = make_batched(env_id, len(tasks), num_threads=1, reveal_task=True)
    try:
        env.set_tasks(tasks)
        obs, _ = env.reset(seed=0)
        oracle = make_oracle(env_id, env.obs_slices)
        key = "ee_pos" if variant == "reach" else "object_pos"
        success = np.zeros(len(tasks), dtype=bool)
        ret = np.zeros(len(tasks))
        for _ in range(env.max_episode_steps):
            obs, reward, _, _, info = env.step(oracle(obs))
            success |= info["success"] > 0
            ret += reward
        final = obs[:, env.obs_slices[key]]
    finally:
        env.close()
    return {
        "success": success.astype(float).tolist(),
        "final_pos": final.round(5).tolist(),
        "return": ret.round(4).tolist(),
    }


def test_physics_matches_the_reference() -> None:
    measured = {env_id: fingerprint(env_id) for env_id in CASES}
    if os.environ.get("METARL_RECORD_PHYSICS"):
        REFERENCE.parent.mkdir(exist_ok=True)
        payload = {"mujoco": mujoco.__version__, "episodes": measured}
        REFERENCE.write_text(json.dumps(payload, indent=1) + "\n")
        pytest.skip(f"recorded {REFERENCE} with mujoco {mujoco.__version__}")
    reference = json.loads(REFERENCE.read_text())
    where = f"mujoco {mujoco.__version__} vs the reference's {reference['mujoco']}"
    for env_id, ref in reference["episodes"].items():
        got = measured[env_id]
        assert got["success"] == ref["success"], f"{env_id}: oracle success changed ({where})"
        err = np.linalg.norm(np.array(got["final_pos"]) - np.array(ref["final_pos"]), axis=1)
        assert err.max() < POSITION_TOL, f"{env_id}: final positions moved {err.round(4)} ({where})"
        assert err.mean() < MEAN_POSITION_TOL, f"{env_id}: mean drift {err.mean():.4f} ({where})"
        np.testing.assert_allclose(
            got["return"], ref["return"], rtol=RETURN_RTOL, err_msg=f"{env_id} returns ({where})"
        )
        mean_rel = np.mean(got["return"]) / np.mean(ref["return"]) - 1
        assert abs(mean_rel) < MEAN_RETURN_RTOL, f"{env_id}: mean return {mean_rel:+.1%} ({where})"
