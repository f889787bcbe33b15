#!/usr/bin/env bash
# The GPU check: ONE call on a lent CUDA device, at most TOTAL seconds (default 530) in all, that leaves
# OUT/report.md behind after every step, so that a call stopped at its limit still brings back what it found.
#
# When a device is lent (about 15 minutes of device time in all, start-up included; one command at most 10 minutes):
#   1. here, optional: bash benchmarks/wheels.sh      # Pixyz, Pyro (and IPython) into .whl/: the comparison columns
#                                                     # optional: Fashion-MNIST into data/fashion-mnist, see below
#   2. one device call, carrying what step 1 made (a carried path that is missing here is simply dropped there):
#        run(command="bash benchmarks/gpu.sh $OUT", carry=[".whl", "data/fashion-mnist"], timeout_s=570)
#   3. read $OUT/report.md (also printed at the end of the call's output); the logs lie beside it.
# Full-size Fashion-MNIST for the example (else it trains on the embedded digits), here before step 2:
#     apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb /tmp/fashion
#     mkdir -p data && cp -r /tmp/fashion/usr/share/datasets/fashion-mnist data/   # .whl/ and data/ are git-ignored
#
#     bash benchmarks/gpu.sh [OUT [STEP ...]]   # OUT: default $OUT if set, else gpu-check; STEPs: default all
#                                              # (bench_vae names both bench_vae steps)
#
# The steps, most valuable first (each with its own time limit in seconds, never more than what is left of TOTAL;
# a step left less than MIN_STEP seconds, default 15, is skipped and recorded as skipped for lack of time):
#   device (60)             device.txt: GPU, driver, torch, CUDA, and where pgm, Pixyz and Pyro are imported from;
#                           always runs first; where torch sees no CUDA device the other steps are not run
#   tests (180)             tests.txt: python -m pytest -m cuda (tests/models/test_cuda.py: the real CUDA-graph
#                           capture against eager, bf16, inductor on CUDA, fit and resume, the example compiled)
#   bench_vae_small (120)   bench_vae_small.txt: benchmarks/bench_vae.py --configs 10x400 (VAE_SMALL)
#   bench_vae_large (120)   bench_vae_large.txt: benchmarks/bench_vae.py --configs 30x2000 (VAE_LARGE)
#                           (both: --steps 100 --warmup 10 --rounds 5, every implementation that runs there;
#                           the compiled ones' compilation counts in the step's time, and the table is printed at
#                           the end only: a benchmark stopped at its limit leaves no table)
#   example (120)           example.txt, example_results.json: examples/ss_hmvae_kl.py compiled (--compile on: one
#                           CUDA graph per step) at the papers' sizes (hidden 512, batch 512) for EPOCHS epochs, on
#                           Fashion-MNIST when its IDX files are found (FASHION_ROOT, else data/fashion-mnist in the
#                           checkout, else /usr/share/datasets/fashion-mnist; FASHION_ROOT=none: the digits)
#   bench_ss_hmvae_kl (90)  bench_ss_hmvae_kl.txt: benchmarks/bench_ss_hmvae_kl.py (--steps 25 --warmup 5)
# The limits add up to more than TOTAL: the later steps get what the earlier ones leave. A full call leaves about
# 3 of the 15 minutes (start-up ~2 min, the call at most 570 s): give the machine back at once, or spend them on one
# short call of chosen steps while it is warm (e.g. TOTAL=120 bash benchmarks/gpu.sh $OUT bench_ss_hmvae_kl).
# and report.md: the device, each step's result, exit status and seconds, the CUDA tests' summary, the benchmark
# tables and the example's last lines. At most 8 files are written to OUT. Chosen steps run in the order above.
# The exit status is the first failing step's (a step stopped at its limit: 124 or 137); skipped steps are not
# failures. pgm runs from this checkout (PYTHONPATH); the wheels in .whl/ are installed into a temporary folder put
# on PYTHONPATH after the image's own packages; nothing else is installed.
#
# Knobs (environment): TOTAL (seconds for the whole call, default 530), MIN_STEP (default 15), STEP_TIMEOUT (one
# limit for every step instead of the defaults above), STEP_TIMEOUT_<step> (one step's, e.g. STEP_TIMEOUT_tests=240),
# EPOCHS (the example's, default 3), EXAMPLE_ARGS (more options for the example, e.g. "--hidden 16 --compile off"),
# BENCH_ARGS (more options for the three benchmarks, e.g. "--steps 2 --warmup 1 --rounds 1"), BENCH_IMPLS (their
# --impls, e.g. "pytorch eager,pgm eager"), VAE_SMALL, VAE_LARGE (bench_vae's --configs), SS_BENCH_ARGS (more options
# for bench_ss_hmvae_kl, e.g. "--configs 8 --hidden 16"), PYTEST_ARGS (more for pytest, e.g. a test file),
# FASHION_ROOT, PYTHON (default python3), DEVICE (default cuda; cpu runs the same plumbing without a GPU, for checking
# the script itself: tests/test_gpu_script.py). Options given in the *_ARGS knobs come last and so win.
set -u

