#!/usr/bin/env bash
# Build .venv-official: the official EmbedSeg package (juglab, PyPI embedseg==0.2.5) as a
# benchmark peer, beside the CPU torch wheel our own .venv uses. Idempotent: a finished venv
# (marker file) is left alone; delete .venv-official to rebuild.
#
#   bash benchmarks/official_env.sh [VENV_DIR]      (default: .venv-official in the repo root)
#
# Why by hand: the package's declared dependencies pull jupyter and an unpinned torch (a
# multi-GB CUDA build); it needs tifffile<2024 (EmbedSeg.test imports the removed `imsave`)
# and its wheel unpacks its folders (models/, utils/, …) straight into site-packages, so
# `import EmbedSeg` fails until an `EmbedSeg` package of links points at them.
# stardist is installed without TensorFlow: only `stardist.matching` is used (AP benchmark).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-official}"
PYTHON="${PYTHON:-python3}"
MARKER="$VENV/.official-installed"

if [[ -f "$MARKER" ]]; then
    echo "official env ready: $VENV"
    exit 0
fi

"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q)
"${PIP[@]}" "torch==2.13.0"
# numba caps numpy; stardist's own dependencies (csbdeep, numba, …) include no TensorFlow.
"${PIP[@]}" "numpy>=1.26,<2.3" "numba>=0.60" scipy "scikit-image>=0.22" "tifffile<2024" \
    tqdm pandas matplotlib seaborn pycocotools colorspacious pillow psutil "stardist==0.9.2"
"${PIP[@]}" --no-deps "embedseg==0.2.5"

SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$SITE/EmbedSeg"
for entry in __init__.py train.py test.py criterions datasets models utils; do
    ln -sfn "../$entry" "$SITE/EmbedSeg/$entry"
done

"$VENV/bin/python" - <<'EOF'
import EmbedSeg.models, EmbedSeg.criterions, EmbedSeg.utils.utils, EmbedSeg.utils.generate_crops
import EmbedSeg.utils.test_time_augmentation, stardist.matching, torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
EOF
touch "$MARKER"
echo "official env ready: $VENV"
