"""The DMM script runs end to end with tiny sizes and prints its sum over t; its loss, on the trained weights, equals a
deep Markov model written by hand in plain torch (same draws), and its bouncing balls bounce."""
import json

import pytest
import torch
import torch.distributions as td
from torch.nn import functional as F

import dmm
from common import sequences

TINY = ["--epochs", "2", "--hidden", "16", "--rnn", "8", "--latent", "3", "--batch-size", "16", "--sequences", "40",
        "--steps", "6", "--size", "6", "--eval-every", "1", "--device", "cpu"]
PNG = b"\x89PNG\r\n\x1a\n"
LATEX = (r"\mathbb{E}_{f(h|x)}\left[\sum_{t=1}^{T} \left[\mathbb{E}_{q(z_t|h_t,z_{t-1})}\left[\log p(x_t|z_t)\right]"
         r" - D_{KL}\left[q(z_t|h_t,z_{t-1})\|p(z_t|z_{t-1})\right]\right]\right]")

pytestmark = pytest.mark.usefixtures("one_thread")


def elbo_by_hand(rnn, q, prior, p, z_0, x, mask):
    """The DMM's ELBO per video, from the networks' layers: a backward GRU, the combiner, the gated transition."""
    h = rnn.gru(x.flip(1))[0].flip(1)
    z_prev, total = z_0.expand(len(x), -1), 0
    for t in range(x.shape[1]):
        combined = 0.5 * (torch.tanh(q.z_to_h(z_prev)) + h[:, t])
        posterior = td.Normal(q.loc(combined), F.softplus(q.scale(combined)) + 1e-4)
        z = posterior.loc + posterior.scale * torch.randn_like(posterior.loc)
        gate, proposal = prior.gate(z_prev), prior.proposal(z_prev)
        transition = td.Normal((1 - gate) * prior.linear(z_prev) + gate * proposal,
                               F.softplus(prior.scale(F.relu(proposal))) + 1e-4)
        log_px = -F.binary_cross_entropy_with_logits(p.net(z), x[:, t], reduction="none").sum(-1)
        step = log_px - td.kl_divergence(posterior, transition).sum(-1)
        total = total + torch.where(mask[:, t], step, torch.zeros_like(step))
        z_prev = z
    return total


def test_bouncing_balls():
    x, lengths = sequences.bouncing_balls(50, 10, 8, seed=0)
    assert x.shape == (50, 10, 64) and set(x.unique().tolist()) == {0.0, 1.0}
    assert lengths.min() >= 5 and lengths.max() <= 10
    frames = x.reshape(50, 10, 8, 8)
    real = torch.arange(10) < lengths[:, None]
    assert (frames.sum((2, 3)) > 0).eq(real).all()  # a ball in every real frame, nothing after the end
    centre = lambda f: (f.nonzero().float().mean(0))  # noqa: E731
    moves = [(centre(frames[i, 1]) - centre(frames[i, 0])).norm() for i in range(50)]
    assert 0.2 < torch.stack(moves).mean() < 1.5  # it moves, by about its speed per frame


def test_dmm(tmp_path, capsys, built_models):
    built = built_models(dmm)  # the Models it trains, for the checks below
    record = dmm.main(TINY + ["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert printed.startswith("Data: bouncing balls (40 train / 10 test videos of 3 to 6 frames of 6x6)")
    assert f"Objective (maximized):\n{LATEX}\n" in printed and saved["objective"] == LATEX
    assert record["ELBO per frame"] == saved["ELBO per frame"] < 0
    assert saved["history"]["monitor_epoch"] == [1, 2] and saved["history"]["loss"][1] < saved["history"]["loss"][0]
    for picture in ("sequences.png", "learning_curves.png"):
        assert (tmp_path / picture).read_bytes()[:8] == PNG

    # The loss on the trained weights against the DMM written by hand: same value and gradients, same draws
    (model,) = built
    rnn_x, q, prior, p, initial = model.distributions
    x, lengths = sequences.bouncing_balls(12, 6, 6, seed=5)
    mask = torch.arange(6) < lengths[:, None]
    model.distributions.train()
    torch.manual_seed(3)
    ours = model.loss.eval({"x": x, "mask": mask})
    torch.manual_seed(3)
    by_hand = -elbo_by_hand(rnn_x.net, q.net, prior.net, p.net, initial.z_prev, x, mask).mean()
    torch.testing.assert_close(ours, by_hand)
    weights = list(model.distributions.parameters())
    ours_grads = torch.autograd.grad(ours, weights, retain_graph=True)
    for a, b in zip(ours_grads, torch.autograd.grad(by_hand, weights)):
        torch.testing.assert_close(a, b)
    # the learned z_0 is one of the trained weights (it moved from its zeros) and receives a gradient
    assert any(w is initial.z_prev for w in weights) and initial.z_prev.abs().min() > 0
    assert torch.autograd.grad(ours, [initial.z_prev])[0].abs().sum() > 0
    # the reported score is that ELBO on the test set, per real frame (one draw per step: a loose tolerance)
    x_test, lengths_test = sequences.bouncing_balls(10, 6, 6, seed=1)
    mask_test = torch.arange(6) < lengths_test[:, None]
    model.distributions.eval()
    with torch.no_grad():
        averaged = torch.stack([elbo_by_hand(rnn_x.net, q.net, prior.net, p.net, initial.z_prev, x_test, mask_test)
                                for _ in range(200)]).mean(0)
    expected = averaged.sum().item() / mask_test.sum().item()
    assert saved["ELBO per frame"] == pytest.approx(expected, abs=0.5)
    assert saved["ELBO per video"] == pytest.approx(averaged.mean().item(), abs=3.0)


def test_the_benchmark_times_equal_losses_at_tiny_sizes(capsys):
    import sys
    from pathlib import Path
    benchmarks = str(Path(__file__).resolve().parents[2] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    import bench_dmm
    rows, differences = bench_dmm.main(["--device", "cpu", "--threads", "1", "--configs", "4x2x8x8", "--steps", "2",
                                        "--warmup", "1", "--rounds", "1", "--impls", "pytorch eager,pgm eager"])
    printed = capsys.readouterr().out
    assert [impl for _, impl, *_ in rows] == ["pytorch eager", "pgm eager"]
    assert differences["T 4, latent 2, hidden 8, rnn 8"] < 1e-3
    assert "largest difference over 8 batches" in printed and "| pgm eager |" in printed
