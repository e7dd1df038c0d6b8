#!/usr/bin/env bash
# The pick-place ladder's training runs, side by side on one machine with a wall-clock budget:
# each rung is one `metarl train` process on configs/pick_place_gpu.yaml with its own simulator
# threads, all sharing the GPU (or the CPU). Then `metarl evaluate` (or bench-train --compare)
# on the run dirs gives the held-out table (docs/pick_place.md).
#
#   bash scripts/pick_place_ladder.sh OUT_DIR [RUNGS]
#
#   RUNGS      space-separated rung names (default: "privileged privileged_no_rl_grad hidden revealed")
#   MINUTES    wall-clock training budget of every rung (default 25)
#   THREADS    simulator threads per rung (default: cores / number of rungs, at least 1)
#   SEED       train.seed (default 0)
#   PYTHON     the interpreter (default python)
#   EXTRA      more overrides for every rung (e.g. "env.tasks_per_batch=8 train.device=cpu")
#
# Each rung writes OUT_DIR/<rung>/ (a run dir) and OUT_DIR/<rung>.log.
set -euo pipefail
out="${1:?usage: bash scripts/pick_place_ladder.sh OUT_DIR [RUNGS]}"
rungs="${2:-privileged privileged_no_rl_grad hidden revealed}"
minutes="${MINUTES:-25}"
seed="${SEED:-0}"
n_rungs=$(wc -w <<<"$rungs")
threads="${THREADS:-$(($(nproc) / n_rungs))}"
[ "$threads" -ge 1 ] || threads=1
mkdir -p "$out"

rung_overrides() {
  case "$1" in
    # The meta-agent: hidden goal, privileged critic and task inference at training time.
    privileged) echo "" ;;
    # The same without RL gradients into the encoder: the belief learns from ELBO + inference.
    privileged_no_rl_grad) echo "encoder.rl_gradients=false" ;;
    # Every privileged piece off: the meta-agent as first shipped.
    hidden) echo "privileged.critic=false privileged.task_inference_weight=0.0" ;;
    # The upper bound: goal and object revealed in the observation, no context.
    revealed)
      echo "env.kwargs.reveal_task=true encoder.use_context=false privileged.critic=false" \
        "privileged.task_inference_weight=0.0"
      ;;
    critic_only) echo "privileged.task_inference_weight=0.0" ;;
    inference_only) echo "privileged.critic=false" ;;
    # privileged_no_rl_grad plus the information-gain reward for exploring (docs/privileged.md;
    # weight 200 swamped the task reward on CPU, docs/pick_place.md).
    info_gain) echo "encoder.rl_gradients=false privileged.info_gain_weight=20.0" ;;
    *)
      echo "unknown rung '$1'; allowed: privileged privileged_no_rl_grad hidden revealed" \
        "critic_only inference_only info_gain" >&2
      return 2
      ;;
  esac
}

pids=()
for rung in $rungs; do
  extra_rung=$(rung_overrides "$rung")
  # shellcheck disable=SC2086
  "${PYTHON:-python}" -m meta_rl train --config configs/pick_place_gpu.yaml --run-dir "$out/$rung" \
    experiment="pick_place_$rung" train.seed="$seed" train.max_minutes="$minutes" \
    env.num_threads="$threads" logging.progress_bar=false $extra_rung ${EXTRA:-} \
    >"$out/$rung.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
for rung in $rungs; do
  echo "== $rung: $(tail -n 1 "$out/$rung/metrics.jsonl" 2>/dev/null | head -c 600)"
done
exit "$status"
