#!/usr/bin/env bash
# The pick-place ladder's training runs, side by side on one machine with a wall-clock budget:
# each rung is one `metarl train` process on configs/pick_place_gpu.yaml with its own simulator
# threads, all sharing the GPU (or the CPU). Then `metarl evaluate` (or bench-train --compare)
# on the run dirs gives the held-out table (docs/notes/2026-12-02-pick-place.md).
#
#   bash scripts/pick_place_ladder.sh OUT_DIR [RUNGS]
#
#   RUNGS      space-separated rung names (default: "privileged privileged_no_rl_grad hidden revealed")
#   MINUTES    wall-clock training budget of every rung (default 25)
#   THREADS    simulator threads per rung (default: cores / number of rungs running together,
#              at least 1)
#   SEED       train.seed (default 0)
#   PYTHON     the interpreter (default python)
#   EXTRA      more overrides for every rung (e.g. "env.tasks_per_batch=8 train.device=cpu")
#   TEACHER    the teacher run of the teacher rungs (default OUT_DIR/revealed)
#   FREEZE     privileged.teacher_freeze_iterations of the teacher rung (default 20)
#
# Each rung writes OUT_DIR/<rung>/ (a run dir) and OUT_DIR/<rung>.log. The teacher rungs
# (teacher, teacher_imitation: students of the revealed rung, docs/privileged.md) run after the
# others have finished, since they start from the revealed rung's checkpoint, e.g.
#   bash scripts/pick_place_ladder.sh runs/ladder "revealed teacher teacher_imitation"
set -euo pipefail
out="${1:?usage: bash scripts/pick_place_ladder.sh OUT_DIR [RUNGS]}"
rungs="${2:-privileged privileged_no_rl_grad hidden revealed}"
minutes="${MINUTES:-25}"
seed="${SEED:-0}"
teacher="${TEACHER:-$out/revealed}"
freeze="${FREEZE:-20}"
mkdir -p "$out"

rung_overrides() {
  case "$1" in
    # The meta-agent: hidden goal, privileged critic and task inference at training time.
    privileged) echo "" ;;
    # The same without RL gradients into the encoder: the belief learns from ELBO + inference.
    privileged_no_rl_grad) echo "encoder.rl_gradients=false" ;;
    # Every privileged piece off: the meta-agent as first shipped.
    hidden) echo "privileged.critic=false privileged.task_inference_weight=0.0" ;;
    # The upper bound: goal and object revealed in the observation, no context (and so no
    # ELBO: with the context off the task model would train an encoder nothing reads).
    revealed)
      echo "env.kwargs.reveal_task=true encoder.use_context=false privileged.critic=false" \
        "privileged.task_inference_weight=0.0 task_model.updates_per_iteration=0"
      ;;
    critic_only) echo "privileged.task_inference_weight=0.0" ;;
    inference_only) echo "privileged.critic=false" ;;
    # privileged_no_rl_grad plus the information-gain reward for exploring (docs/privileged.md;
    # weight 200 swamped the task reward on CPU, docs/notes/2026-12-02-pick-place.md).
    info_gain) echo "encoder.rl_gradients=false privileged.info_gain_weight=20.0" ;;
    # Students of the revealed rung: its policy, fed the task features the head predicts from
    # the belief. FREEZE iterations of RMA's adaptation stage (only the encoder, the head and
    # the task model learn), then PPO fine-tunes the policy (docs/privileged.md). The policy's
    # own critic is the teacher's (trained), so no asymmetric critic; the encoder learns from
    # the ELBO and the task-inference loss only, the policy from PPO.
    teacher)
      echo "privileged.teacher=$teacher privileged.teacher_freeze_iterations=$freeze" \
        "privileged.critic=false encoder.rl_gradients=false"
      ;;
    # The same, frozen for good: imitation alone (what the RL stage adds is teacher minus this).
    teacher_imitation)
      echo "privileged.teacher=$teacher privileged.teacher_freeze_iterations=1000000000" \
        "privileged.critic=false encoder.rl_gradients=false"
      ;;
    *)
      echo "unknown rung '$1'; allowed: privileged privileged_no_rl_grad hidden revealed" \
        "critic_only inference_only info_gain teacher teacher_imitation" >&2
      return 2
      ;;
  esac
}

# Rungs side by side, sharing the machine's cores; 1 if any failed.
run_together() {
  local n threads rung extra_rung pids=() status=0
  n=$#
  threads="${THREADS:-$(($(nproc) / n))}"
  [ "$threads" -ge 1 ] || threads=1
  for rung in "$@"; do
    extra_rung=$(rung_overrides "$rung")
    # shellcheck disable=SC2086
    "${PYTHON:-python}" -m meta_rl train --config configs/pick_place_gpu.yaml \
      --run-dir "$out/$rung" experiment="pick_place_$rung" train.seed="$seed" \
      train.max_minutes="$minutes" env.num_threads="$threads" logging.progress_bar=false \
      $extra_rung ${EXTRA:-} >"$out/$rung.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || status=1
  done
  return "$status"
}

first=()
students=()
for rung in $rungs; do
  rung_overrides "$rung" >/dev/null # an unknown rung stops the ladder before anything runs
  case "$rung" in
    teacher | teacher_imitation) students+=("$rung") ;;
    *) first+=("$rung") ;;
  esac
done
status=0
if [ "${#first[@]}" -gt 0 ]; then
  run_together "${first[@]}" || status=1
fi
if [ "${#students[@]}" -gt 0 ]; then
  if [ -d "$teacher/checkpoints" ]; then
    run_together "${students[@]}" || status=1
  else
    echo "the teacher rungs need a teacher run with checkpoints in $teacher (the revealed" \
      "rung: run it first or with them, or set TEACHER)" >&2
    status=1
  fi
fi
for rung in $rungs; do
  echo "== $rung: $(tail -n 1 "$out/$rung/metrics.jsonl" 2>/dev/null | head -c 600)"
done
exit "$status"
