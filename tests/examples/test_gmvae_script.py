"""examples/gmvae.py runs end to end with tiny sizes, prints its bound exactly and writes its results; training raises
the test ELBO and the clustering accuracy well above the same networks' at initialization; its loss is the bound
written by hand in plain torch (the exact sum over the clusters, the same draws of z), and its clustering accuracy
is the best one-to-one matching of clusters to labels."""
import itertools
import json

import numpy as np
import pytest
import torch
import torch.distributions as td
from torch.nn import functional as F

import gmvae
from common import data, evaluation

TINY = ["--epochs", "8", "--hidden", "32", "--latent", "4", "--batch-size", "128", "--eval-every", "4",
        "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
LATEX = (r"\mathbb{E}_{q(y|x)}\left[\mathbb{E}_{q(z|x,y)}\left[\log p(x|z)\right]"
         r" - D_{KL}\left[q(z|x,y)\|p(z|y)\right]\right] - D_{KL}\left[q(y|x)\|p(y)\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def elbo_by_hand(q_y, q_z, p_x, p_z, x, k):
    """The GMVAE bound per example from the networks: sum_y q(y|x) (log p(x|z_y) - KL(q(z|x,y) || p(z|y)))
    - KL(q(y|x) || Cat(1/K)), z_y ~ q(z|x,y) drawn for the K clusters at once."""
    n = len(x)
    y = torch.eye(k).repeat_interleave(n, 0)  # (K n, K): every cluster for every example
    posterior = q_z.net(x.repeat(k, 1), y)
    posterior = td.Normal(posterior["loc"].reshape(k, n, -1), posterior["scale"].reshape(k, n, -1))
    z = posterior.rsample()  # (K, n, Z)
    log_px = -F.binary_cross_entropy_with_logits(p_x.net(z.reshape(k * n, -1))["logits"], x.repeat(k, 1),
                                                 reduction="none").sum(-1).reshape(k, n)
    prior = td.Normal(p_z.net.loc[:, None], p_z.net.log_scale.exp()[:, None])  # (K, 1, Z)
    kl_z = td.kl_divergence(posterior, prior).sum(-1)  # (K, n)
    q = td.Categorical(logits=q_y.net(x)["logits"])
    kl_y = td.kl_divergence(q, td.Categorical(probs=torch.full((k,), 1 / k)))
    return (q.probs.T * (log_px - kl_z)).sum(0) - kl_y


def test_gmvae(tmp_path, capsys, built_models):
    built = built_models(gmvae)
    record = gmvae.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images")
    assert f"Objective (maximized):\n{LATEX}\n" in printed and saved["objective"] == LATEX
    assert saved["history"]["monitor_epoch"] == [4, 8] and saved["settings"]["clusters"] == 10
    for picture in ("graphical_model.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG
    initial, trained = saved["GMVAE at initialization"], saved["GMVAE trained"]
    assert record["GMVAE trained"] == trained
    assert saved["history"]["ELBO"][-1] == pytest.approx(trained["ELBO"])

    # the trained networks against the same networks at initialization: a far better bound and clusters that agree
    # with the labels far more often (chance, one cluster for everything, is about 10%)
    assert -64 * np.log(2) < trained["ELBO"] < 0 and trained["ELBO"] > initial["ELBO"] + 10
    assert trained["clustering accuracy (%)"] > max(initial["clustering accuracy (%)"] + 10, 25)
    assert trained["clusters used"] >= 5
    assert 60 < saved["k-means on the pixels (scikit-learn)"]["clustering accuracy (%)"] < 95

    # the loss on the trained weights is the bound written by hand, with the same draws of z
    (model,) = built
    q_y, q_z, p_x, p_z, _ = model.distributions
    x = data.labelled_images("digits", seed=0).test[0][:50]
    model.distributions.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        ours = model.loss.eval({"x": x})
        torch.manual_seed(3)
        by_hand = -elbo_by_hand(q_y, q_z, p_x, p_z, x, 10).mean()
    torch.testing.assert_close(ours, by_hand)


def test_clustering_accuracy_is_the_best_matching():
    rng = np.random.default_rng(0)
    for _ in range(20):
        clusters, labels = rng.integers(0, 4, 30), rng.integers(0, 4, 30)
        best = max((np.asarray(mapping)[clusters] == labels).mean() for mapping in itertools.permutations(range(4)))
        assert evaluation.matched_accuracy(clusters, labels, 4) == pytest.approx(100 * best)
    # more clusters than labels: the clusters left unmatched count as wrong
    assert evaluation.matched_accuracy(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]), 4) == 50.0
    assert evaluation.matched_accuracy(np.array([2, 2, 0, 0]), np.array([0, 0, 1, 1]), 3) == 100.0
