#!/usr/bin/env bash
# The GPU check a lent CUDA device runs (from any folder), all of it or some of its steps:
#
#     bash benchmarks/gpu.sh [OUT [STEP ...]]   # OUT: the folder for the outputs (default: $OUT if set, else
#                                              # gpu-check); STEPs: any of the five below (default: all)
#
#   device             device.txt: the GPU, the driver, torch, and where pgm, Pixyz and Pyro are imported from;
#                      always runs first, and stops the script where torch sees no CUDA device
#   tests              pytest_cuda.txt: python -m pytest -m cuda, the real CUDA-graph capture of the training step
#                      (against the eager step, on non-finite losses, deferred with fused and plain Adam), bf16,
#                      inductor on CUDA, fit and resume with captured steps, examples/ss_hmvae_kl.py compiled and
#                      eager (tests/models/test_cuda.py)
#   bench_vae          bench_vae.txt: python benchmarks/bench_vae.py --device cuda (every configuration)
#   bench_ss_hmvae_kl  bench_ss_hmvae_kl.txt: python benchmarks/bench_ss_hmvae_kl.py --device cuda
#   example            ss_hmvae_kl.txt: examples/ss_hmvae_kl.py on cuda at the papers' sizes (hidden 512, batch
#                      512), compiled (--compile on: one CUDA graph per step), for EPOCHS epochs; its results.json
#                      and learning curves copied to OUT (its checkpoints stay outside OUT). On the full-size
#                      Fashion-MNIST when its IDX files are found (FASHION_ROOT, else data/fashion-mnist in the
#                      checkout, else /usr/share/datasets/fashion-mnist, where Debian's dataset-fashion-mnist puts
#                      them), else on the embedded digits
# and report.md: the device, the CUDA tests' summary, the benchmark tables, the example's numbers and each step's
# exit status and seconds. The script exits with the first non-zero status; every chosen step runs regardless.
#
# Both benchmarks time every implementation that runs there: hand-written PyTorch eager, under torch.compile and
# captured by hand as one CUDA graph; pgm eager, compile=True (one CUDA graph) and compile='inductor'; Pixyz and
# Pyro when importable.
#
# On a machine that has torch and CUDA but no package index (this workplace's lent GPUs: one command at most
# 10 minutes, about 30 minutes in all), pgm runs from the checkout (no install), and what it lacks travels along:
#     bash benchmarks/wheels.sh                                  # here: Pixyz, Pyro and IPython into .whl/
#     apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fashion
#     mkdir -p data && cp -r /tmp/fashion/usr/share/datasets/fashion-mnist data/   # .whl/ and data/ are git-ignored
# then two commands there, each well inside 10 minutes, carrying .whl and data/fashion-mnist:
#     bash benchmarks/gpu.sh $OUT device tests bench_vae
#     bash benchmarks/gpu.sh $OUT device bench_ss_hmvae_kl example
# The wheels in .whl/ are installed into a temporary folder put on PYTHONPATH; nothing else is installed.
#
# Environment knobs: EPOCHS (the example's epochs, default 20), EXAMPLE_ARGS (more options for it), BENCH_ARGS
# (more options for both benchmarks, e.g. "--steps 50 --warmup 5"), STEP_TIMEOUT (seconds one step may run,
# default 0: no limit), PYTHON (default python3), DEVICE (default cuda; cpu runs the same plumbing without a GPU,
# for checking the script itself).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-gpu-check}}"
shift || true
ALL_STEPS=(tests bench_vae bench_ss_hmvae_kl example)
STEPS=("$@")
[ "${#STEPS[@]}" -gt 0 ] || STEPS=("${ALL_STEPS[@]}")
for s in "${STEPS[@]}"; do
    case " device ${ALL_STEPS[*]} " in
        *" $s "*) ;;
        *) echo "gpu.sh: unknown step '$s'; the steps are: device ${ALL_STEPS[*]}" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$ROOT" || exit 1
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
EPOCHS="${EPOCHS:-20}"
STEP_TIMEOUT="${STEP_TIMEOUT:-0}"
read -r -a EXAMPLE_EXTRA <<< "${EXAMPLE_ARGS:-}"
read -r -a BENCH_EXTRA <<< "${BENCH_ARGS:-}"
WORK="$(mktemp -d)"  # the summary, the carried wheels' install and the example's checkpoints: not sent back
trap 'rm -rf "$WORK"' EXIT
SUMMARY="$WORK/summary.txt"
: > "$SUMMARY"

