"""examples/flow_vae.py runs end to end with tiny sizes, prints the flow posterior and the ELBO exactly and writes its
results and picture; its ELBO (K = 0 and K = 2), the planar log-determinant and the importance-weighted log p(x) are
checked against plain torch on the saved weights and the same draws."""
import contextlib
import importlib
import io
import json
import math

import pytest
import torch
import torch.distributions as td

from common import data, multimodal, training

LATENT, HIDDEN = 2, 16
TINY = ["--epochs", "3", "--hidden", str(HIDDEN), "--batch-size", "64", "--latent", str(LATENT), "--iw-samples", "16",
        "--eval-every", "1", "--layers", "0,2", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
POSTERIOR = (r"\log q_K(z|x) = \log q_0(z_0|x) - \sum_{k=1}^{K} \log \left|\det \frac{\partial z_k}{\partial z_{k-1}}"
             r"\right|")
ELBO = r"\mathbb{E}_{q_K(z|x)}\left[\log p(x|z) + \log p(z) - \log q_K(z|x)\right]"
ROWS = ["K = 0", "K = 2"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run for every test, on one thread: its printed text, the record it returns, results.json, the folder."""
    out, printed, before = tmp_path_factory.mktemp("flow_vae"), io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(printed):
            record = importlib.import_module("flow_vae").main(TINY + ["--out", str(out)])
    finally:
        torch.set_num_threads(before)
    return printed.getvalue(), record, json.loads((out / "results.json").read_text()), out


def test_prints_the_flow_posterior_and_the_elbo(trained):
    printed, _, saved, _ = trained
    lines = printed.splitlines()
    assert lines[0] == ("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images, all labels; labels "
                        "unused")
    assert lines[1:5] == ["Posterior:", POSTERIOR, "Objective (maximized):", f"ELBO = {ELBO}"]
    assert saved["objective"] == {"ELBO": ELBO, "posterior": POSTERIOR}
    assert "\nK = 2 planar layers (" in printed


def test_writes_the_scores_and_the_picture(trained):
    _, record, saved, out = trained
    assert sorted(saved) == sorted(ROWS + ["model", "data", "labels", "epochs", "seed", "objective", "settings",
                                           "history"])
    assert saved["model"] == ", ".join(ROWS) and (saved["epochs"], saved["seed"]) == (3, 0)
    assert saved["settings"]["layers"] == [0, 2]
    for row in ROWS:
        scores = saved[row]
        assert list(scores) == ["test ELBO", "log p(x)", "seconds"] and scores == record[row]
        assert -60 < scores["test ELBO"] < -20
        assert scores["log p(x)"] > scores["test ELBO"] - 0.5  # the importance-weighted bound is the tighter one
        history = saved["history"][row]
        assert history["monitor_epoch"] == [1, 2, 3]
        assert history["test ELBO"][-1] > history["test ELBO"][0] + 1  # three epochs already improve the bound
    for name in ("elbo_vs_layers.png", "model_K0.pt", "model_K2.pt"):
        assert (out / name).exists()
    assert (out / "elbo_vs_layers.png").read_bytes()[:8] == PNG
    assert "| K = 2 | " in (out / "results.md").read_text() and (out / "results.csv").exists()


def test_a_bad_layers_option_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        training.run(importlib.import_module("flow_vae").main, ["--layers", "0,x", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: argument --layers: must be comma-separated integers")


# ------------------------------------------------------------------------------- against plain torch
def load(trained, layers):
    """The run's model with ``layers`` planar layers (q, p, prior, one-draw ELBO) in evaluation mode, and the test
    images."""
    from flow_vae import build

    images = data.labelled_images("digits")
    q, p, prior, elbo, _ = build(layers, images.x_dim, HIDDEN, LATENT)
    modules = torch.nn.ModuleList([q, p, prior])
    modules.load_state_dict(torch.load(trained[3] / f"model_K{layers}.pt", weights_only=True)["distributions"])
    modules.eval()
    return q, p, prior, elbo, images.test[0]


def planar(z, u, w, b):
    """One planar layer written out (Rezende & Mohamed 2015, appendix A): f(z) and log|det df/dz|, per row."""
    wu = (w * u).sum(-1, keepdim=True)
    u_hat = u + (-1 + torch.log1p(wu.exp()) - wu) * w / (w * w).sum(-1, keepdim=True)
    a = (w * z).sum(-1, keepdim=True) + b
    psi = (1 - torch.tanh(a) ** 2) * w
    return z + u_hat * torch.tanh(a), torch.log(torch.abs(1 + (u_hat * psi).sum(-1)))


def torch_log_weights(q, p, x, sample_shape=()):
    """log p(x|z) + log p(z) - log q_K(z|x) at z ~ q_K(z|x), with torch.distributions and the planar layers by hand."""
    params = q.base.net(x)
    base = td.Normal(params["loc"], params["scale"])
    z = base.rsample(sample_shape)
    log_q = base.log_prob(z).sum(-1)
    for layer in q.layers:
        u, w, b = layer.net.head(layer.net.body(x)).split([LATENT, LATENT, 1], -1)
        z, log_det = planar(z, u, w, b)
        log_q = log_q - log_det
    logits = p.net(z.reshape(-1, LATENT))["logits"].reshape(*z.shape[:-1], -1)
    log_px = td.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
    return log_px + td.Normal(0.0, 1.0).log_prob(z).sum(-1) - log_q


@pytest.mark.parametrize("layers", [0, 2])
def test_the_elbo_is_torch_s_on_the_same_weights_and_draws(trained, layers):
    """With K = 0 the flow's ELBO is the plain VAE's one-draw ELBO; with K = 2 the planar layers add their log-det."""
    q, p, _, elbo, x_all = load(trained, layers)
    x = x_all[:50]
    with torch.no_grad():
        torch.manual_seed(3)
        value = elbo.eval({"x": x})
        torch.manual_seed(3)
        expected = torch_log_weights(q, p, x)
    assert value.shape == (len(x),)
    torch.testing.assert_close(value, expected)
    if layers == 0:  # averaged over draws, it is examples/vae.py's ELBO with the analytic KL
        params = q.base.net(x)
        kl = td.kl_divergence(td.Normal(params["loc"], params["scale"]), td.Normal(0.0, 1.0)).sum(-1)
        torch.manual_seed(4)
        with torch.no_grad():
            draws = torch.stack([elbo.eval({"x": x}) for _ in range(400)])
            torch.manual_seed(4)
            z = torch.stack([td.Normal(params["loc"], params["scale"]).rsample() for _ in range(400)])
            logits = p.net(z.flatten(0, 1))["logits"]
            reconstruction = td.Bernoulli(logits=logits, validate_args=False).log_prob(x.repeat(400, 1))
        analytic = reconstruction.sum(-1).reshape(400, len(x)) - kl
        assert abs((draws - analytic).mean().item()) < 0.05
    # the saved test ELBO is the mean over the test set of the ELBO averaged over many draws
    torch.manual_seed(5)
    with torch.no_grad():
        many = torch.stack([torch_log_weights(q, p, x_all) for _ in range(20)]).mean().item()
    assert many == pytest.approx(trained[2][f"K = {layers}"]["test ELBO"], abs=0.1)


def test_planar_log_determinant_is_the_jacobian_s(trained):
    """log|1 + u_hat.psi(z)| of pgm's Planar (amortized on x) is log|det| of the autograd Jacobian, row by row."""
    q, *_, x = load(trained, 2)
    x, layer = x[:50], q.layers[0]
    torch.manual_seed(4)
    z = torch.randn(len(x), LATENT)
    with torch.no_grad():
        out, log_det = layer(z, x)
        u, w, b = layer.net.head(layer.net.body(x)).split([LATENT, LATENT, 1], -1)
        by_hand, by_hand_log_det = planar(z, u, w, b)
    torch.testing.assert_close(out, by_hand)
    torch.testing.assert_close(log_det, by_hand_log_det)
    for n in range(5):
        jacobian = torch.autograd.functional.jacobian(lambda v: layer(v[None], x[n:n + 1])[0][0], z[n])
        assert log_det[n].item() == pytest.approx(torch.linalg.slogdet(jacobian)[1].item(), abs=1e-5)


def test_importance_weighted_log_likelihood_is_a_log_mean_exp_of_torch_s_weights(trained):
    q, p, prior, _, x = load(trained, 2)
    x, samples = x[:50], 64
    torch.manual_seed(5)
    value = multimodal.importance_log_likelihood(p * prior, q, {"x": x}, samples)
    torch.manual_seed(5)
    with torch.no_grad():
        log_w = torch_log_weights(q, p, x, (samples,))
    torch.testing.assert_close(value, torch.logsumexp(log_w, 0) - math.log(samples))
