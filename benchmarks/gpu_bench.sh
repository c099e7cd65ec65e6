#!/usr/bin/env bash
# Training steps/s and peak GPU memory of the paper's crop sizes, official EmbedSeg 0.2.5 vs ours
# (plain, --amp, --compile), and the projected GPU-hours of config/config.yaml. Needs a CUDA GPU;
# --dry-run prints the plan anywhere. Options: bash benchmarks/gpu_bench.sh --help
#
#   bash benchmarks/official_env.sh         # once, for the official peer (.venv-official)
#   bash benchmarks/gpu_bench.sh [--steps 20] [--config config/config.yaml]
#
# PYTHON selects our environment's Python (default: .venv/bin/python of this repository).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
    echo "gpu_bench.sh: error: $PYTHON not found; run 'make venv' or set PYTHON to a Python with embedseg installed" >&2
    exit 2
fi
exec "$PYTHON" "$REPO/benchmarks/gpu_bench.py" "$@"
