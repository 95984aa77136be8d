#!/usr/bin/env bash
# Gather, as wheels in .whl/ (git-ignored), the pure-Python packages this package needs that
# a CUDA machine's own Python lacks (checked against one with Python 3.12, torch 2.11,
# transformers 5, numpy 2, scikit-learn, scipy, pandas, pyarrow, safetensors, lxml,
# narwhals, xxhash and pytest installed; no network there). Run here, where pip reaches
# PyPI; then carry .whl to that machine and install it there with (docs/scale.md, "GPU figures"):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   export PYTHONPATH=$PWD:/tmp/site
#
# --no-deps: TransformerLens 2.18 declares numpy<2, transformers<5 and huggingface-hub<1,
# but the code paths this package uses run with numpy 2 and transformers 5 (checked on
# the CPU: see README). Only what those paths import is gathered (no kaleido, tracr, jax,
# wandb, hdbscan or gguf: clustering with --clusterer hdbscan and the SmolLM2 conversion
# are not part of the GPU check).
#
# Usage: bash benchmarks/gather_gpu_wheels.sh [python version, default 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
DEST=${DEST:-.whl}
mkdir -p "$DEST"
PACKAGES=(
    auto-circuit==1.0.1        # imports plotly, blobfile, transformer_lens at import time
    transformer-lens==2.18.0   # imports datasets, better_abc, typeguard at import time
    better-abc==0.0.3
    typeguard==4.6.1
    datasets==5.2.0            # needs dill, multiprocess (and xxhash, pyarrow: there)
    dill==0.4.1
    multiprocess==0.70.19
    blobfile==3.3.0
    plotly==7.1.0
    ordered-set==4.1.0         # auto-circuit's ACDC, run_circuits and circuit drawing
)
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST" "${PACKAGES[@]}"
du -ch "$DEST"/*.whl | tail -1
