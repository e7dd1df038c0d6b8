#!/usr/bin/env bash
# Installs the toolkit with its dev tools into .venv and runs the lint, type and test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
# The tests run on one pytest-xdist worker per core (TEST_WORKERS, default auto; 0 runs them in
# this process): the learning proofs are single-threaded and take minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup_env.sh
install_toolkit ".[dev]"
export MUJOCO_GL="${MUJOCO_GL:-egl}" WANDB_MODE="${WANDB_MODE:-offline}"
python -m ruff check meta_rl envs scripts tests examples
python -m ruff format --check meta_rl envs scripts tests examples
python -m mypy
python -m pytest -q -ra --durations=15 -n "${TEST_WORKERS:-auto}" --dist loadgroup "$@"
