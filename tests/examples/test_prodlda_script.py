"""examples/prodlda.py runs end to end with tiny sizes and reports what it computes; its ELBO is a plain PyTorch
ProdLDA ELBO and Pyro's (TraceMeanField_ELBO, the tutorial's, and Trace_ELBO) on the same weights and draws, values
and gradients; on a small corpus it recovers the true topics."""
import itertools
import json

import numpy as np
import pytest
import torch
from scipy.stats import multinomial

import prodlda
from pgm.losses import KL, E, LogProb
from script_runs import error_line

TINY = ["--documents", "300", "--vocabulary", "30", "--topics", "3", "--epochs", "3", "--hidden", "16",
        "--batch-size", "64", "--eval-every", "2", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
PGM, LDA, TRUTH = "pgm ProdLDA", "scikit-learn LatentDirichletAllocation", "true topics and proportions"
UNIGRAM = "unigram (training word counts + 1)"
LATEX = r"- D_{KL}\left[q(z|x)\|p(z)\right] + \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force_matching(learned, truth):
    """The best mean cosine similarity over every one-to-one assignment of learned (K, V) to true (K, V) topics."""
    cosine = lambda a, b: float(a @ b / np.sqrt((a @ a) * (b @ b)))  # noqa: E731
    return max(np.mean([cosine(learned[i], truth[j]) for i, j in enumerate(order)])
               for order in itertools.permutations(range(len(truth))))


def test_the_script_runs_and_reports_its_topics_and_elbo(tmp_path, capsys):
    record = prodlda.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: a generated corpus (3 topics over 30 words; 240 train / 60 test documents of "
                              f"20-200 words)\nObjective (maximized):\n{LATEX}\n")
    assert saved["objective"] == LATEX and (saved["epochs"], saved["seed"], saved["labels"]) == (3, 0, "all")
    assert saved["history"]["monitor_epoch"] == [2, 3] and record[PGM] == saved[PGM]
    for picture in ("topics.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG

    # the topic similarity reported is the best matching of the learned topics p(word | theta = e_k), computed here
    # from the saved weights (batch normalization with its running statistics, then the learned shift)
    counts, theta, truth = prodlda.corpus(300, 30, 3, 0)
    weights = torch.load(tmp_path / "model.pt")["distributions"]
    beta, mean, variance = (weights[f"1.net.{name}"] for name in ("beta.weight", "norm.running_mean",
                                                                    "norm.running_var"))
    learned = ((beta.T - mean) / (variance + 1e-5).sqrt() + weights["1.net.norm.shift"]).softmax(-1)
    assert saved[PGM]["topic similarity"] == pytest.approx(brute_force_matching(learned.numpy(), truth.numpy()))
    assert 0 < saved[LDA]["topic similarity"] <= 1

    # the true model's log p(x|theta) and the unigram model's log p(x) per word of the 60 test documents, by scipy
    x, probabilities = counts[:60].numpy(), (theta[:60] @ truth).double().numpy()
    true_log_p = sum(multinomial.logpmf(row, row.sum(), p / p.sum()) for row, p in zip(x, probabilities))
    assert saved[TRUTH]["ELBO per word"] == pytest.approx(true_log_p / x.sum(), rel=1e-5)
    frequencies = counts[60:].double().numpy().sum(0) + 1
    unigram = sum(multinomial.logpmf(row, row.sum(), frequencies / frequencies.sum()) for row in x)
    assert saved[UNIGRAM]["ELBO per word"] == pytest.approx(unigram / x.sum(), rel=1e-5)
    assert saved[TRUTH]["ELBO per word"] > saved[PGM]["ELBO per word"]


def test_on_a_small_corpus_the_topics_are_recovered(tmp_path):
    record = prodlda.main(["--documents", "2000", "--vocabulary", "60", "--topics", "4", "--epochs", "30",
                           "--hidden", "32", "--batch-size", "64", "--eval-every", "0", "--device", "cpu",
                           "--out", str(tmp_path)])
    # random sparse topics match the true ones with about 0.2 (seeds 0 to 2 give 0.989, 0.979, 0.984)
    assert record[PGM]["topic similarity"] > 0.97
    assert record[TRUTH]["ELBO per word"] > record[PGM]["ELBO per word"] > record[UNIGRAM]["ELBO per word"] + 0.3


def plain_prodlda_elbo(encoder, decoder, x, alpha):
    """ProdLDA's one-sample ELBO per document (B,), written out in PyTorch: the decoder (no dropout) from its
    weights, the KL to N(0, (1 - 1/K) / alpha) (the symmetric Laplace prior) in closed form, the multinomial density
    of each document with its own length."""
    parameters = encoder(x)
    loc, scale = parameters["loc"], parameters["scale"]
    z = loc + scale * torch.empty_like(loc).normal_()
    prior_variance = (1 - 1 / loc.shape[-1]) / alpha
    kl = 0.5 * (scale ** 2 / prior_variance + loc ** 2 / prior_variance - 1 - (scale ** 2 / prior_variance).log())
    h = z.softmax(-1) @ decoder.beta.weight.T
    logits = (h - h.mean(0)) / (h.var(0, unbiased=False) + decoder.norm.eps).sqrt() + decoder.norm.shift
    log_likelihood = (torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1)
                      + (x * logits.log_softmax(-1)).sum(-1))
    return log_likelihood - kl.sum(-1)


def gradients(value, modules):
    return torch.autograd.grad(value, [p for m in modules for p in m.parameters()])


def documents(n, vocabulary):
    return torch.distributions.Poisson(torch.rand(vocabulary, dtype=torch.float64) * 3).sample((n,))


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_the_elbo_is_plain_pytorchs_on_the_same_weights_and_draws(alpha):
    torch.manual_seed(0)
    q, p, prior, elbo = prodlda.prodlda(vocabulary=20, topics=4, hidden=8, dropout=0.0, alpha=alpha)
    for distribution in (q, p, prior):
        distribution.double()
    x = documents(16, 20)
    with torch.no_grad():  # learned shifts away from 0, so a wrong use of them shows
        for norm in (q.net.loc[1], q.net.log_variance[1], p.net.norm):
            norm.shift.normal_()
    torch.manual_seed(1)
    value = elbo.eval({"x": x})
    torch.manual_seed(1)
    expected = plain_prodlda_elbo(q.net, p.net, x, alpha)
    torch.testing.assert_close(value, expected)
    for got, reference in zip(gradients(value.mean(), [q, p]), gradients(expected.mean(), [q, p])):
        torch.testing.assert_close(got, reference)


def import_pyro():
    try:
        import pyro
    except ImportError:
        pytest.fail("Pyro is needed to compare ProdLDA's loss with Pyro's; install the test extra: "
                    "pip install -e '.[test]' (or pip install pyro-ppl)")
    return pyro


@pytest.mark.parametrize("analytic", [True, False], ids=["TraceMeanField_ELBO", "Trace_ELBO"])
def test_the_loss_is_pyros_on_the_same_weights_and_draws(analytic):
    """Pyro's ProdLDA tutorial's model and guide, on the script's networks (dropout 0.2) and prior: Pyro's
    TraceMeanField_ELBO is -(analytic KL) + log-likelihood; its Trace_ELBO estimates the KL on the same draw, as
    pgm's KL(q, p, analytic=False) does."""
    pyro = import_pyro()
    import pyro.distributions as dist
    from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

    torch.manual_seed(0)
    q, p, prior, _ = prodlda.prodlda(vocabulary=30, topics=5, hidden=12, dropout=0.2, alpha=1.0)
    for distribution in (q, p, prior):
        distribution.double()
    encoder, decoder, x = q.net, p.net, documents(16, 30)

    def model(docs):
        pyro.module("decoder", decoder)
        with pyro.plate("documents", docs.shape[0]):
            logtheta = pyro.sample("logtheta", dist.Normal(prior.loc.expand(docs.shape[0], -1),
                                                           prior.scale.expand(docs.shape[0], -1)).to_event(1))
            total_count = int(docs.sum(-1).max())  # Pyro's Multinomial scores each row with its own sum
            pyro.sample("obs", dist.Multinomial(total_count, logits=decoder(logtheta)["logits"]), obs=docs)

    def guide(docs):
        pyro.module("encoder", encoder)
        with pyro.plate("documents", docs.shape[0]):
            parameters = encoder(docs)
            pyro.sample("logtheta", dist.Normal(parameters["loc"], parameters["scale"]).to_event(1))

    pyro.clear_param_store()
    torch.manual_seed(1)
    expected = (TraceMeanField_ELBO() if analytic else Trace_ELBO()).differentiable_loss(model, guide, x) / len(x)
    torch.manual_seed(1)
    loss = (KL(q, prior, analytic=analytic) - E(q, LogProb(p))).mean()
    value = loss.eval({"x": x})
    torch.testing.assert_close(value, expected)
    for got, reference in zip(gradients(value, [q, p]), gradients(expected, [q, p])):
        torch.testing.assert_close(got, reference)


def test_the_prior_is_the_laplace_approximation_of_the_dirichlet():
    """At its mode (softmax(mu) = alpha / sum(alpha), sum mu = 0), the inverse of the Hessian of -sum_k alpha_k log
    softmax(h)_k (the Dirichlet's density in the softmax basis) on the plane sum h = 0 has sigma^2 on its diagonal."""
    alpha = torch.tensor([0.3, 1.0, 2.5, 0.7, 4.0], dtype=torch.float64)
    loc, scale = prodlda.laplace_prior(alpha)
    h = loc.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(-(alpha * h.log_softmax(-1)).sum(), h)
    torch.testing.assert_close(gradient, torch.zeros(5, dtype=torch.float64))
    assert loc.sum().item() == pytest.approx(0, abs=1e-12)
    hessian = torch.autograd.functional.hessian(lambda h: -(alpha * h.log_softmax(-1)).sum(), loc)
    plane = torch.eye(5, dtype=torch.float64) - 1 / 5
    torch.testing.assert_close(torch.linalg.pinv(plane @ hessian @ plane).diagonal(), scale ** 2)
    # symmetric: N(0, (1 - 1/K) / alpha)
    loc, scale = prodlda.laplace_prior(torch.full((8,), 2.0))
    torch.testing.assert_close(loc, torch.zeros(8))
    torch.testing.assert_close(scale ** 2, torch.full((8,), (1 - 1 / 8) / 2))


def test_the_matching_is_the_best_assignment():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    truth = torch.distributions.Dirichlet(torch.full((40,), 0.1)).sample((5,))
    learned = truth[[3, 0, 4, 1, 2]] + 0.02 * torch.rand(5, 40, generator=generator)
    similarity, order, matrix = prodlda.matched_similarity(learned, truth)
    assert order.tolist() == [3, 0, 4, 1, 2] and matrix.shape == (5, 5)
    assert similarity == pytest.approx(brute_force_matching(learned.numpy(), truth.numpy()))
    noise = torch.rand(5, 40, generator=generator)
    assert prodlda.matched_similarity(noise, truth)[0] == pytest.approx(
        brute_force_matching(noise.numpy(), truth.numpy()))


@pytest.mark.parametrize("argv, message", [
    (["--documents", "9"], "argument --documents: must be >= 10; got 9"),
    (["--topics", "1"], "argument --topics: must be >= 2; got 1"),
    (["--alpha", "0"], "argument --alpha: must be > 0; got 0"),
    (["--dropout", "1"], "argument --dropout: must be < 1; got 1"),
])
def test_bad_option_values_are_one_error_line(argv, message, capsys, tmp_path):
    line = error_line("prodlda", [*argv, "--out", str(tmp_path / "run")], capsys)
    assert line.startswith(f"error: {message} (see ") and line.endswith("--help)")
    assert not (tmp_path / "run").exists()  # refused before anything was written
