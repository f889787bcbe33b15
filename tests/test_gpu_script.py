"""benchmarks/gpu.sh, the one-call GPU check, runs its whole plumbing on the CPU (DEVICE=cpu) at tiny sizes: every
step under its own time limit, report.md rewritten as it goes, at most 8 plainly named files in OUT, steps skipped
when the time is spent, and a wrong step name refused."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
STEPS = ["device", "tests", "bench_vae_small", "bench_vae_large", "example", "bench_ss_hmvae_kl"]
KNOBS = {"OUT", "TOTAL", "MIN_STEP", "STEP_TIMEOUT", "EPOCHS", "EXAMPLE_ARGS", "BENCH_ARGS", "BENCH_IMPLS",
         "VAE_SMALL", "VAE_LARGE", "SS_BENCH_ARGS", "PYTEST_ARGS", "FASHION_ROOT", "PYTHON", "DEVICE"}
# Each step a few seconds on one CPU thread: the eager implementations only, the smallest networks, the digits
TINY = {
    "DEVICE": "cpu", "PYTHON": sys.executable, "TOTAL": "240", "STEP_TIMEOUT": "90", "EPOCHS": "1",
    "FASHION_ROOT": "none", "PYTEST_ARGS": "tests/models/test_cuda.py",
    "BENCH_ARGS": "--steps 2 --warmup 1 --rounds 1 --threads 1", "BENCH_IMPLS": "pytorch eager,pgm eager",
    "VAE_SMALL": "2x16", "VAE_LARGE": "3x24", "SS_BENCH_ARGS": "--configs 8 --hidden 16",
    "EXAMPLE_ARGS": "--compile off --hidden 16 --batch-size 64 --labels 20 --threads 1",
}

pytestmark = pytest.mark.skipif(not (shutil.which("bash") and shutil.which("timeout")),
                                reason="needs bash and GNU timeout")


def gpu_sh(out, *steps, **knobs):
    """Run ``bash benchmarks/gpu.sh OUT STEP...`` with only ``knobs`` among its environment knobs set."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS and not k.startswith("STEP_TIMEOUT")}
    env.update(knobs)
    return subprocess.run(["bash", str(SCRIPT), str(out), *steps], env=env, capture_output=True, text=True,
                          timeout=400, cwd=ROOT)


def test_the_whole_check_runs_on_the_cpu_and_reports_every_step(tmp_path):
    """Every step runs and finishes with exit 0; report.md holds each step's row, the skipped CUDA tests' summary,
    the three benchmark tables and the example's table; OUT holds at most 8 plainly named files."""
    out = tmp_path / "out"
    done = gpu_sh(out, **TINY)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (out / "report.md").read_text()
    assert report.startswith("# GPU check, ") and "Finished, 0 step(s) skipped for lack of time" in report
    for step in STEPS:
        assert re.search(rf"^\| {step} \| ok[^|]* \| 0 \| \d+ \| \d+ \|$", report, re.M), (step, report)
    assert "torch " in report and "pgm " in report and "device: cpu (no GPU asked for)" in report
    assert "ok (every CUDA test skipped on cpu)" in report
    assert re.search(r"^=+ \d+ skipped.* in [\d.]+s =+$", report, re.M)
    assert report.count("| configuration | implementation | median ms / step |") == 3
    for row in ("| latent 2, hidden 16 | pytorch eager |", "| latent 3, hidden 24 | pgm eager |",
                "| batch 8 + 8 | pgm eager |", "| SS-HMVAE-kl (beta=0.1) |"):
        assert row in report
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["report.md", "example_results.json", *(f"{step}.txt" for step in STEPS)])
    assert len(files) <= 8 and all(p.is_file() and re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in out.iterdir())
    assert done.stdout.rstrip().endswith("first failing exit status: 0")  # the report is printed before it


def test_steps_left_too_little_time_are_skipped_and_still_reported(tmp_path):
    """With TOTAL=1 no step gets its MIN_STEP seconds: each is recorded as skipped for lack of time (not as a
    failure), and report.md is written all the same."""
    out = tmp_path / "out"
    done = gpu_sh(out, **{**TINY, "TOTAL": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    report = (out / "report.md").read_text()
    for step in STEPS:
        assert re.search(rf"^\| {step} \| skipped for lack of time \(\d s left of TOTAL, MIN_STEP 15\) \|", report,
                         re.M), (step, report)
    assert "Finished, 6 step(s) skipped for lack of time" in report
    assert [p.name for p in out.iterdir()] == ["report.md"]


def test_a_step_cut_to_its_limit_is_recorded_as_stopped(tmp_path):
    """A step that runs past its own limit (STEP_TIMEOUT_<step>) is stopped and recorded with exit 124; the next
    chosen step still runs, and the script's exit status is the stopped step's."""
    out = tmp_path / "out"
    done = gpu_sh(out, "bench_vae_small", "bench_vae_large",
                  **{**TINY, "STEP_TIMEOUT_bench_vae_small": "1"})
    assert done.returncode == 124, done.stdout + done.stderr
    report = (out / "report.md").read_text()
    assert re.search(r"^\| bench_vae_small \| stopped at its limit \(1 s\) \| 124 \| \d+ \| 1 \|$", report, re.M)
    assert re.search(r"^\| bench_vae_large \| ok \| 0 \|", report, re.M)
    assert "| latent 3, hidden 24 | pgm eager |" in report


@pytest.mark.parametrize("args, knobs, message", [
    (["tests", "bench_vea"], {}, "gpu.sh: unknown step 'bench_vea'; the steps are: " + " ".join(STEPS)),
    ([], {"TOTAL": "9m"}, "gpu.sh: TOTAL must be a whole number of seconds (epochs for EPOCHS); got '9m'"),
    ([], {"STEP_TIMEOUT_tests": "0"}, "gpu.sh: STEP_TIMEOUT_tests must be at least 1 second; got '0'"),
])
def test_an_unknown_step_or_a_bad_knob_exits_2_naming_what_is_allowed(tmp_path, args, knobs, message):
    """A step name the script does not have, or a knob that is not a number of seconds, stops it with exit 2 and
    one line saying what is allowed, before anything is written."""
    done = gpu_sh(tmp_path / "out", *args, **{**TINY, **knobs})
    assert done.returncode == 2
    assert done.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def test_bench_vae_names_both_sizes_as_the_earlier_plans_wrote_it(tmp_path):
    done = gpu_sh(tmp_path / "out", "bench_vae", **{**TINY, "TOTAL": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    rows = re.findall(r"^\| (\w+) \| skipped for lack of time", report, re.M)
    assert rows == ["device", "bench_vae_small", "bench_vae_large"]
