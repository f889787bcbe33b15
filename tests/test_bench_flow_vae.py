"""benchmarks/bench_flow_vae.py times the same model twice: pgm's flow-VAE loss and the hand-written one agree on the
same weights and draws (value and gradients), train alike step by step, and the script runs at tiny sizes."""
import copy
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import bench_flow_vae  # noqa: E402
from bench_flow_vae import Decoder, Encoder, Planar  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed=0, latent=3, hidden=16, layers=4):
    torch.manual_seed(seed)
    modules = (Encoder(latent, hidden), torch.nn.ModuleList(Planar(latent) for _ in range(layers)),
               Decoder(latent, hidden))
    with torch.no_grad():  # planar parameters away from their small start, so that every layer bends
        for layer in modules[1]:
            for parameter in layer.parameters():
                parameter.copy_(torch.randn_like(parameter))
    x = (torch.rand(8, bench_flow_vae.X_DIM) < 0.5).float()
    return modules, x


def test_the_losses_and_their_gradients_agree_on_the_same_weights_and_draws():
    modules, x = tiny()
    ours, by_hand = bench_flow_vae.both_losses(modules, x, seed=1)
    torch.testing.assert_close(ours, by_hand)
    parameters = [p for m in modules for p in m.parameters()]
    for a, b in zip(torch.autograd.grad(ours, parameters), torch.autograd.grad(by_hand, parameters)):
        torch.testing.assert_close(a, b)
    other, _ = bench_flow_vae.both_losses(modules, x, seed=2)  # other draws, another value: the draws are shared
    assert abs(other.item() - ours.item()) > 1e-3


def test_both_train_alike_step_by_step():
    modules, x = tiny(layers=2)
    data = [x, (torch.rand(8, bench_flow_vae.X_DIM) < 0.3).float()]
    losses = []
    for build in (bench_flow_vae.pytorch_eager, bench_flow_vae.pgm_model(False)):
        step = build(copy.deepcopy(modules), data, torch.device("cpu"))
        torch.manual_seed(7)
        losses.append([step(i) for i in range(4)])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_the_script_runs_at_tiny_sizes(capsys):
    rows, differences = bench_flow_vae.main(["--device", "cpu", "--threads", "1", "--configs", "2x16x3", "--steps",
                                             "2", "--warmup", "1", "--rounds", "1",
                                             "--impls", "pytorch eager,pgm eager"])
    printed = capsys.readouterr().out
    assert [impl for _, impl, *_ in rows] == ["pytorch eager", "pgm eager"]
    assert list(differences) == ["latent 2, hidden 16, 3 planar layers"]
    assert differences["latent 2, hidden 16, 3 planar layers"] < 1e-4
    assert "largest difference over 8 batches" in printed and "| pgm eager |" in printed
