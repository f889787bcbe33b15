"""examples/hmm.py runs end to end with tiny sizes and prints the ELBO summed over t (or, in its maximum-likelihood
mode, log p(x) by pgm's forward algorithm); the learned HMM's exact test log p(x) (forward algorithm) rises from
its initialization towards the true HMM's, which it stays below; the forward algorithm equals the sum over every
state path of the pgm distributions' own densities."""
import itertools
import json

import pytest
import torch
from torch.nn import functional as F

import hmm
from pgm.losses import ELBO, Sum

TINY = ["--states", "3", "--symbols", "6", "--steps", "8", "--sequences", "200", "--epochs", "10", "--batch-size",
        "20", "--hidden", "16", "--eval-every", "5", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
LATEX = (r"\sum_{t=1}^{T} \left[\mathbb{E}_{q(y_t|x_t,y_{t-1})}\left[\log p(x_t|y_t)\right]"
         r" - D_{KL}\left[q(y_t|x_t,y_{t-1})\|p(y_t|y_{t-1})\right]\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def log_likelihood_by_paths(p_y, p_x, x, k):
    """log p(x_{1:T}) = log sum over the K^T state paths of prod_t p(y_t|y_{t-1}) p(x_t|y_t), each factor from the
    pgm distributions themselves (y_0 = 0): x (n, T, V) -> (n,)."""
    n, steps, _ = x.shape
    paths = torch.tensor(list(itertools.product(range(k), repeat=steps)))  # (P, T)
    y = F.one_hot(paths, k).float().repeat_interleave(n, 0)  # (P n, T, K)
    x = x.repeat(len(paths), 1, 1)  # (P n, T, V)
    total, y_prev = 0, torch.zeros(len(x), k)
    for t in range(steps):
        total = total + p_y.log_prob({"y": y[:, t], "y_prev": y_prev}) + p_x.log_prob({"x": x[:, t], "y": y[:, t]})
        y_prev = y[:, t]
    return total.reshape(len(paths), n).logsumexp(0)


@pytest.mark.parametrize("estimator", ["score_function", "enumerate"])
def test_hmm(estimator, tmp_path, capsys, built_models):
    built = built_models(hmm)
    record = hmm.main(TINY + ["--estimator", estimator, "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: a random HMM (3 states, 6 symbols; 200 train / 50 test sequences of 8 steps)")
    assert f"Objective (maximized):\n{LATEX}\n" in printed and saved["objective"] == LATEX
    assert saved["history"]["monitor_epoch"] == [5, 10] and saved["settings"]["estimator"] == estimator
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == PNG
    trained = f"HMM trained ({estimator.replace('_', ' ')})"
    true, initial, learned = (saved[row] for row in ("true HMM", "HMM at initialization", trained))
    assert record[trained] == learned and saved["history"]["test log p(x)"][-1] == pytest.approx(learned["log p(x)"])

    # training moves the exact log-likelihood well up from the initialization, towards the true HMM's, the
    # reference a model fitted on other sequences does not beat but by chance (here by far less than 0.5 nats)
    assert learned["log p(x)"] > initial["log p(x)"] + 3
    assert learned["log p(x)"] < true["log p(x)"] + 0.5
    # the ELBO (one trajectory of q per sequence) stays below log p(x), up to that noise
    for row in (initial, learned):
        assert row["ELBO"] < row["log p(x)"] + 0.5
    assert learned["ELBO"] > initial["ELBO"] + 3

    # the forward algorithm the scores come from is the likelihood of the trained pgm distributions: the sum over
    # all 3^8 state paths of their own densities
    (model,) = built
    q, p_y, p_x = list(model.distributions)[:3]
    x = hmm.sample(hmm.random_hmm(3, 6, 0), 50, 8, 1)  # the test sequences
    forward = hmm.log_likelihood(x, *p_y.net.log_tables(), p_x.net.table.log_softmax(-1))
    with torch.no_grad():
        torch.testing.assert_close(forward, log_likelihood_by_paths(p_y, p_x, x, 3))
    assert forward.mean().item() == pytest.approx(learned["log p(x)"], abs=1e-4)


def test_forward_algorithm_of_the_true_hmm():
    # the true HMM's tables are distributions, and its log p(x) by the forward algorithm is the sum over paths
    log_pi, log_a, log_b = hmm.random_hmm(3, 5, seed=4)
    for table in (log_pi, log_a, log_b):
        torch.testing.assert_close(table.exp().sum(-1), torch.ones(table.shape[:-1]))
    x = hmm.sample((log_pi, log_a, log_b), 20, 6, seed=0)
    paths = torch.tensor(list(itertools.product(range(3), repeat=6)))  # (P, T)
    emitted = log_b.T[x.argmax(-1)]  # (n, T, K)
    joint = (log_pi[paths[:, 0]] + log_a[paths[:, :-1], paths[:, 1:]].sum(-1))[:, None] \
        + emitted.gather(2, paths.T[None].expand(20, -1, -1)).sum(1).T  # (P, n)
    torch.testing.assert_close(hmm.log_likelihood(x, log_pi, log_a, log_b), joint.logsumexp(0))


def test_the_objective_is_the_elbo_summed_over_t():
    for estimator in ("score_function", "enumerate"):
        elbo, (q, p_y, p_x) = hmm.build(3, 6, 8, estimator)
        written = Sum(ELBO(p_x * p_y, q), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(3)})
        assert elbo.latex() == written.latex() == LATEX
        assert elbo.eval({"x": hmm.sample(hmm.random_hmm(3, 6, 0), 4, 5, 0)}).shape == (4,)


def test_maximum_likelihood_by_the_forward_algorithm(tmp_path, capsys, built_models):
    """--estimator exact trains p alone on log p(x) summed over every path by pgm (Sum(..., marginalize="y")): its
    value is the hand-written forward algorithm's, before and after training, and it nears the true HMM's."""
    built = built_models(hmm)
    hmm.main(TINY + ["--estimator", "exact", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    exact = r"\log \sum_{y_{1:T}} \prod_{t=1}^{T} p(x_t,y_t|y_{t-1})"
    assert f"Objective (maximized):\n{exact}\n" in printed and saved["objective"] == exact
    true, initial, learned = (saved[row] for row in ("true HMM", "HMM at initialization", "HMM trained (exact)"))
    for row in (initial, learned):  # pgm's objective is the forward algorithm's log p(x)
        assert row["ELBO"] == pytest.approx(row["log p(x)"], abs=1e-4)
    assert learned["log p(x)"] > initial["log p(x)"] + 3
    assert learned["log p(x)"] < true["log p(x)"] + 0.5
    (model,) = built
    assert len(list(model.distributions)) == 2  # no q
    p_y, p_x = model.distributions
    x = hmm.sample(hmm.random_hmm(3, 6, 0), 50, 8, 1)  # the test sequences
    with torch.no_grad():
        assert -model.test({"x": x}) == pytest.approx(log_likelihood_by_paths(p_y, p_x, x, 3).mean().item(), rel=1e-5)


def test_states_are_decoded_whatever_the_learned_model_calls_them():
    """decoded(): near-deterministic emissions give the states away, so the true HMM decodes nearly all of them, by
    pgm's posterior; the same HMM with its states numbered otherwise decodes exactly as many."""
    k = 3
    log_pi = torch.full((k,), 1 / k).log()
    log_a = torch.full((k, k), 0.1).fill_diagonal_(0.8).log()
    log_b = torch.full((k, k), 0.01).fill_diagonal_(0.98).log()
    x, states = hmm.sample((log_pi, log_a, log_b), 40, 12, seed=3, states=True)
    p_y, p_x = hmm.true_model((log_pi, log_a, log_b), "cpu")
    share = hmm.decoded(p_y, p_x, x, states)
    assert share > 95
    order = torch.tensor([2, 0, 1])  # learned state i is true state order[i]
    with torch.no_grad():
        p_y.net.initial.copy_(log_pi[order]), p_y.net.table.copy_(log_a[order][:, order])
        p_x.net.table.copy_(log_b[order])
    assert hmm.decoded(p_y, p_x, x, states) == pytest.approx(share)
    # and a model that confuses two states decodes fewer
    with torch.no_grad():
        p_x.net.table.copy_(log_b[[0, 0, 2]])
    assert hmm.decoded(p_y, p_x, x, states) < share - 10
