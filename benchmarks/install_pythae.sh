#!/usr/bin/env bash
# Install pythae 0.1.2 into its own virtualenv (default /work/venv-pythae) for benchmarks/bench_train.py.
# torch is pinned to the same CPU build vaelab uses, so the comparison runs on the same kernels.
# Checked first with --dry-run: pythae 0.1.2 pulls no other torch. Usage: benchmarks/install_pythae.sh [VENV]
set -euo pipefail
VENV="${1:-${PYTHAE_VENV:-/work/venv-pythae}}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --dry-run torch==2.13.0 pythae==0.1.2 | grep -E "^Would install" | tee /dev/stderr \
  | grep -q "torch-2.13.0" || { echo "pythae would pull a different torch; not installing" >&2; exit 1; }
"$VENV/bin/pip" install torch==2.13.0 pythae==0.1.2
"$VENV/bin/python" -c "import pythae, torch; print('pythae', pythae.__version__ if hasattr(pythae, '__version__') else '0.1.2', 'torch', torch.__version__)"
