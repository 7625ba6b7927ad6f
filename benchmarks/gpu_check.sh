#!/usr/bin/env bash
# GPU checks, run on a machine with CUDA and PyTorch (no network needed):
#   bash benchmarks/gpu_check.sh [WHEEL_DIR] [OUT_DIR]
# WHEEL_DIR holds a geoopt wheel when geoopt is not installed there
# (`pip download geoopt --no-deps -d WHEEL_DIR`). Runs the CUDA cases of the
# geometry tests, benchmarks/gpu_smoke.py, a short torchrun + nccl + AMP
# training job on a generated image folder with the ImageNet recipe's flags,
# and benchmarks/cuda_bench.py (tables and logs written to OUT_DIR).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS="${1:-}"
OUT_DIR="${2:-/tmp/gpu-check}"
mkdir -p "$OUT_DIR"
if [ -n "$WHEELS" ] && ! python3 -c "import geoopt" 2>/dev/null; then
    python3 -m pip install --quiet --no-index --no-deps --target /tmp/gcls-site "$WHEELS"/geoopt-*.whl
    export PYTHONPATH="/tmp/gcls-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
status=0
step() { echo; echo "=== $*"; }

step "device"
nvidia-smi -L
python3 -c "import torch, geoopt; print('torch', torch.__version__, 'geoopt', geoopt.__version__, 'cuda', torch.cuda.is_available())"
export PYTHONUNBUFFERED=1

# Most informative first, each step bounded, every log kept in OUT_DIR, so a
# run stopped early still returns what it measured (about 8 minutes in all).
step "cuda_bench.py"
timeout 170 python3 benchmarks/cuda_bench.py --output "$OUT_DIR/cuda_bench.md" > "$OUT_DIR/cuda_bench.log" 2>&1 || status=1
tail -5 "$OUT_DIR/cuda_bench.log"

step "CUDA cases of the geometry tests"
timeout 100 python3 -m pytest tests/manifolds -q -p no:cacheprovider -k cuda \
    --ignore tests/manifolds/test_interop_geomstats.py > "$OUT_DIR/pytest-cuda.log" 2>&1 || status=1
tail -4 "$OUT_DIR/pytest-cuda.log"

step "gpu_smoke.py"
timeout 80 python3 benchmarks/gpu_smoke.py > "$OUT_DIR/gpu_smoke.log" 2>&1 || status=1
cat "$OUT_DIR/gpu_smoke.log"

step "torchrun, nccl, bf16 and fp16, timm:resnet50d, image folder"
python3 - <<'PY'
import numpy as np
from pathlib import Path
from PIL import Image
rng = np.random.default_rng(0)
for split, count in (("train", 24), ("val", 8)):
    for c in range(4):
        folder = Path("/tmp/fakenet") / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = (rng.random((72, 72, 3)) * 60 + 50 * c).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{i}.png")
PY
for amp in bf16 fp16; do
    rm -rf "/tmp/run-$amp"
    timeout 70 torchrun --standalone --nproc-per-node 1 -m grassmann_cls train \
        --dataset imagefolder:/tmp/fakenet --image-size 64 --workers 2 \
        --backbone timm:resnet50d --head gcr --subspace-dim 8 --scale 25 \
        --optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 1e-4 \
        --grassmann-momentum paper --schedule cosine --epochs 2 --batch-size 16 \
        --device cuda --amp "$amp" --checkpoint-every 4 --output "/tmp/run-$amp" \
        > "$OUT_DIR/torchrun-$amp.log" 2>&1 || status=1
    tail -6 "$OUT_DIR/torchrun-$amp.log"
    cp "/tmp/run-$amp/metrics.json" "$OUT_DIR/imagefolder-$amp-metrics.json" 2>/dev/null || true
done
echo "gpu_check status $status"
exit $status
