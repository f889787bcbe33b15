"""examples/mmd_vae.py runs end to end with tiny sizes, prints its objective exactly and writes its results and
samples; its MMD term is the kernel MMD of plain torch on the same draws, and training improves the reconstruction."""
import json
import math

import pytest
import torch

import mmd_vae
from common import data
from pgm.losses import E, LogProb

TINY = ["--epochs", "3", "--hidden", "16", "--batch-size", "64", "--latent", "4", "--eval-every", "1",
        "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
OBJECTIVE = r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - \lambda \mathrm{MMD}\left[q(z)\|p(z)\right]"

pytestmark = pytest.mark.usefixtures("one_thread")


def plain_mmd(a, b):
    """V-statistic of MMD^2 with the kernel exp(-|u - v|^2 / D), from torch.cdist."""
    kernel = lambda u, v: torch.exp(-torch.cdist(u, v) ** 2 / u.shape[1])  # noqa: E731
    return kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()


def digits_test_images():
    return data.labelled_images("digits", seed=0).test[0]


def test_mmd_vae_script(tmp_path, capsys):
    record = mmd_vae.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images")
    assert f"Objective (maximized):\n{OBJECTIVE}\n" in printed
    assert saved["objective"] == OBJECTIVE and saved["settings"]["mmd_weight"] == 1000.0
    assert (saved["epochs"], saved["seed"]) == (3, 0) and record["MMD"] == saved["MMD"]
    assert saved["history"]["monitor_epoch"] == [1, 2, 3] and saved["history"]["MMD"][-1] == saved["MMD"]
    for picture in ("samples.png", "graphical_model.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG
    assert -64 * math.log(2) < saved["log p(x|z)"] < 0 and 0 < saved["MMD"] < 0.1
    assert saved["ELBO"] < saved["log p(x|z)"]  # the ELBO subtracts a KL >= 0 from the same reconstruction

    # the same networks at initialisation (the script seeds with 0, then builds them), scored the same way
    torch.manual_seed(0)
    q, p, prior, _, divergence = mmd_vae.build(64, 16, 4)
    initial = mmd_vae.evaluate(q, p, prior, divergence, digits_test_images())
    assert saved["log p(x|z)"] > initial["log p(x|z)"] + 3


def test_mmd_term_is_the_kernel_mmd_of_its_draws():
    # known points in 1-D: k(0, 0) = k(1, 1) = 1, k(0, 1) = e^-1
    assert mmd_vae.mmd(torch.tensor([[0.0]]), torch.tensor([[1.0]])).item() == pytest.approx(2 - 2 / math.e)
    a, b = torch.randn(30, 5), torch.randn(20, 5) + 1
    torch.testing.assert_close(mmd_vae.mmd(a, b), plain_mmd(a, b))
    assert mmd_vae.mmd(a, a).item() == pytest.approx(0.0, abs=1e-6)

    # the Term draws z_q ~ q(z|x), then z_p ~ p(z), one each per example; the same seed draws them again
    torch.manual_seed(0)
    q, p, prior, objective, divergence = mmd_vae.build(64, 16, 4)
    x = digits_test_images()[:50]
    torch.manual_seed(1)
    value = divergence.eval({"x": x})
    torch.manual_seed(1)
    z_q, z_p = q.sample({"x": x})["z"], prior.sample({"x": x})["z"]
    assert value.shape == () and z_q.shape == z_p.shape == (50, 4)
    torch.testing.assert_close(value, plain_mmd(z_q, z_p))
    # the objective is the reconstruction minus lambda times that MMD (the draw of z_q shared by both terms), and
    # the MMD's gradient reaches q(z|x)
    torch.manual_seed(1)
    reconstruction = E(q, LogProb(p)).eval({"x": x})
    torch.manual_seed(1)
    torch.testing.assert_close(objective.eval({"x": x}, **{"lambda": 5.0}), reconstruction - 5.0 * value)
    value.backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in q.parameters())
    assert all(w.grad is None for w in p.parameters())


def test_mmd_weight_pulls_q_z_to_the_prior(tmp_path, capsys):
    free = mmd_vae.main(TINY + ["--mmd-weight", "0", "--out", str(tmp_path / "free")])
    weighted = mmd_vae.main(TINY + ["--out", str(tmp_path / "weighted")])
    capsys.readouterr()
    assert weighted["MMD"] < free["MMD"] / 2
