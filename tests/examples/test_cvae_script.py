"""The conditional VAE script runs end to end with tiny sizes, prints Sohn et al.'s objective exactly, writes its
results and samples, and reports the ELBO that plain torch.distributions computes from its trained networks."""
import json

import pytest
import torch
import torch.distributions as td

import cvae
from common import data

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "64", "--latent", "4", "--iw-samples", "8",
        "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
LATEX = (r"- D_{KL}\left[q(z|x,y)\|p(z)\right] + \mathbb{E}_{q(z|x,y)}\left[\log p(x|z,y)\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_labelled_images_are_the_whole_digits_with_every_label():
    images = data.labelled_images("digits")
    halves = data.load("digits", labels="all")
    x, w, y = images.labelled
    assert (x.shape, w.shape, y.shape, images.image_shape) == ((1397, 64), (1397, 0), (1397, 10), (8, 8))
    # the same split as the paired data: the left half of each whole image is x of the halves pairing
    torch.testing.assert_close(x.reshape(-1, 8, 8)[:, :, :4].reshape(-1, 32), halves.labelled[0])
    torch.testing.assert_close(images.test[2], halves.test[2])
    assert images.unlabelled[0] is x and y.sum(1).eq(1).all()


def test_cvae(tmp_path, capsys, built_models):
    built = built_models(cvae)  # the Models it trains, for the checks below
    record = cvae.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images, all labels")
    assert f"Objective (maximized):\n{LATEX}\n" in printed and saved["objective"] == LATEX
    assert (saved["epochs"], saved["seed"], saved["labels"]) == (2, 0, "all")
    assert record["ELBO"] == saved["ELBO"] and -100 < saved["ELBO"] < 0
    assert saved["log p(x|y)"] > saved["ELBO"] - 0.5  # the importance-weighted bound is the tighter one
    assert saved["history"]["monitor_epoch"] == [1, 2] and saved["history"]["loss"][1] < saved["history"]["loss"][0]
    for picture in ("samples.png", "graphical_model.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG

    # The test ELBO again in plain torch from the trained networks (evaluation mode): the analytic KL from N(0, I)
    # plus log p(x|z,y) averaged over 2,000 reparameterized draws of z per test image.
    (model,) = built
    q, p = model.distributions[0], model.distributions[1]
    assert (q.prob_text, p.prob_text) == ("q(z|x,y)", "p(x|z,y)")
    x, _, y = data.labelled_images("digits").test
    model.distributions.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        params = q.net(x, y)
        posterior = td.Normal(params["loc"], params["scale"])
        kl = td.kl_divergence(posterior, td.Normal(0.0, 1.0)).sum(-1)
        z = posterior.rsample([2000])  # (S, N, Dz)
        logits = p.net(z.reshape(-1, z.shape[-1]), y.repeat(2000, 1))["logits"]
        # pixels lie in [0, 1], not {0, 1}: log p = x log(sigmoid) + (1 - x) log(1 - sigmoid), as in pgm, unvalidated
        log_p = td.Bernoulli(logits=logits, validate_args=False).log_prob(x.repeat(2000, 1)).sum(-1)
        reconstruction = log_p.reshape(2000, -1).mean(0)
        expected = (reconstruction - kl).mean().item()
        test = {"x": x, "y": y}
        averaged = sum(-model.test(test) for _ in range(200)) / 200  # the script's estimator, 200 draws averaged
    # the KL is large enough that a dropped or sign-flipped KL term, or a decoder ignoring z, would show
    assert kl.mean().item() > 0.05
    assert averaged == pytest.approx(expected, abs=0.02)
    assert saved["ELBO"] == pytest.approx(expected, abs=0.3)  # one draw of z per image, mean of 400 images
