"""The VRNN script runs end to end with tiny sizes and prints its sum over t with h_{t-1} carried; its loss, on the
trained weights, equals a VRNN written by hand in plain torch (same draws)."""
import json

import pytest
import torch
import torch.distributions as td
from torch.nn import functional as F

import vrnn
from common import sequences

TINY = ["--epochs", "2", "--hidden", "16", "--rnn", "8", "--latent", "3", "--batch-size", "16", "--sequences", "40",
        "--steps", "6", "--size", "6", "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
LATEX = (r"\sum_{t=1}^{T} \left[\mathbb{E}_{q(z_t|x_t,h_{t-1})}\left[\log p(x_t|z_t,h_{t-1})\right] - "
         r"D_{KL}\left[q(z_t|x_t,h_{t-1})\|p(z_t|h_{t-1})\right]\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian(head, inputs):
    loc, scale = head.net(torch.cat(inputs, -1)).chunk(2, -1)
    return td.Normal(loc, F.softplus(scale) + 1e-4)


def elbo_by_hand(q, prior, p, f, x, mask, rnn):
    """Chung et al.'s ELBO per video from the networks' layers: h_t = GRUCell([phi_x(x_t), phi_z(z_t)], h_{t-1})."""
    phi_x, phi_z = f.phi_x, f.phi_z
    h, total = torch.zeros(len(x), rnn), 0
    for t in range(x.shape[1]):
        posterior = gaussian(q, [phi_x(x[:, t]), h])
        z = posterior.loc + posterior.scale * torch.randn_like(posterior.loc)
        logits = p.net(torch.cat([phi_z(z), h], -1))
        log_px = -F.binary_cross_entropy_with_logits(logits, x[:, t], reduction="none").sum(-1)
        step = log_px - td.kl_divergence(posterior, gaussian(prior, [h])).sum(-1)
        total = total + torch.where(mask[:, t], step, torch.zeros_like(step))
        h = f.cell(torch.cat([phi_x(x[:, t]), phi_z(z)], -1), h)
    return total


def test_vrnn(tmp_path, capsys, built_models):
    built = built_models(vrnn)  # the Models it trains, for the checks below
    record = vrnn.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: bouncing balls (40 train / 10 test videos of 3 to 6 frames of 6x6)")
    assert f"Objective (maximized):\n{LATEX}\n" in printed and saved["objective"] == LATEX
    assert record["ELBO per frame"] == saved["ELBO per frame"] < 0
    assert saved["history"]["loss"][1] < saved["history"]["loss"][0]
    for picture in ("sequences.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG

    (model,) = built
    q, prior, p, f = (d.net for d in model.distributions)
    x, lengths = sequences.bouncing_balls(12, 6, 6, seed=5)
    mask = torch.arange(6) < lengths[:, None]
    torch.manual_seed(3)
    ours = model.loss.eval({"x": x, "mask": mask})
    torch.manual_seed(3)
    by_hand = -elbo_by_hand(q, prior, p, f, x, mask, 8).mean()
    torch.testing.assert_close(ours, by_hand)
    weights = list(model.distributions.parameters())
    grads = torch.autograd.grad(ours, weights, retain_graph=True)
    for a, b in zip(grads, torch.autograd.grad(by_hand, weights)):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g, w in zip(grads, weights) if any(w is c for c in f.cell.parameters()))
    # the reported score: that ELBO on the test set per real frame (one draw per step, so a loose tolerance)
    x_test, lengths_test = sequences.bouncing_balls(10, 6, 6, seed=1)
    mask_test = torch.arange(6) < lengths_test[:, None]
    with torch.no_grad():
        averaged = torch.stack([elbo_by_hand(q, prior, p, f, x_test, mask_test, 8) for _ in range(200)]).mean(0)
    assert saved["ELBO per frame"] == pytest.approx(averaged.sum().item() / mask_test.sum().item(), abs=0.5)
