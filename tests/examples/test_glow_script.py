"""examples/glow.py runs end to end with tiny sizes, prints its objective with the split's prior and writes its
results and pictures; the script's loss, on the trained weights, equals a multi-scale Glow written in plain torch
(values and gradients, float64), and a bad --levels is one line of error."""
import contextlib
import importlib
import io
import json
import math

import pytest
import torch

from script_runs import error_line

LEVELS, STEPS, HIDDEN, ALPHA = 2, 2, 8, 0.05
TINY = ["--epochs", "2", "--levels", str(LEVELS), "--steps", str(STEPS), "--hidden", str(HIDDEN), "--batch-size", "64",
        "--lr", "0.003", "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
FLOW = (r"\log p_K(x) = \log p_0(x_K) + \log p(z_1|h_1) + \sum_{k=1}^{K} \log \left|\det \frac{\partial x_k}"
        r"{\partial x_{k-1}}\right|, \quad x_0 = x")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run for every test, on one thread: printed text, returned record, results.json, folder, the Model."""
    out, printed, before, built = tmp_path_factory.mktemp("glow"), io.StringIO(), torch.get_num_threads(), []
    real_nvp = importlib.import_module("real_nvp")  # glow.py trains through real_nvp's fit

    class Recorded(real_nvp.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
            patch.setattr(real_nvp, "Model", Recorded)
            record = importlib.import_module("glow").main(TINY + ["--out", str(out)])
    finally:
        torch.set_num_threads(before)
    return printed.getvalue(), record, json.loads((out / "results.json").read_text()), out, built


def test_prints_the_objective_and_writes_the_results(trained):
    printed, record, saved, out, built = trained
    assert "\ndigits: scikit-learn digits (1,397 train / 400 test, 8x8), pixel values 0..16 dequantized\n" in printed
    assert f"Objective (maximized):\n\\log p_K(x)\nwhere {FLOW}\n" in printed
    assert saved["objective"] == {"digits": r"\log p_K(x)"} and len(built) == 1
    assert saved["model"] == "Glow, diagonal Gaussian" and (saved["epochs"], saved["seed"]) == (2, 0)
    assert {row: record[row] for row in ("Glow", "diagonal Gaussian")} == {row: saved[row]
                                                                           for row in ("Glow", "diagonal Gaussian")}
    for name in ("samples.png", "learning_curves_digits.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "| Glow | " in (out / "results.md").read_text() and (out / "results.csv").exists()
    # bits/dim is minus the test log p(x) over 64 log 2 (the last monitored value drew other noise), below a
    # uniform's log2(17), and the test log-likelihood rose
    history = saved["history"]["digits"]
    assert history["monitor_epoch"] == [1, 2] and history["test log p(x)"][0] < history["test log p(x)"][1]
    bits = saved["Glow"]["test bits/dim"]
    assert bits == pytest.approx(-history["test log p(x)"][-1] / (64 * math.log(2)), abs=0.01)
    assert bits < math.log2(17)


def test_the_flow_has_the_papers_layers():
    from glow import glow_flow
    from pgm.distributions.flows import ActNorm, AffineCoupling, FactorOut, InvertibleConv1x1, Logit, Squeeze

    kinds = [type(layer) for layer in glow_flow(3, 2, HIDDEN).layers]
    step = [ActNorm, InvertibleConv1x1, AffineCoupling] * 2
    assert kinds == [Logit, Squeeze, *step, FactorOut, Squeeze, *step, FactorOut, Squeeze, *step]
    assert [layer.prior.prob_text for layer in glow_flow(3, 2, HIDDEN).layers if isinstance(layer, FactorOut)] == [
        "p(z_1|h_1)", "p(z_2|h_2)"]


# ------------------------------------------------------------------ the same flow in plain torch
def squeeze(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def gaussian(z, loc, log_scale):
    return (-0.5 * ((z - loc) / log_scale.exp()) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def glow_log_prob(layers, x, u, levels=17):
    """log p(x) of the script's flow by hand: the dequantizing logit, then per level a squeeze, steps of actnorm,
    1x1 convolution (W from its LU factors) and channel coupling, and the split's Gaussian of z_l given h_l."""
    s = ALPHA + (1 - 2 * ALPHA) * (x + u) / levels
    h = torch.log(s) - torch.log1p(-s)
    total = (math.log((1 - 2 * ALPHA) / levels) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    layers = list(layers)[1:]
    for level in range(1, LEVELS + 1):
        h, layers = squeeze(h), layers[1:]
        pixels, channels = h.shape[2] * h.shape[3], h.shape[1]
        for actnorm, conv, coupling in zip(layers[0:3 * STEPS:3], layers[1:3 * STEPS:3], layers[2:3 * STEPS:3]):
            h = h * actnorm.log_scale.exp()[:, None, None] + actnorm.bias[:, None, None]
            lower = torch.tril(conv.lower, -1) + torch.eye(channels, dtype=h.dtype)
            upper = torch.triu(conv.upper, 1) + torch.diag(conv.sign * conv.log_scale.exp())
            h = torch.einsum("ij,njhw->nihw", conv.p @ lower @ upper, h)
            half = channels // 2
            log_scale, shift = coupling.net(torch.cat([h[:, :half], torch.zeros_like(h[:, half:])], 1)).chunk(2, 1)
            log_scale = 5 * torch.tanh(log_scale[:, half:] / 5)
            h = torch.cat([h[:, :half], h[:, half:] * log_scale.exp() + shift[:, half:]], 1)
            total = total + pixels * (actnorm.log_scale.sum() + conv.log_scale.sum()) + log_scale.flatten(1).sum(1)
        layers = layers[3 * STEPS:]
        if level < LEVELS:
            split, layers = layers[0], layers[1:]
            loc, log_scale = split.prior.net.conv(h[:, : channels // 2]).chunk(2, 1)
            total = total + gaussian(h[:, channels // 2:], loc, log_scale)
            h = h[:, : channels // 2]
    assert not layers
    return total + gaussian(h, torch.zeros_like(h), torch.zeros_like(h))


def test_the_scripts_loss_equals_a_plain_torch_glow_on_the_same_weights(trained):
    from real_nvp import digit_pixels

    model = trained[4][0]
    p = model.distributions[0].double()
    x = digit_pixels(0)[1][:50].double()
    params = [q for q in p.parameters() if q.requires_grad]
    torch.manual_seed(3)
    loss = model.loss.eval({"x": x})
    torch.manual_seed(3)
    expected = -glow_log_prob(p.layers, x, torch.rand_like(x)).mean()
    assert loss.shape == () and 50 < expected.item() < 64 * 5
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-9)
    for got, want in zip(torch.autograd.grad(loss, params), torch.autograd.grad(expected, params)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    # the actnorms were set by the first batch, then trained: not at their initial zeros
    assert all(layer.initialized and layer.log_scale.abs().sum() > 0 for layer in p.layers
               if type(layer).__name__ == "ActNorm")


def test_a_bad_number_of_levels(capsys, no_loading, tmp_path):
    assert error_line("glow", ["--levels", "4", "--out", str(tmp_path)], capsys).startswith(
        "error: argument --levels: must be <= 3; got 4")
