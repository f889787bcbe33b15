"""The VAE and SS-HMVAE-kl benchmarks run at tiny sizes, every implementation on the same objective, and refuse
options they cannot run with a message naming what is allowed."""
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench_ss_hmvae_kl  # noqa: E402
import bench_vae  # noqa: E402

TINY = ["--device", "cpu", "--threads", "1", "--steps", "2", "--warmup", "1", "--rounds", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_vae_benchmark_times_pgm_and_pytorch_on_one_objective():
    rows = bench_vae.main(TINY + ["--configs", "2x16", "--impls", "pytorch eager,pgm eager"])
    assert [(r[0], r[1]) for r in rows] == [("latent 2, hidden 16", "pytorch eager"), ("latent 2, hidden 16", "pgm eager")]
    assert all(r[2] > 0 for r in rows)
    # the same weights and batches: the mean losses (about 544 nats at the start) agree to the sampling noise
    assert rows[0][4] == pytest.approx(rows[1][4], rel=0.01)


def test_the_ss_hmvae_kl_benchmark_runs_both_eager_steps():
    rows = bench_ss_hmvae_kl.main(TINY + ["--configs", "8", "--hidden", "16", "--impls", "pytorch eager,pgm eager"])
    assert [r[1] for r in rows] == ["pytorch eager", "pgm eager"]
    assert rows[0][4] == pytest.approx(rows[1][4], rel=0.05)


@pytest.mark.parametrize("script, configs, message", [
    (bench_vae, "10", "each configuration is 2 positive integers joined by x, comma-separated, e.g. "
                      "10x400,10x2000,30x400,30x2000; got '10'"),
    (bench_ss_hmvae_kl, "10x400", "each configuration is 1 positive integer, comma-separated, e.g. 512; "
                                  "got '10x400'"),
    (bench_vae, "10x0", "got '10x0'"),
])
def test_bad_configurations_are_refused_with_the_form_expected(script, configs, message, capsys):
    with pytest.raises(SystemExit) as stop:
        script.main(TINY + ["--configs", configs])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_implementation_is_named_with_those_that_run():
    with pytest.raises(SystemExit, match=r"--impls: 'pytorch_eager' not among the implementations that run here: "
                                         r"pytorch eager, pytorch torch.compile, pgm eager"):
        bench_vae.main(TINY + ["--configs", "2x16", "--impls", "pytorch_eager"])