# pgm from this checkout (the examples import it, and it is not installed there), then the carried wheels
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    if "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
            "$ROOT"/.whl/*.whl; then
        export PYTHONPATH="$PYTHONPATH:$WORK/site"  # after the image's own packages: none of those is replaced
    else
        echo "gpu.sh: installing the wheels in .whl/ failed; Pixyz and Pyro will not be timed" >&2
    fi
fi

export PYTHONUNBUFFERED=1
timed() { timeout "$STEP_TIMEOUT" "$@"; }  # a real command (not a shell function) under STEP_TIMEOUT

status=0
step() {  # step NAME COMMAND...: run COMMAND, its output (stdout and stderr) to OUT/NAME.txt and to the terminal
    local name="$1"
    shift
    echo "== $name: $*" | tee -a "$SUMMARY"
    local start=$SECONDS
    "$@" 2>&1 | tee "$OUT_DIR/$name.txt"
    local code=${PIPESTATUS[0]}
    [ "$code" -eq 124 ] && echo "   stopped after STEP_TIMEOUT=$STEP_TIMEOUT s" | tee -a "$SUMMARY"
    echo "   exit $code after $((SECONDS - start)) s" | tee -a "$SUMMARY"
    if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$code
    fi
}

device_info() {  # the GPU, the driver, torch and the libraries' origins; fails where torch sees no CUDA device
    nvidia-smi || echo "(no nvidia-smi)"
    timed "$PYTHON" - "$DEVICE" <<'PY'
import importlib
import sys

import torch

print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
for name in ("pgm", "pixyz", "pyro"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), "from", module.__file__)
    except Exception as error:  # a missing library is reported, not fatal: the benchmarks then skip it
        print(name, "not importable:", error)
if sys.argv[1] == "cuda":
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

example() {  # the main job, its checkpoints in WORK; its numbers and learning curves copied to OUT
    timed "$PYTHON" examples/ss_hmvae_kl.py --device "$DEVICE" --compile on --epochs "$EPOCHS" --eval-every 5 \
        --checkpoint-every 10 --out "$WORK/ss_hmvae_kl" --overwrite ${DATA_ARGS[@]+"${DATA_ARGS[@]}"} \
        ${EXAMPLE_EXTRA[@]+"${EXAMPLE_EXTRA[@]}"}
    local code=$?
    [ -f "$WORK/ss_hmvae_kl/results.json" ] && cp "$WORK/ss_hmvae_kl/results.json" "$OUT_DIR/ss_hmvae_kl_results.json"
    [ -f "$WORK/ss_hmvae_kl/learning_curves.png" ] && \
        cp "$WORK/ss_hmvae_kl/learning_curves.png" "$OUT_DIR/ss_hmvae_kl_learning_curves.png"
    return $code
}

chosen() { case " ${STEPS[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

report() {  # OUT/report.md from the outputs of the steps that ran
    {
        echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ): ${STEPS[*]}"
        echo
        echo '```'
        grep -E "^(torch|pgm|pixyz|pyro|NVIDIA|.*H100|.*H200|.*A100)" "$OUT_DIR/device.txt" | head -8
        echo '```'
        if chosen tests; then
            echo
            echo "## CUDA tests"
            echo
            tail -n 3 "$OUT_DIR/pytest_cuda.txt" | sed 's/^/    /'
        fi
        for bench in bench_vae bench_ss_hmvae_kl; do
            chosen "$bench" || continue
            echo
            echo "## $bench"
            echo
            grep -E "^(\||VAE step|SS-HMVAE|note)" "$OUT_DIR/$bench.txt"
        done
        if chosen example; then
            echo
            echo "## examples/ss_hmvae_kl.py (${DATA_ARGS[*]:-digits}, $EPOCHS epochs)"
            echo
            tail -n 25 "$OUT_DIR/ss_hmvae_kl.txt" | sed 's/^/    /'
        fi
        echo
        echo "## Steps"
        echo
        sed 's/^/    /' "$SUMMARY"
    } > "$OUT_DIR/report.md"
    echo "report: $OUT_DIR/report.md"
}

step device device_info
if [ "$status" -ne 0 ]; then
    report
    echo "no usable $DEVICE device: the other steps were not run" | tee -a "$OUT_DIR/report.md"
    exit "$status"
fi
chosen tests && step pytest_cuda timed "$PYTHON" -m pytest -m cuda -v -rs -p no:cacheprovider
chosen bench_vae && step bench_vae timed "$PYTHON" benchmarks/bench_vae.py --device "$DEVICE" \
    ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"}
chosen bench_ss_hmvae_kl && step bench_ss_hmvae_kl timed "$PYTHON" benchmarks/bench_ss_hmvae_kl.py --device "$DEVICE" \
    ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"}
chosen example && step ss_hmvae_kl example
report

echo "outputs in $OUT_DIR; first failing exit status: $status"
exit "$status"
