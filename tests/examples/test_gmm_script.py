"""examples/gmm.py runs end to end with tiny sizes, prints its objective exactly, writes its results and picture,
and its exact marginal log p(x) = log sum_y p(x|y) p(y) is torch's mixture density and as good as scikit-learn's EM."""
import json

import pytest
import torch
import torch.distributions as td
from torch import nn

import gmm
from pgm.distributions import Categorical, Normal

TINY = ["--epochs", "40", "--points", "600", "--batch-size", "128", "--eval-every", "20", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
PGM, SKLEARN = "pgm GMM (Adam)", "scikit-learn GaussianMixture (EM)"

pytestmark = pytest.mark.usefixtures("one_thread")


def torch_mixture(logits, loc, scale):
    """torch.distributions' mixture of K diagonal Gaussians: logits (K,), means (K, D), scales (K, D)."""
    return td.MixtureSameFamily(td.Categorical(logits=logits), td.Independent(td.Normal(loc, scale), 1))


def marginal(loc, scale, logits):
    """The script's p(x) = sum_y p(x|y) p(y) with these parameters."""
    p_x = Normal("p(x|y)", net=gmm.Components(loc, scale))
    return (p_x * Categorical("p(y)", logits=nn.Parameter(logits.clone()))).marginalize_var("y")


@pytest.mark.parametrize("k", [3, 5])
def test_gmm_matches_scikit_learn_and_torch(k, tmp_path, capsys):
    record = gmm.main(TINY + ["--components", str(k), "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith(f"Data: scikit-learn make_blobs ({k} centres; 450 train / 150 test, 2-D)\n")
    assert "Objective (maximized):\n\\log p(x)\nwhere p(x) = \\sum_{y} p(x|y)p(y)\n" in printed
    assert saved["objective"] == r"\log p(x)" and (saved["epochs"], saved["seed"], saved["labels"]) == (40, 0, "all")
    assert saved["history"]["monitor_epoch"] == [20, 40] and record[PGM] == saved[PGM]
    for picture in ("density.png", "graphical_model.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG

    # the objective maximized is the exact log-likelihood: as good as EM's, on held-out and on training points
    # (a wrong objective, e.g. one component's or a one-sample bound's, is off by far more than 0.02 nats)
    assert saved[PGM]["log p(x)"] == pytest.approx(saved[SKLEARN]["log p(x)"], abs=0.02)
    assert saved[PGM]["train log p(x)"] == pytest.approx(saved[SKLEARN]["train log p(x)"], abs=0.02)
    assert saved["history"]["test log p(x)"][-1] == pytest.approx(saved[PGM]["log p(x)"])

    # the score is the density of torch's mixture with the learned parameters, on the same test points
    learned = torch.load(tmp_path / "model.pt")["distributions"]
    logits, loc = learned["0.factors.1.logits"], learned["0.factors.0.net.loc"]
    scale = learned["0.factors.0.net.log_scale"].exp()
    assert logits.shape == (k,) and loc.shape == scale.shape == (k, 2)
    _, x_test = gmm.points(600, k, 0)
    expected = torch_mixture(logits, loc, scale).log_prob(x_test)
    assert expected.mean().item() == pytest.approx(saved[PGM]["log p(x)"], abs=1e-4)
    torch.testing.assert_close(marginal(loc, scale, logits).log_prob({"x": x_test}), expected)


def test_marginal_log_prob_is_torch_mixture_same_family():
    torch.manual_seed(0)
    loc, scale, logits = torch.randn(4, 2) * 3, torch.rand(4, 2) + 0.2, torch.randn(4)
    p = marginal(loc, scale, logits)
    x = torch.randn(50, 2) * 5
    torch.testing.assert_close(p.log_prob({"x": x}), torch_mixture(logits, loc, scale).log_prob(x))
    # the mixture's parameters are the learned ones (nn.Parameters of p(y) and p(x|y)), and log p(x) reaches them
    assert {n for n, _ in p.named_parameters()} == {"factors.0.net.loc", "factors.0.net.log_scale",
                                                     "factors.1.logits"}
    p.log_prob({"x": x}).sum().backward()
    assert all(parameter.grad.abs().sum() > 0 for parameter in p.parameters())
