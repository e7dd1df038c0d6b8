#!/usr/bin/env bash
# Installs the toolkit into .venv and runs the main job: train a teacher told the goal
# (configs/reach_teacher.yaml), then a student that finds hidden goals by acting on a learnt
# posterior (configs/default.yaml, docs/imitation.md); evaluate it on unseen objects, write
# metrics, a plot and a video (W&B offline); then show the shipped pick-place agent, the same
# recipe on the raw arm (pretrained/pick_place_particles), on 200 unseen objects, into
# <run>/showcase/.
# Usage: bash scripts/demo.sh [config overrides, e.g. train.seed=1]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup_env.sh
install_toolkit "."
export WANDB_MODE="${WANDB_MODE:-offline}"
exec metarl run --config configs/default.yaml --teacher-config configs/reach_teacher.yaml \
  --showcase pretrained/pick_place_particles "$@"
