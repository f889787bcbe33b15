"""examples/bayes_by_backprop.py runs end to end at a tiny size and its loss is Bayes by backprop's, written here in
plain PyTorch on the same variational parameters and the same noise: w = m + s eps drawn once per step (global,
shared by the minibatch), the minibatch's log-likelihood scaled to the N points, the Gaussian KL counted once.
Its test scores are the plain predictive's of the learned q(w)."""
import json
import math

import pytest
import torch

import bayes_by_backprop
from script_runs import tiny_run

N, H, NOISE, PRIOR_SCALE, S = 100, 8, 0.1, 1.0, 20
TINY = ["--points", str(N), "--hidden", str(H), "--batch-size", "50", "--epochs", "300", "--lr", "0.02",
        "--samples", "2", "--draws", str(S), "--eval-every", "100", "--checkpoint-every", "300", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
BBB, MEAN = f"Bayes by backprop ({S} draws of w)", "q's mean weights only"

pytestmark = pytest.mark.usefixtures("one_thread")

BAYES_BY_BACKPROP = (r"\mathbb{E}_{q(w)}\left[\sum_{n=1}^{N} \log p(y_n|x_n,w)\right] - "
                     r"D_{KL}\left[q(w)\|p(w)\right]")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The script's record, printed text and results folder at the tiny size (run once for the module)."""
    return tiny_run("bayes_by_backprop", TINY, tmp_path_factory.mktemp("bayes_by_backprop"))


def learned_q(out):
    """The trained q(w)'s mean and log-scale, read from the script's model.pt (q(w) is its first distribution)."""
    state = torch.load(out / "model.pt")["distributions"]
    return state["0.learned.loc.unconstrained"], state["0.learned.scale.unconstrained"]


def data():
    generator = torch.Generator().manual_seed(0)
    return bayes_by_backprop.points(N, NOISE, generator), bayes_by_backprop.points(N, NOISE, generator)


def mlp(x, w):
    """f_w(x) of the 1-H-1 tanh network for draws w (K, 3H + 1) on x (B, 1), with matrices: (K, B)."""
    w1, b1 = w[:, :H].reshape(-1, 1, H), w[:, H:2 * H]                 # (K, 1, H), (K, H)
    w2, b2 = w[:, 2 * H:3 * H].reshape(-1, H, 1), w[:, 3 * H:]         # (K, H, 1), (K, 1)
    hidden = torch.tanh(x @ w1 + b1[:, None])                          # (K, B, H)
    return (hidden @ w2)[..., 0] + b2


def log_normal(y, loc, scale):
    return -0.5 * ((y - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def plain_bayes_by_backprop(loc, log_scale, eps, x, y):
    """Blundell et al.'s objective: w = loc + exp(log_scale) eps, eps (K, P); N/B sum_b log N(y_b; f_w(x_b),
    NOISE^2) averaged over the K draws, minus KL(N(loc, scale^2) || N(0, PRIOR_SCALE^2)) in closed form."""
    scale = log_scale.exp()
    w = loc + scale * eps
    log_likelihood = log_normal(y[:, 0], mlp(x, w), NOISE)  # (K, B)
    kl = (math.log(PRIOR_SCALE) - log_scale + (scale ** 2 + loc ** 2) / (2 * PRIOR_SCALE ** 2) - 0.5).sum()
    return N * log_likelihood.mean() - kl


def test_the_script_runs_and_reports_the_plain_predictive(run):
    record, printed, out = run
    saved = json.loads((out / "results.json").read_text())
    objective, *_ = bayes_by_backprop.bayes_by_backprop(H, N, NOISE, PRIOR_SCALE, samples=2)
    assert printed.startswith(f"Data: y = sin(2x) + x/2 + N(0, 0.1^2), x outside (-1, 1) ({N} points)\n"
                              f"Objective (maximized):\n{objective.latex()}\n")
    assert objective.latex() == BAYES_BY_BACKPROP  # as Blundell et al. (2015) write it: N examples, the KL once
    assert saved["objective"] == objective.latex() and saved["history"]["monitor_epoch"] == [100, 200, 300]
    assert record[BBB] == saved[BBB] and saved["history"]["test log-likelihood"][-1] == saved[BBB][
        "test log-likelihood"]
    for picture in ("predictive.png", "graphical_model.png", "learning_curves.png"):
        assert (out / picture).read_bytes()[:8] == PNG

    # the scores: S draws w_s = m + s eps_s with the noise of torch.manual_seed(seed), plain predictive
    loc, log_scale = learned_q(out)
    _, (x_test, y_test) = data()
    torch.manual_seed(0)
    f = mlp(x_test, loc + log_scale.exp() * torch.randn(S, 3 * H + 1))  # (S, n)
    log_p = (log_normal(y_test[:, 0], f, NOISE).logsumexp(0) - math.log(S)).mean()
    assert saved[BBB]["test RMSE"] == pytest.approx((f.mean(0) - y_test[:, 0]).pow(2).mean().sqrt().item(), rel=1e-5)
    assert saved[BBB]["test log-likelihood"] == pytest.approx(log_p.item(), rel=1e-5, abs=1e-5)
    f_mean = mlp(x_test, loc[None])[0]
    assert saved[MEAN]["test RMSE"] == pytest.approx((f_mean - y_test[:, 0]).pow(2).mean().sqrt().item(), rel=1e-5)
    assert saved[MEAN]["test log-likelihood"] == pytest.approx(log_normal(y_test[:, 0], f_mean, NOISE).mean().item(),
                                                                rel=1e-5, abs=1e-5)
    # and it has learned the curve: an error far below the data's spread (0.8; a straight line leaves 0.57)
    assert saved[BBB]["test RMSE"] < 0.3 * y_test.std().item()


def test_the_band_widens_in_the_gap(run):
    _, _, out = run
    loc, log_scale = learned_q(out)
    torch.manual_seed(1)
    w = loc + log_scale.exp() * torch.randn(200, 3 * H + 1)
    spread = mlp(torch.linspace(-3, 3, 61)[:, None], w).std(0)  # the standard deviation of f_w(x) over the draws
    inside, outside = spread[25:36], torch.cat([spread[:15], spread[-15:]])  # |x| <= 0.5 and 1.6 <= |x| <= 3
    assert inside.mean() > 2 * outside.mean()


@pytest.mark.parametrize("samples", [1, 3])
def test_the_loss_is_plain_bayes_by_backprop(run, samples):
    _, _, out = run
    objective, q_w, _, _ = bayes_by_backprop.bayes_by_backprop(H, N, NOISE, PRIOR_SCALE, samples=samples)
    trained = learned_q(out)
    with torch.no_grad():  # the script's variational parameters
        for key, value in zip(("loc", "scale"), trained):
            q_w.learned[key].unconstrained.copy_(value)
    (x, y), _ = data()
    x, y = x[:25], y[:25]  # a minibatch of the N points

    torch.manual_seed(7)
    value = objective.eval({"x": x, "y": y})
    parameters = [q_w.learned.loc.unconstrained, q_w.learned.scale.unconstrained]
    grads = torch.autograd.grad(value, parameters)
    torch.manual_seed(7)
    eps = torch.randn(samples, 1, 3 * H + 1)[:, 0]  # the same noise: one w per draw, shared by the batch
    loc, log_scale = (t.clone().requires_grad_() for t in trained)
    expected = plain_bayes_by_backprop(loc, log_scale, eps, x, y)
    torch.testing.assert_close(value, expected)
    # float32, summed in another order (matrix products here, the script's products summed over the units)
    torch.testing.assert_close(grads, torch.autograd.grad(expected, [loc, log_scale]), rtol=1e-4, atol=1e-4)
