#!/usr/bin/env bash
# The supported-versions matrix: the env contract tests (Gymnasium and SB3 checkers, determinism,
# batched == single, oracles, the physics fingerprint) under the oldest supported MuJoCo, in its
# own environment (.venv-mujoco33, from requirements/mujoco33.lock). scripts/test.sh runs the
# whole suite under the locked newest; `.ci/run` runs both.
# Usage: bash scripts/test_matrix.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
export METARL_VENV="${METARL_MATRIX_VENV:-.venv-mujoco33}" METARL_STACK=mujoco33
source scripts/_setup_env.sh
install_toolkit "."
export MUJOCO_GL="${MUJOCO_GL:-egl}" WANDB_MODE="${WANDB_MODE:-offline}"
python -c "import mujoco; print('mujoco', mujoco.__version__)"
python -m pytest -q -ra -p no:cacheprovider tests/test_envs.py tests/test_batched.py \
  tests/test_oracles.py tests/test_tasks.py tests/test_physics.py "$@"
