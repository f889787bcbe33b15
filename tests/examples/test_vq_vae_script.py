"""examples/vq_vae.py runs end to end with tiny sizes, prints its objective exactly and writes its results and
reconstructions; its loss and its gradients (encoder, decoder, codebook) are those of a VQ-VAE written in plain
torch on the same weights, and training improves the reconstruction."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

import vq_vae
from common import data

TINY = ["--epochs", "3", "--hidden", "16", "--batch-size", "64", "--codes", "8", "--positions", "2",
        "--code-dim", "3", "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
OBJECTIVE = (r"\mathbb{E}_{q(z_e,z_q,e|x)}\left[\log p(x|z_q) - \left\|\mathrm{sg}\left[z_{e}\right] - e"
             r"\right\|_{2}^{2} - \beta \left\|z_{e} - \mathrm{sg}\left[e\right]\right\|_{2}^{2}\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def digits_test_images():
    return data.labelled_images("digits", seed=0).test[0]


def plain_vq_vae_loss(encoder_net, codebook, decoder_net, x, beta):
    """-(log p(x|z_q) - ||sg[z_e] - e||^2 - beta ||z_e - sg[e]||^2), averaged over the batch, in plain torch."""
    z_e = encoder_net(x)["loc"]                                         # (B, N, D)
    distances = torch.cdist(z_e.detach().flatten(0, 1), codebook.detach())  # (B N, K)
    e = codebook[distances.argmin(-1)].reshape(z_e.shape)
    z_q = z_e + (e - z_e).detach()
    log_likelihood = -F.binary_cross_entropy_with_logits(decoder_net(z_q)["logits"], x, reduction="none").sum(-1)
    codebook_term = (z_e.detach() - e).pow(2).sum((1, 2))
    commitment = (z_e - e.detach()).pow(2).sum((1, 2))
    return -(log_likelihood - codebook_term - beta * commitment).mean()


def test_vq_vae_script(tmp_path, capsys):
    record = vq_vae.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: scikit-learn digits (1,397 train / 400 test, 8x8), whole images")
    assert f"Objective (maximized):\n{OBJECTIVE}\n" in printed
    assert saved["objective"] == OBJECTIVE and saved["settings"]["beta"] == 0.25
    assert (saved["epochs"], saved["seed"]) == (3, 0) and record["perplexity"] == saved["perplexity"]
    assert saved["history"]["monitor_epoch"] == [1, 2, 3]
    for picture in ("reconstructions.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG
    assert 1 <= saved["perplexity"] <= saved["codes used"] <= 8
    assert 0 < saved["reconstruction MSE"] < 0.25 and -64 * math.log(2) < saved["log p(x|z_q)"] < 0

    # the same networks at initialisation (the script seeds with 0, then builds them), scored the same way
    torch.manual_seed(0)
    encoder, quantizer, decoder, _ = vq_vae.build(64, 16, 2, 3, 8)
    initial = vq_vae.evaluate(encoder, quantizer, decoder, digits_test_images())
    assert saved["reconstruction MSE"] < initial["reconstruction MSE"]


@pytest.mark.parametrize("beta", [0.25, 1.5])
def test_loss_and_gradients_are_a_plain_torch_vq_vae(beta):
    torch.manual_seed(0)
    encoder, quantizer, decoder, objective = vq_vae.build(64, 16, 2, 3, 8)
    with torch.no_grad():  # codes spread over the encoder's outputs, so that several codebook rows get gradients
        quantizer.codebook.weight.normal_(0, 1)
    x = digits_test_images()[:32]
    modules = [encoder, quantizer, decoder]

    value = (-objective.mean()).eval({"x": x}, beta=beta)
    value.backward()
    grads = {name: p.grad.clone() for m in modules for name, p in m.named_parameters(prefix=type(m).__name__)}
    for m in modules:
        m.zero_grad()

    expected = plain_vq_vae_loss(encoder.net, quantizer.codebook.weight, decoder.net, x, beta)
    expected.backward()
    torch.testing.assert_close(value, expected)
    for m in modules:
        for name, p in m.named_parameters(prefix=type(m).__name__):
            torch.testing.assert_close(grads[name], p.grad, msg=lambda text: f"{name}: {text}")
    # every part is trained: the encoder (commitment and straight-through), the decoder, the picked codebook rows
    assert all(grads[n].abs().sum() > 0 for n in grads if not n.startswith("VectorQuantizer"))
    rows = quantizer.nearest(encoder.sample({"x": x})["z_e"]).unique()
    codebook_grad = grads["VectorQuantizer.codebook.weight"]
    assert codebook_grad[rows].abs().sum(-1).gt(0).all()
    assert codebook_grad.abs().sum(-1).gt(0).sum() == len(rows)  # only the rows some z_e picked