STARTED=$SECONDS
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-gpu-check}}"
shift || true
ALL_STEPS=(device tests bench_vae_small bench_vae_large example bench_ss_hmvae_kl)
# bench_vae: both sizes (the step's name in earlier plans: gpu.sh OUT device tests bench_vae)
NAMED=()
for s in "$@"; do
    if [ "$s" = bench_vae ]; then NAMED+=(bench_vae_small bench_vae_large); else NAMED+=("$s"); fi
done
set -- ${NAMED[@]+"${NAMED[@]}"}
for s in "$@"; do
    case " ${ALL_STEPS[*]} " in
        *" $s "*) ;;
        *) echo "gpu.sh: unknown step '$s'; the steps are: ${ALL_STEPS[*]}" >&2; exit 2 ;;
    esac
done
STEPS=()  # the chosen steps in the order above, device first
for s in "${ALL_STEPS[@]}"; do
    case " device $* " in
        *" $s "*) STEPS+=("$s") ;;
    esac
done
[ "$#" -gt 0 ] || STEPS=("${ALL_STEPS[@]}")

default_limit() {
    case "$1" in
        device) echo 60 ;;
        tests) echo 180 ;;
        bench_vae_small | bench_vae_large) echo 120 ;;  # a benchmark prints its table at the end only
        example) echo 120 ;;
        bench_ss_hmvae_kl) echo 90 ;;
    esac
}

TOTAL="${TOTAL:-530}"
MIN_STEP="${MIN_STEP:-15}"
STEP_TIMEOUT="${STEP_TIMEOUT:-}"
EPOCHS="${EPOCHS:-3}"
KILL_AFTER=10  # seconds between the TERM at a step's limit and the KILL
numbers=(TOTAL MIN_STEP EPOCHS)
[ -n "$STEP_TIMEOUT" ] && numbers+=(STEP_TIMEOUT)
for s in "${ALL_STEPS[@]}"; do
    var="STEP_TIMEOUT_$s"
    [ -n "${!var:-}" ] && numbers+=("$var")
done
for var in "${numbers[@]}"; do
    case "${!var}" in
        '' | *[!0-9]*) echo "gpu.sh: $var must be a whole number of seconds (epochs for EPOCHS); got '${!var}'" >&2
                       exit 2 ;;
    esac
    if [[ "$var" == STEP_TIMEOUT* ]] && [ "${!var}" -lt 1 ]; then  # `timeout 0` would mean no limit at all
        echo "gpu.sh: $var must be at least 1 second; got '${!var}'" >&2
        exit 2
    fi
done

