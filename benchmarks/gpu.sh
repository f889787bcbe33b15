#!/usr/bin/env bash
# The GPU check a lent CUDA device runs (from any folder):
#
#     bash benchmarks/gpu.sh [OUT]       # OUT: the folder for the outputs (default: $OUT if set, else gpu-check)
#
#   1. device.txt          the GPU, the driver and torch (fails where torch sees no CUDA device)
#   2. pytest_cuda.txt     python -m pytest -m cuda: the real CUDA-graph capture of the training step (against
#                          the eager step, on non-finite losses), inductor on CUDA, fit and resume with captured
#                          steps, examples/ss_hmvae_kl.py compiled and eager (tests/models/test_cuda.py)
#   3. bench_vae.txt       python benchmarks/bench_vae.py --device cuda (median ms per step, every configuration)
#   4. bench_ss_hmvae_kl.txt  python benchmarks/bench_ss_hmvae_kl.py --device cuda
#   5. ss_hmvae_kl.txt     examples/ss_hmvae_kl.py on cuda at the papers' sizes (hidden 512, batch 512), compiled
#                          (--compile on: one CUDA graph per step), for EPOCHS epochs, its results in
#                          OUT/ss_hmvae_kl/: on the full-size Fashion-MNIST when its IDX files are found (FASHION_ROOT,
#                          else data/fashion-mnist in the checkout, else /usr/share/datasets/fashion-mnist, where
#                          Debian's dataset-fashion-mnist puts them), else on the embedded digits
#   6. report.md           one report: the device, the CUDA tests' summary, both benchmark tables, the example's
#                          numbers and every step's status
#
# Both benchmarks time every implementation that runs there: hand-written PyTorch eager, under torch.compile and
# captured by hand as one CUDA graph; pgm eager, compile=True (one CUDA graph) and compile='inductor'; Pixyz and
# Pyro when installed. To carry Fashion-MNIST to a machine without internet, from the checkout:
#     apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fashion
#     mkdir -p data && cp -r /tmp/fashion/usr/share/datasets/fashion-mnist data/   # data/ is git-ignored
#
# Every step runs even if an earlier one failed; OUT/summary.txt gives each step's exit status and seconds, and
# the script exits with the first non-zero status. Environment knobs: EPOCHS (the example's epochs, default 20),
# EXAMPLE_ARGS (more options for it, e.g. "--dataset mnist --data-root /data/mnist" for the full-size data),
# BENCH_ARGS (more options for both benchmarks, e.g. "--steps 50 --warmup 5").
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$ROOT" || exit 1
PYTHON="${PYTHON:-python}"
EPOCHS="${EPOCHS:-20}"
read -r -a EXAMPLE_EXTRA <<< "${EXAMPLE_ARGS:-}"
read -r -a BENCH_EXTRA <<< "${BENCH_ARGS:-}"

status=0
: > "$OUT_DIR/summary.txt"

step() {  # step NAME COMMAND...: run COMMAND, its output (stdout and stderr) to OUT/NAME.txt and to the terminal
    local name="$1"
    shift
    echo "== $name: $*" | tee -a "$OUT_DIR/summary.txt"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT_DIR/$name.txt"
    local code=${PIPESTATUS[0]}
    echo "   exit $code after $((SECONDS - start)) s" | tee -a "$OUT_DIR/summary.txt"
    if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$code
    fi
}

device_info() {  # the GPU, the driver and torch; fails where torch sees no CUDA device
    nvidia-smi
    "$PYTHON" - <<'PY'
import torch

print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
if not torch.cuda.is_available():
    raise SystemExit("no CUDA device that torch can use")
print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
PY
}

FASHION_ROOT="${FASHION_ROOT:-}"
for candidate in "$ROOT/data/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    if [ -z "$FASHION_ROOT" ] && [ -f "$candidate/train-images-idx3-ubyte.gz" ]; then
        FASHION_ROOT="$candidate"
    fi
done
DATA_ARGS=()
if [ -n "$FASHION_ROOT" ]; then
    DATA_ARGS=(--dataset fashion --data-root "$FASHION_ROOT")
fi

report() {  # OUT/report.md from the steps' outputs
    {
        echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        echo '```'
        grep -E "^(torch|NVIDIA|.*H100|.*H200|.*A100)" "$OUT_DIR/device.txt" | head -5
        echo '```'
        echo
        echo "## CUDA tests"
        echo
        tail -n 3 "$OUT_DIR/pytest_cuda.txt" | sed 's/^/    /'
        for bench in bench_vae bench_ss_hmvae_kl; do
            echo
            echo "## $bench"
            echo
            grep -E "^(\||VAE step|SS-HMVAE|note)" "$OUT_DIR/$bench.txt"
        done
        echo
        echo "## examples/ss_hmvae_kl.py (${DATA_ARGS[*]:-digits}, $EPOCHS epochs)"
        echo
        tail -n 25 "$OUT_DIR/ss_hmvae_kl.txt" | sed 's/^/    /'
        echo
        echo "## Steps"
        echo
        sed 's/^/    /' "$OUT_DIR/summary.txt"
    } > "$OUT_DIR/report.md"
    echo "report: $OUT_DIR/report.md"
}

step device device_info
step pytest_cuda "$PYTHON" -m pytest -m cuda -v -rs -p no:cacheprovider
step bench_vae "$PYTHON" benchmarks/bench_vae.py --device cuda ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"}
step bench_ss_hmvae_kl "$PYTHON" benchmarks/bench_ss_hmvae_kl.py --device cuda ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"}
step ss_hmvae_kl "$PYTHON" examples/ss_hmvae_kl.py --device cuda --compile on --epochs "$EPOCHS" --eval-every 5 \
    --checkpoint-every 10 --out "$OUT_DIR/ss_hmvae_kl" --overwrite ${DATA_ARGS[@]+"${DATA_ARGS[@]}"} \
    ${EXAMPLE_EXTRA[@]+"${EXAMPLE_EXTRA[@]}"}
report

echo "outputs in $OUT_DIR; first failing exit status: $status" | tee -a "$OUT_DIR/summary.txt"
exit "$status"
