#!/usr/bin/env bash
# Installs the toolkit into .venv and runs the main job on the default config: meta-train a small
# agent, evaluate it on unseen objects, write metrics, a plot and a video (W&B offline); then show
# the shipped pick-place meta-agent (pretrained/pick_place) on 200 unseen objects, into
# <run>/showcase/.
# Usage: bash scripts/demo.sh [config overrides, e.g. train.seed=1]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup_env.sh
install_toolkit "."
export WANDB_MODE="${WANDB_MODE:-offline}"
exec metarl run --config configs/default.yaml --showcase pretrained/pick_place "$@"