mkdir -p "$OUT_DIR" || exit 1
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$ROOT" || exit 1
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
BENCH_IMPLS="${BENCH_IMPLS:-}"
VAE_SMALL="${VAE_SMALL:-10x400}"
VAE_LARGE="${VAE_LARGE:-30x2000}"
read -r -a EXAMPLE_EXTRA <<< "${EXAMPLE_ARGS:-}"
read -r -a BENCH_EXTRA <<< "${BENCH_ARGS:-}"
read -r -a SS_EXTRA <<< "${SS_BENCH_ARGS:-}"
read -r -a PYTEST_EXTRA <<< "${PYTEST_ARGS:-}"
IMPLS=()
[ -n "$BENCH_IMPLS" ] && IMPLS=(--impls "$BENCH_IMPLS")
WORK="$(mktemp -d)"  # the carried wheels' install and the example's checkpoints: not sent back
RUNNING=0            # the process id of the running step's `timeout`, 0 between steps
CURRENT=""           # that step's name
trap 'rm -rf "$WORK"' EXIT
export PYTHONUNBUFFERED=1

FASHION_ROOT="${FASHION_ROOT:-}"
for candidate in "$ROOT/data/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    if [ -z "$FASHION_ROOT" ] && [ -f "$candidate/train-images-idx3-ubyte.gz" ]; then
        FASHION_ROOT="$candidate"
    fi
done
DATA_ARGS=()
DATA="digits"
if [ -n "$FASHION_ROOT" ] && [ "$FASHION_ROOT" != none ]; then
    DATA_ARGS=(--dataset fashion --data-root "$FASHION_ROOT")
    DATA="Fashion-MNIST from $FASHION_ROOT"
fi

