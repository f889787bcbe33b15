"""benchmarks/bench_beta_tcvae.py times the same model three ways: pgm's beta-TCVAE loss (q's parameters read with
ParametersOf, or q's network run again) and the hand-written one agree on the same weights and draws (value and
gradients), train alike step by step, and the script runs at tiny sizes and refuses options it cannot run."""
import copy
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench_beta_tcvae  # noqa: E402
from bench_beta_tcvae import Decoder, Encoder  # noqa: E402

N = 1797
TINY = ["--device", "cpu", "--threads", "1", "--steps", "2", "--warmup", "1", "--rounds", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed=0, latent=3, hidden=16, batch=12):
    torch.manual_seed(seed)
    return (Encoder(latent, hidden), Decoder(latent, hidden)), torch.rand(batch, bench_beta_tcvae.X_DIM)


def test_the_minibatch_weighted_estimate_is_written_out():
    # against torch.distributions, one pair of examples at a time
    torch.manual_seed(0)
    z, loc, scale = torch.randn(4, 2), torch.randn(4, 2), torch.rand(4, 2) + 0.5
    log_q_z, log_q_z_d = bench_beta_tcvae.aggregate_log_densities(z, loc, scale, dataset_size=N)
    pairs = torch.stack([torch.stack([torch.distributions.Normal(loc[j], scale[j]).log_prob(z[i]) for j in range(4)])
                         for i in range(4)])  # (i, j, d)
    torch.testing.assert_close(log_q_z, torch.logsumexp(pairs.sum(-1), 1) - math.log(4 * N))
    torch.testing.assert_close(log_q_z_d, (torch.logsumexp(pairs, 1) - math.log(4 * N)).sum(-1))


@pytest.mark.parametrize("rerun", [False, True])
def test_the_losses_and_their_gradients_agree_on_the_same_weights_and_draws(rerun):
    modules, x = tiny()
    loss, _ = bench_beta_tcvae.pgm_loss(*modules, N, rerun=rerun)
    torch.manual_seed(1)
    ours = loss.eval({"x": x}, **bench_beta_tcvae.WEIGHTS)
    torch.manual_seed(1)
    by_hand = bench_beta_tcvae.negative_objective(*modules, x, N, **bench_beta_tcvae.WEIGHTS)
    torch.testing.assert_close(ours, by_hand)
    parameters = [p for m in modules for p in m.parameters()]
    for a, b in zip(torch.autograd.grad(ours, parameters), torch.autograd.grad(by_hand, parameters)):
        torch.testing.assert_close(a, b)
    other, _ = bench_beta_tcvae.both_losses(modules, x, N, seed=2)  # other draws, another value
    assert abs(other.item() - ours.item()) > 1e-3


def test_both_train_alike_step_by_step():
    modules, x = tiny()
    data = [x, torch.rand(12, bench_beta_tcvae.X_DIM)]
    losses = []
    for build in (bench_beta_tcvae.pytorch(False), bench_beta_tcvae.pgm_model(False),
                  bench_beta_tcvae.pgm_model(False, rerun=True)):
        step = build(copy.deepcopy(modules), data, N, torch.device("cpu"))
        torch.manual_seed(7)
        losses.append([float(step(i)) for i in range(4)])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and losses[0] == pytest.approx(losses[2], rel=1e-5)


def test_the_script_runs_at_tiny_sizes(capsys):
    rows, differences = bench_beta_tcvae.main(TINY + ["--configs", "2x16x32",
                                                      "--impls", "pytorch eager,pgm eager,pgm eager (q rerun)"])
    printed = capsys.readouterr().out
    assert [impl for _, impl, *_ in rows] == ["pytorch eager", "pgm eager", "pgm eager (q rerun)"]
    assert list(differences) == ["latent 2, hidden 16, batch 32"]
    assert differences["latent 2, hidden 16, batch 32"] < 1e-4
    assert "largest difference over 8 batches" in printed and "| pgm eager (q rerun) |" in printed
    assert rows[0][4] == pytest.approx(rows[1][4], rel=0.01)  # the same batches: mean losses agree


@pytest.mark.parametrize("argv, message", [
    (["--configs", "10x400"], "each configuration is 3 positive integers joined by x, comma-separated, e.g. "
                              "10x400x100,10x400x256; got '10x400'"),
    (["--configs", "10x400x0"], "got '10x400x0'"),
    (["--configs", "10x400x100,10x400x2000"], "--configs: a batch of 2000 is more than the 1,797 digits; use at most "
                                              "1797"),
])
def test_bad_configurations_are_refused_with_the_form_expected(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench_beta_tcvae.main(TINY + argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unknown_implementation_is_named_with_those_that_run():
    with pytest.raises(SystemExit, match=r"--impls: 'pgm' not among the implementations that run here: pytorch eager, "
                                         r"pytorch torch.compile, pgm eager, pgm compile=True \(inductor\), "
                                         r"pgm eager \(q rerun\)"):
        bench_beta_tcvae.main(TINY + ["--configs", "2x16x32", "--impls", "pgm"])
