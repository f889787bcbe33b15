"""examples/real_nvp.py runs end to end with tiny sizes, prints its objective exactly and writes its results and
pictures; the moons flow's density integrates to 1 and beats its initial N(0, I), the digits flow's first layer is
the dequantizing logit with its log-det, and the Gaussian baseline's bits/dim is a direct numpy computation."""
import contextlib
import importlib
import io
import json
import math

import numpy as np
import pytest
import torch

COUPLINGS, HIDDEN = 2, 8
TINY = ["--epochs", "3", "--hidden", str(HIDDEN), "--batch-size", "64", "--lr", "0.01", "--points", "600",
        "--couplings", str(COUPLINGS), "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
FLOW = (r"\log p_K(x) = \log p_0(x_K) + \sum_{k=1}^{K} \log \left|\det \frac{\partial x_k}{\partial x_{k-1}}\right|, "
        r"\quad x_0 = x")
ROWS = ["moons: RealNVP", "digits: RealNVP", "digits: diagonal Gaussian"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny run of both parts for every test, on one thread: printed text, returned record, results.json, folder."""
    out, printed, before = tmp_path_factory.mktemp("real_nvp"), io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(printed):
            record = importlib.import_module("real_nvp").main(TINY + ["--out", str(out)])
    finally:
        torch.set_num_threads(before)
    return printed.getvalue(), record, json.loads((out / "results.json").read_text()), out


def test_prints_the_objective_of_each_part(trained):
    printed, _, saved, _ = trained
    assert "\nmoons: scikit-learn make_moons (noise 0.05; 450 train / 150 test, 2-D)\n" in printed
    assert "\ndigits: scikit-learn digits (1,397 train / 400 test, 8x8), pixel values 0..16 dequantized\n" in printed
    assert printed.count(f"Objective (maximized):\n\\log p_K(x)\nwhere {FLOW}\n") == 2
    assert saved["objective"] == {"moons": r"\log p_K(x)", "digits": r"\log p_K(x)"}


def test_writes_the_scores_and_pictures(trained):
    _, record, saved, out = trained
    assert sorted(saved) == sorted(ROWS + ["model", "data", "labels", "epochs", "seed", "objective", "settings",
                                           "history"])
    assert saved["model"] == ", ".join(ROWS) and (saved["epochs"], saved["seed"]) == (3, 0)
    assert {row: record[row] for row in ROWS} == {row: saved[row] for row in ROWS}
    assert list(saved["moons: RealNVP"]) == ["test log p(x)"] and list(saved["digits: RealNVP"]) == ["test bits/dim"]
    for part in ("moons", "digits"):
        assert saved["history"][part]["monitor_epoch"] == [1, 2, 3]
    for name in ("moons.png", "digits.png", "learning_curves_moons.png", "learning_curves_digits.png"):
        assert (out / name).read_bytes()[:8] == PNG
    assert "| digits: diagonal Gaussian | " in (out / "results.md").read_text() and (out / "results.csv").exists()
    # bits/dim is minus the test log p(x) (nats per image) over 64 log 2 (the last monitored value used other
    # dequantization noise), below a uniform's log2(17)
    log_p = saved["history"]["digits"]["test log p(x)"][-1]
    assert saved["digits: RealNVP"]["test bits/dim"] == pytest.approx(-log_p / (64 * math.log(2)), abs=0.01)
    assert saved["digits: RealNVP"]["test bits/dim"] < math.log2(17)
    # and three epochs beat the diagonal Gaussian by a margin
    assert saved["digits: RealNVP"]["test bits/dim"] < saved["digits: diagonal Gaussian"]["test bits/dim"] - 0.2


def test_one_part_alone(tmp_path):
    record = importlib.import_module("real_nvp").main(TINY + ["--epochs", "1", "--data", "moons", "--out",
                                                              str(tmp_path)])
    assert record["model"] == "moons: RealNVP" and not (tmp_path / "digits.png").exists()


def moons_model(trained):
    from real_nvp import moons, moons_flow

    p = moons_flow(COUPLINGS, HIDDEN)
    torch.nn.ModuleList([p]).load_state_dict(torch.load(trained[3] / "model_moons.pt",
                                                        weights_only=True)["distributions"])
    return p.eval(), moons(600, 0.05, 0)


def test_the_moons_density_integrates_to_one_and_beats_its_start(trained):
    p, (_, x_test) = moons_model(trained)
    step = 0.02
    g = torch.arange(-8, 8 + step / 2, step)
    a, b = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        mass = p.log_prob({"x": torch.stack([a.flatten(), b.flatten()], -1)}).exp().sum().item() * step ** 2
        log_p = p.log_prob({"x": x_test}).mean().item()
    assert mass == pytest.approx(1, abs=0.01)
    assert log_p == pytest.approx(trained[2]["moons: RealNVP"]["test log p(x)"], abs=1e-5)
    # at initialization the couplings are the identity: N(0, I); three epochs already beat it by a margin
    start = torch.distributions.Normal(0.0, 1.0).log_prob(x_test).sum(-1).mean().item()
    history = trained[2]["history"]["moons"]["test log p(x)"]
    assert start < history[0] < history[1] < history[2] and log_p > start + 0.3


def test_the_digits_flow_starts_as_the_dequantizing_logit_under_a_standard_normal():
    """With the couplings at the identity, log p(x) = sum_i log N(y_i) + log((1 - 2a)/L) - log s_i - log(1 - s_i),
    s = a + (1 - 2a)(x + u)/L, y = logit(s), u the flow's uniform noise (the same draws)."""
    from real_nvp import LEVELS, digit_pixels, digits_flow

    pixels = digit_pixels(0)[1][:20]
    alpha = 0.05
    p = digits_flow(HIDDEN, alpha)
    torch.manual_seed(1)
    log_p = p.log_prob({"x": pixels})
    torch.manual_seed(1)
    s = alpha + (1 - 2 * alpha) * (pixels + torch.rand_like(pixels)) / LEVELS
    y = torch.log(s) - torch.log1p(-s)
    expected = (torch.distributions.Normal(0.0, 1.0).log_prob(y) + math.log((1 - 2 * alpha) / LEVELS)
                - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    assert pixels.shape == (20, 1, 8, 8) and pixels.max() == 16 and pixels.min() == 0
    assert torch.equal(pixels, pixels.round())
    torch.testing.assert_close(log_p, expected)


def test_the_gaussian_baseline_is_a_direct_numpy_computation(trained):
    from real_nvp import dequantize, digit_pixels

    train, test, _ = digit_pixels(0)
    train = dequantize(train, 0).numpy().reshape(len(train), -1)
    test = dequantize(test, 1).numpy().reshape(len(test), -1)
    assert train.min() >= 0 and 16 <= train.max() < 17
    mean, var = train.astype(np.float64).mean(0), train.astype(np.float64).var(0)
    log_p = -0.5 * (np.log(2 * np.pi * var) + (test - mean) ** 2 / var)
    bits = -log_p.sum(1).mean() / (64 * np.log(2))
    assert trained[2]["digits: diagonal Gaussian"]["test bits/dim"] == pytest.approx(bits, rel=1e-5)
