"""The discrete VAE script runs end to end with tiny sizes: one printed loss for every estimator, a test ELBO and
gradient variances per estimator in results.json, the variances in the expected order, the figure; and its exact
test ELBO equals a plain-torch sum over all 2^D latent codes with the saved weights."""
import importlib
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from common import data

LATENT = 4
TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "64", "--latent", str(LATENT), "--repeats", "20",
        "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
LOSS = (r"\mathbb{E}_{p_{data}(x)}\left[D_{KL}\left[q(z|x)\|p(z)\right] + "
        r"\mathbb{E}_{q(z|x)}\left[- \log p(x|z)\right]\right]")
ESTIMATORS = ["score function", "moving average", "learned baseline", "Gumbel-softmax", "enumeration"]

pytestmark = pytest.mark.usefixtures("one_thread")


def exact_elbo(state, x):
    """The mean ELBO of x: sum over every z in {0,1}^D of q(z|x) log p(x|z), minus KL(q(z|x) || Bernoulli(1/2)),
    from the saved weights of q(z|x) (distribution 0) and p(x|z) (distribution 1), in plain torch."""
    def logits(prefix, inputs):
        h = F.relu(F.linear(inputs, state[f"{prefix}.net.body.0.weight"], state[f"{prefix}.net.body.0.bias"]))
        h = F.relu(F.linear(h, state[f"{prefix}.net.body.2.weight"], state[f"{prefix}.net.body.2.bias"]))
        return F.linear(h, state[f"{prefix}.net.logits.weight"], state[f"{prefix}.net.logits.bias"])

    q_logits = logits("0", x)
    pi = torch.sigmoid(q_logits)
    kl = (pi * torch.log(2 * pi) + (1 - pi) * torch.log(2 * (1 - pi))).sum(-1)
    reconstruction = torch.zeros(len(x))
    for code in itertools.product([0.0, 1.0], repeat=LATENT):
        z = torch.tensor(code)
        log_q = (z * F.logsigmoid(q_logits) + (1 - z) * F.logsigmoid(-q_logits)).sum(-1)
        p_logits = logits("1", z[None])
        log_p = (x * F.logsigmoid(p_logits) + (1 - x) * F.logsigmoid(-p_logits)).sum(-1)
        reconstruction += log_q.exp() * log_p
    return (reconstruction - kl).mean().item()


def test_discrete_vae(tmp_path, capsys):
    record = importlib.import_module("discrete_vae").main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images")
    # the same expectation whatever its estimator
    assert [line for line in printed.splitlines() if line.startswith(r"\mathbb")] == [LOSS] * 5
    assert saved["objective"] == LOSS and saved["model"] == ", ".join(ESTIMATORS)
    assert (saved["epochs"], saved["seed"], saved["labels"]) == (2, 0, "all")
    for name in ESTIMATORS:
        scores = saved[name]
        assert -60 < scores["test ELBO"] < -20 and scores["test ELBO"] == record[name]["test ELBO"]
        assert saved["history"][name]["monitor_epoch"] == [1, 2]
        for when in ("initial", "trained"):
            assert scores[f"Var ({when})"] >= 0 and scores[f"‖g‖² ({when})"] > 0
        assert (tmp_path / f"learning_curves_{name.replace(' ', '_')}.png").read_bytes()[:8] == PNG
    # the same initialization for every estimator, so the same exact gradient there
    initial_norms = [saved[name]["‖g‖² (initial)"] for name in ESTIMATORS]
    assert initial_norms == pytest.approx([initial_norms[0]] * 5, rel=1e-5)
    for when in ("initial", "trained"):
        variance = {name: saved[name][f"Var ({when})"] for name in ESTIMATORS}
        assert variance["enumeration"] < 1e-12
        assert variance["score function"] > 10 * max(variance["moving average"], variance["learned baseline"])
        assert variance["score function"] > 10 * variance["Gumbel-softmax"] > 0
    assert (tmp_path / "gradient_variance.png").read_bytes()[:8] == PNG
    assert (tmp_path / "results.md").exists() and (tmp_path / "results.csv").exists()

    x_test = data.labelled_images("digits", seed=0).test[0]
    for name in ("enumeration", "Gumbel-softmax"):
        state = torch.load(tmp_path / f"model_{name.replace(' ', '_')}.pt", weights_only=True)["distributions"]
        assert exact_elbo(state, x_test) == pytest.approx(saved[name]["test ELBO"], rel=1e-5)
    assert not math.isclose(saved["enumeration"]["test ELBO"], saved["score function"]["test ELBO"], rel_tol=1e-6)
