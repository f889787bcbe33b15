"""examples/bayesian_regression.py runs end to end at a tiny size, its q(w) converges to mean-field VI's exact
optimum (mean mu, variances 1 / diag(Sigma^-1), not diag(Sigma)), and its loss, with a global w drawn once per
step and the minibatch scaled to the data set by sum(size=N), is a plain PyTorch ELBO: values and gradients."""
import json

import numpy as np
import pytest
import torch

import bayesian_regression
from script_runs import tiny_run

N, D, NOISE, PRIOR_SCALE = 100, 3, 1.0, 1.0
TINY = ["--points", str(N), "--features", str(D), "--batch-size", "50", "--epochs", "300", "--lr", "0.005",
        "--samples", "16", "--eval-every", "100", "--checkpoint-every", "300", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
PGM, OPTIMUM = "pgm q(w) (Adam)", "mean-field optimum q*"

pytestmark = pytest.mark.usefixtures("one_thread")

BAYES_BY_BACKPROP = (r"\mathbb{E}_{q(w)}\left[\sum_{n=1}^{N} \log p(y_n|x_n,w)\right] - "
                     r"D_{KL}\left[q(w)\|p(w)\right]")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The script's record, printed text and results folder at the tiny size (run once for the module)."""
    return tiny_run("bayesian_regression", TINY, tmp_path_factory.mktemp("bayesian_regression"))


def exact(x, y):
    """The posterior's mean, covariance and precision for p(w) = N(0, PRIOR_SCALE^2 I), noise NOISE (float64)."""
    x, y = x.double().numpy(), y.double().numpy()
    precision = np.eye(D) / PRIOR_SCALE ** 2 + x.T @ x / NOISE ** 2
    covariance = np.linalg.inv(precision)
    return covariance @ x.T @ y / NOISE ** 2, covariance, precision


def learned_q(out):
    """The trained q(w)'s mean and log-scale, read from the script's model.pt (q(w) is its first distribution)."""
    state = torch.load(out / "model.pt")["distributions"]
    return state["0.learned.loc.unconstrained"], state["0.learned.scale.unconstrained"]


def test_q_converges_to_the_mean_field_optimum(run):
    record, printed, out = run
    saved = json.loads((out / "results.json").read_text())
    objective, *_ = bayesian_regression.bayesian_regression(D, N, NOISE, PRIOR_SCALE, samples=16)
    assert printed.startswith(f"Data: generated linear regression (N = {N}, D = {D}, feature correlation 0.8, "
                              f"noise 1)\nObjective (maximized):\n{objective.latex()}\n")
    assert objective.latex() == BAYES_BY_BACKPROP  # as Blundell et al. (2015) write it: N examples, the KL once
    assert saved["objective"] == objective.latex() and saved["history"]["monitor_epoch"] == [100, 200, 300]
    assert record[PGM] == saved[PGM]
    for picture in ("marginals.png", "graphical_model.png", "learning_curves.png"):
        assert (out / picture).read_bytes()[:8] == PNG

    x, y, _ = bayesian_regression.regression_data(N, D, 0.8, NOISE, PRIOR_SCALE, seed=0)
    mu, covariance, precision = exact(x, y)
    optimum_scale, exact_scale = 1 / np.sqrt(np.diag(precision)), np.sqrt(np.diag(covariance))
    loc, log_scale = learned_q(out)
    loc, scale = loc.double().numpy(), log_scale.double().exp().numpy()
    # Adam's iterates jitter about q* (the gradient is a 16-draw estimate on half the data): within 0.5 of q*'s
    # scale in the mean and 10% in the scale. A likelihood not scaled to N by sum(size=N) (a prior twice as
    # strong) is off by 40% in the scale, and so is the posterior's own marginal scale with these correlations.
    assert np.abs(loc - mu).max() < 0.5 * optimum_scale.min()
    np.testing.assert_allclose(scale, optimum_scale, rtol=0.1)
    assert np.abs(exact_scale / optimum_scale - 1).min() > 0.4

    # the script's reported distances are these, and q* is exactly where it is
    assert saved[PGM]["mean error"] == pytest.approx(np.abs((loc - mu) / optimum_scale).max(), rel=1e-4)
    assert saved[PGM]["scale error vs q*"] == pytest.approx(np.abs(scale / optimum_scale - 1).max(), rel=1e-4)
    assert saved[PGM]["scale error vs posterior"] == pytest.approx(np.abs(scale / exact_scale - 1).max(), rel=1e-4)
    assert saved[OPTIMUM]["mean error"] == pytest.approx(0, abs=1e-9)
    assert saved[OPTIMUM]["scale error vs q*"] == pytest.approx(0, abs=1e-9)
    # KL(q* || posterior) in closed form: the mean-field gap
    gap = 0.5 * (np.sum(np.diag(precision) * optimum_scale ** 2) - D + np.linalg.slogdet(covariance)[1]
                 - 2 * np.log(optimum_scale).sum())
    assert saved[OPTIMUM]["KL(q || posterior)"] == pytest.approx(gap, rel=1e-6)
    assert gap < saved[PGM]["KL(q || posterior)"] < gap + 0.1  # 0.04 nats above the gap here


def plain_elbo(loc, log_scale, eps, x, y):
    """Bayes by backprop's objective in plain PyTorch: w = loc + exp(log_scale) eps, eps (K, D);
    N/B sum_b log N(y_b; x_b^T w, NOISE^2), averaged over the K draws, minus KL(N(loc, scale^2) || N(0, 1))."""
    scale = log_scale.exp()
    w = loc + scale * eps  # (K, D): one w per draw, shared by the batch
    residual = y - w @ x.T  # (K, B)
    log_likelihood = -0.5 * (residual / NOISE) ** 2 - np.log(NOISE) - 0.5 * np.log(2 * np.pi)
    kl = (np.log(PRIOR_SCALE) - log_scale + (scale ** 2 + loc ** 2) / (2 * PRIOR_SCALE ** 2) - 0.5).sum()
    return N * log_likelihood.mean(-1).mean() - kl


@pytest.mark.parametrize("samples", [1, 3])
def test_the_loss_is_a_plain_pytorch_elbo(run, samples):
    objective, q_w, _, _ = bayesian_regression.bayesian_regression(D, N, NOISE, PRIOR_SCALE, samples=samples)
    trained = learned_q(run[2])
    with torch.no_grad():  # the script's variational parameters
        for key, value in zip(("loc", "scale"), trained):
            q_w.learned[key].unconstrained.copy_(value)
    x, y, _ = bayesian_regression.regression_data(N, D, 0.8, NOISE, PRIOR_SCALE, seed=0)
    x, y = x[:20], y[:20]  # a minibatch of the N points

    torch.manual_seed(7)
    value = objective.eval({"x": x, "y": y})
    grads = torch.autograd.grad(value, [q_w.learned.loc.unconstrained, q_w.learned.scale.unconstrained])
    torch.manual_seed(7)
    eps = torch.randn(samples, 1, D)[:, 0]  # the same noise draw: w is global, one per draw
    loc, log_scale = (t.clone().requires_grad_() for t in trained)
    expected = plain_elbo(loc, log_scale, eps, x, y)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grads, torch.autograd.grad(expected, [loc, log_scale]))