# pgm from this checkout (the examples import it, and it is not installed there), then the carried wheels
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
WHEELS="none in .whl/"
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    if timeout --kill-after=5 60 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --target "$WORK/site" "$ROOT"/.whl/*.whl < /dev/null > "$WORK/pip.txt" 2>&1; then
        export PYTHONPATH="$PYTHONPATH:$WORK/site"  # after the image's own packages: none of those is replaced
        WHEELS="$(cd "$ROOT/.whl" && echo ./*.whl | sed 's|\./||g') installed in $((SECONDS - STARTED)) s"
    else
        WHEELS="installing .whl/*.whl failed (Pixyz and Pyro will not be timed): $(tail -n 1 "$WORK/pip.txt" | sed 's/[.[:space:]]*$//')"
    fi
fi

ROWS=()       # one line of the steps' table per step done or skipped
SECTIONS=()   # the steps whose outputs go in the report
status=0
SKIPPED=0     # the steps skipped for lack of time

device_probe() {  # the device step's Python, written to WORK so that it runs under `timeout` like the others
    cat > "$WORK/device.py" <<'PY'
import importlib
import platform
import shutil
import subprocess
import sys

import torch

wanted = sys.argv[1]
print("python", platform.python_version(), "on", platform.platform())
if shutil.which("nvidia-smi"):
    query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    for line in (query.stdout or query.stderr).strip().splitlines():
        print("gpu (nvidia-smi):", line)
else:
    print("gpu (nvidia-smi): no nvidia-smi here")
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(),
      "CUDA available", torch.cuda.is_available(), "devices", torch.cuda.device_count())
for name in ("pgm", "pixyz", "pyro"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), "from", module.__file__)
    except Exception as error:  # a missing library is reported, not fatal: the benchmarks then skip it
        print(name, "not importable:", error)
if wanted.startswith("cuda"):
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device that torch can use")
    device = torch.device(wanted)
    props = torch.cuda.get_device_properties(device)
    a = torch.randn(1024, 1024, device=device)
    (a @ a).sum().item()  # a first kernel: the device computes, not only answers
    print("cuda device:", props.name, "capability", f"{props.major}.{props.minor}",
          f"{props.total_memory / 2**30:.1f} GiB,", props.multi_processor_count, "SMs; a matmul ran on it")
else:
    print("device:", wanted, "(no GPU asked for)")
PY
}

report() {  # OUT/report.md from what is done so far; $1: a line saying where the call stands
    {
        echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), DEVICE=$DEVICE, TOTAL=$TOTAL s: ${STEPS[*]}"
        echo
        echo "$1 ($((SECONDS - STARTED)) s of $TOTAL s used; first failing exit status so far: $status)."
        echo "Wheels: $WHEELS. Example data: $DATA."
        if [ -f "$OUT_DIR/device.txt" ] && [[ " ${SECTIONS[*]} " == *" device "* ]]; then
            echo
            echo '```'
            grep -E "^(python|gpu|torch|pgm|pixyz|pyro|cuda device|device|no CUDA)" "$OUT_DIR/device.txt" | head -n 12
            echo '```'
        fi
        echo
        echo "| step | result | exit | seconds | limit s |"
        echo "| --- | --- | ---: | ---: | ---: |"
        local row
        for row in ${ROWS[@]+"${ROWS[@]}"}; do
            echo "$row"
        done
        local name log
        for name in ${SECTIONS[@]+"${SECTIONS[@]}"}; do
            log="$OUT_DIR/$name.txt"
            [ -f "$log" ] || continue
            case "$name" in
                device) continue ;;
                tests)
                    echo
                    echo "## CUDA tests (tests.txt)"
                    echo
                    echo '```'
                    grep -E "::.* (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)" "$log" | head -n 40
                    if grep -q "short test summary info" "$log"; then
                        sed -n '/short test summary info/,$p' "$log" | tail -n 40
                    else
                        tail -n 1 "$log" | awk 1  # awk: the newline a killed step did not write
                    fi
                    echo '```' ;;
                bench_*)
                    echo
                    echo "## $name ($name.txt)"
                    echo
                    grep -E "^(\||VAE step|SS-HMVAE-kl step|note)" "$log" ;;
                example)
                    echo
                    echo "## examples/ss_hmvae_kl.py, $EPOCHS epochs on $DATA (example.txt)"
                    echo
                    echo '```'
                    grep -v -e '^Loss (minimized):' -e '^- (' "$log" | tail -n 12  # not the long LaTeX line
                    echo '```' ;;
            esac
            if [ -f "$WORK/$name.failed" ] && [ "$name" != tests ] && [ "$name" != example ]; then
                echo
                echo "Last lines of $name.txt:"
                echo
                echo '```'
                tail -n 8 "$log" | awk 1
                echo '```'
            fi
        done
    } > "$OUT_DIR/report.md"
}

# shellcheck disable=SC2329  # invoked by the trap below
stopped_from_outside() {  # TERM or INT from the caller (the device call's own limit): stop the step, keep a report
    trap - TERM INT
    local where="between steps"
    if [ "$RUNNING" -ne 0 ]; then
        kill -TERM "$RUNNING" 2> /dev/null
        where="while running $CURRENT"
        ROWS+=("| $CURRENT | stopped from outside (TERM/INT) | 143 | $((SECONDS - STEP_START)) | $LIMIT |")
        SECTIONS+=("$CURRENT")
    fi
    status=143
    report "Stopped from outside $where"
    echo "gpu.sh: stopped from outside $where; report: $OUT_DIR/report.md" >&2
    exit 143
}
trap stopped_from_outside TERM INT

# step NAME COMMAND...: run COMMAND under its time limit, its output (stdout and stderr) to OUT/NAME.txt
STEP_START=$SECONDS
LIMIT=0
step() {
    local name="$1"
    shift
    local per_step="STEP_TIMEOUT_$name"
    local limit="${!per_step:-${STEP_TIMEOUT:-$(default_limit "$name")}}"
    local left=$((TOTAL - (SECONDS - STARTED)))
    if [ "$left" -lt "$limit" ] && { [ "$left" -lt "$MIN_STEP" ] || [ "$left" -lt 1 ]; }; then
        ROWS+=("| $name | skipped for lack of time ($((left > 0 ? left : 0)) s left of TOTAL, MIN_STEP $MIN_STEP) | - | - | - |")
        echo "== $name: skipped for lack of time ($left s left)"
        SKIPPED=$((SKIPPED + 1))
        report "Running: skipped $name for lack of time"
        return 0
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "== $name (limit $limit s): $*"
    CURRENT=$name
    LIMIT=$limit
    STEP_START=$SECONDS
    report "Running: $name (limit $limit s)"
    timeout --kill-after="$KILL_AFTER" "$limit" "$@" < /dev/null > "$OUT_DIR/$name.txt" 2>&1 &
    RUNNING=$!
    wait "$RUNNING"
    local code=$?
    RUNNING=0
    local seconds=$((SECONDS - STEP_START))
    local result=ok
    case "$code" in
        0) ;;
        124 | 137) result="stopped at its limit ($limit s)" ;;
        *) result=FAILED ;;
    esac
    if [ "$name" = tests ]; then  # pytest: 5 is "no tests ran"; every test skipped on a GPU means none ran either
        local last
        last="$(tail -n 1 "$OUT_DIR/$name.txt")"
        if [ "$code" -eq 5 ] && [ "${DEVICE#cuda}" = "$DEVICE" ]; then
            result="ok (no tests ran: none needs $DEVICE)"
            code=0
        elif [ "$code" -eq 0 ] && [ "${DEVICE#cuda}" != "$DEVICE" ] && [[ "$last" != *" passed"* ]]; then
            result="FAILED (no CUDA test passed: $last)"
            code=1
        elif [ "$code" -eq 0 ] && [[ "$last" != *" passed"* ]]; then
            result="ok (every CUDA test skipped on $DEVICE)"
        fi
    fi
    [ "$result" = ok ] || [[ "$result" == "ok ("* ]] || : > "$WORK/$name.failed"
    ROWS+=("| $name | $result | $code | $seconds | $limit |")
    SECTIONS+=("$name")
    echo "   $result: exit $code after $seconds s"
    if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$code
    fi
    report "Running: $name done"
    return "$code"
}

for name in "${STEPS[@]}"; do
    case "$name" in
        device)
            device_probe
            if ! step device "$PYTHON" "$WORK/device.py" "$DEVICE" && [ -f "$WORK/device.failed" ]; then
                for rest in "${STEPS[@]:1}"; do
                    ROWS+=("| $rest | not run: no usable $DEVICE device | - | - | - |")
                done
                report "Stopped: no usable $DEVICE device (device.txt says why), the other steps were not run"
                cat "$OUT_DIR/report.md"
                exit "$status"
            fi ;;
        tests)
            # -vv: setup.cfg's addopts (-q) takes one -v back; -rfEs: the failures, errors and skips summarized
            step tests "$PYTHON" -m pytest -m cuda -vv -rfEs -p no:cacheprovider \
                ${PYTEST_EXTRA[@]+"${PYTEST_EXTRA[@]}"} ;;
        bench_vae_small | bench_vae_large)
            configs="$VAE_SMALL"
            [ "$name" = bench_vae_large ] && configs="$VAE_LARGE"
            step "$name" "$PYTHON" benchmarks/bench_vae.py --device "$DEVICE" --configs "$configs" --steps 100 \
                --warmup 10 --rounds 5 ${IMPLS[@]+"${IMPLS[@]}"} ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} ;;
        example)
            rm -f "$OUT_DIR/example_results.json"
            step example "$PYTHON" examples/ss_hmvae_kl.py --device "$DEVICE" --compile on --epochs "$EPOCHS" \
                --eval-every 0 --checkpoint-every "$((EPOCHS > 0 ? EPOCHS : 1))" --out "$WORK/example" --overwrite \
                ${DATA_ARGS[@]+"${DATA_ARGS[@]}"} ${EXAMPLE_EXTRA[@]+"${EXAMPLE_EXTRA[@]}"}
            if [ -f "$WORK/example/results.json" ]; then
                cp "$WORK/example/results.json" "$OUT_DIR/example_results.json"
            fi ;;
        bench_ss_hmvae_kl)
            step bench_ss_hmvae_kl "$PYTHON" benchmarks/bench_ss_hmvae_kl.py --device "$DEVICE" --steps 25 \
                --warmup 5 --rounds 5 ${IMPLS[@]+"${IMPLS[@]}"} ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} \
                ${SS_EXTRA[@]+"${SS_EXTRA[@]}"} ;;
    esac
done

report "Finished, $SKIPPED step(s) skipped for lack of time"
cat "$OUT_DIR/report.md"
echo
echo "outputs in $OUT_DIR; first failing exit status: $status"
exit "$status"
