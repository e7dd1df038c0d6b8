# Sourced by scripts/demo.sh and scripts/test.sh: a virtual environment with the toolkit.
# A CPU build of torch is installed first unless a CUDA GPU is present, because an unpinned
# `torch` pulls a multi-GB CUDA build.
install_toolkit() {
  local spec="$1"
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
  python -m pip install --quiet --upgrade pip
  if ! python -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      python -m pip install --quiet torch
    else
      python -m pip install --quiet "torch==2.13.0"
    fi
  fi
  python -m pip install --quiet -e "$spec"
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
