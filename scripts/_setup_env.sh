# Sourced by scripts/demo.sh and scripts/test.sh: a virtual environment with the toolkit, built
# from the locks in requirements/ (exact versions and hashes of every dependency, direct and
# transitive; `bash scripts/lock.sh` refreshes them). The CPU stack unless a CUDA GPU is present.
#
#   METARL_VENV   where the environment lives (default .venv); created when missing
#   METARL_STACK  cpu, cuda or mujoco33 (the CPU stack with the oldest supported MuJoCo, for
#                 scripts/test_matrix.sh); default: cuda when nvidia-smi sees a GPU, else cpu
#
# Installing the lock into an existing environment sets every locked package to its locked
# version. A stamp inside the environment skips the install when the locks have not changed.
install_toolkit() {
  local venv="${METARL_VENV:-.venv}"
  local stack="${METARL_STACK:-}"
  if [ -z "$stack" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      stack=cuda
    else
      stack=cpu
    fi
  fi
  local locks
  case "$stack" in
    cpu) locks="requirements/torch-cpu.txt requirements/cpu.lock" ;;
    cuda) locks="requirements/cuda.lock" ;;
    mujoco33) locks="requirements/torch-cpu.txt requirements/mujoco33.lock" ;;
    *) echo "METARL_STACK: got '$stack'; allowed: cpu, cuda, mujoco33" >&2; return 2 ;;
  esac
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  local stamp
  # shellcheck disable=SC2086
  stamp="$stack $(cat $locks pyproject.toml | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$venv/.metarl-lock" 2>/dev/null)" != "$stamp" ] || ! python -c "import meta_rl" 2>/dev/null; then
    if [ "$stack" != cuda ]; then
      # torch's +cpu build is not on PyPI: a local wheel (pip's find-links) or PyTorch's CPU index.
      python -m pip install --quiet --no-deps -r requirements/torch-cpu.txt 2>/dev/null ||
        python -m pip install --quiet --no-deps -r requirements/torch-cpu.txt \
          --extra-index-url https://download.pytorch.org/whl/cpu
      python -m pip install --quiet --require-hashes -r "${locks#* }"
    else
      python -m pip install --quiet --require-hashes -r requirements/cuda.lock
    fi
    # The toolkit itself, editable, on the locked setuptools: nothing unlocked is fetched.
    python -m pip install --quiet --no-deps --no-build-isolation -e .
    echo "$stamp" >"$venv/.metarl-lock"
  fi
  # Headless rendering: EGL through Mesa works on CPU-only machines; fall back to OSMesa.
  if [ -z "${MUJOCO_GL:-}" ]; then
    if python -c "import os; os.environ['MUJOCO_GL']='egl'; import mujoco; mujoco.GLContext(8, 8)" \
        >/dev/null 2>&1; then
      export MUJOCO_GL=egl
    else
      export MUJOCO_GL=osmesa
    fi
  fi
  export PYOPENGL_PLATFORM="$MUJOCO_GL"
}
