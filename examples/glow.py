"""Glow: a multi-scale flow of actnorm, invertible 1x1 convolutions and affine couplings (Kingma & Dhariwal,
NeurIPS 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions"), on the multi-scale architecture of RealNVP
(Dinh, Sohl-Dickstein & Bengio, ICLR 2017), for scikit-learn's 8x8 digits.

    x in {0..16}^(1x8x8) (L = 17 levels), dequantized and squashed (pgm's Logit): h = logit(a + (1 - 2a)(x + u)/L);
    each of --levels levels l: squeeze (C, H, W) -> (4C, H/2, W/2), then --steps steps of flow, each
        actnorm          h <- h exp(s) + b                     log|det| = HW sum_c s_c  (s, b set by the first batch)
        1x1 convolution  h <- W h,  W = P L (U + diag(e^v))    log|det| = HW sum_c v_c
        affine coupling  h_b <- h_b exp(s(h_a)) + t(h_a)       log|det| = sum s(h_a)   ((h_a, h_b): the channel halves)
    then, below the top level, the split: (h_l, z_l) = split(h), z_l ~ N(mu(h_l), sigma(h_l)) (a zero-initialized
    3x3 convolution of h_l), and h_l goes on; the top level's h_L ~ N(0, I):
    log p(x) = log N(h_L; 0, I) + sum_l log p(z_l|h_l) + sum of the log|det|,  J = E_data[log p(x)]   (maximized)

pgm's coupling uses exp(s) with s soft-clamped where Glow uses sigmoid(s + 2). Reports the test bits per dimension
-log p(x + u)/(64 log 2) beside a diagonal Gaussian (a uniform over the 17 levels scores log2 17 = 4.09), and draws
test digits and samples to <out>/samples.png.

    python examples/glow.py
    python examples/glow.py --levels 3 --steps 8 --epochs 200
"""
import argparse

import torch
from torch import nn

from common import multimodal, results, training
from pgm.distributions import Flow, Normal
from pgm.distributions.flows import ActNorm, AffineCoupling, FactorOut, InvertibleConv1x1, Logit, Squeeze, bits_per_dim
from real_nvp import LEVELS, dequantize, digit_pixels, fit, gaussian_bits_per_dim


class SplitPrior(nn.Module):
    """Glow's prior of the factored-out channels: a zero-initialized 3x3 convolution of the kept ones gives the mean
    and log-scale of each factored-out channel (at first N(0, I))."""

    def __init__(self, kept, factored):
        super().__init__()
        self.conv = nn.Conv2d(kept, 2 * factored, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h):
        loc, log_scale = self.conv(h).chunk(2, 1)
        return {"loc": loc, "scale": log_scale.exp()}


def glow_flow(levels, steps, hidden, alpha=0.05):
    """p_K(x) for x of shape (1, 8, 8): the dequantizing logit, then ``levels`` levels of ``steps`` steps each."""
    shape, layers = (1, 8, 8), [Logit(alpha, levels=LEVELS)]
    for level in range(1, levels + 1):
        shape = (4 * shape[0], shape[1] // 2, shape[2] // 2)
        layers.append(Squeeze())
        for _ in range(steps):
            layers += [ActNorm(shape[0]), InvertibleConv1x1(shape[0]), AffineCoupling(shape, "channel", hidden=hidden)]
        if level < levels:
            kept = shape[0] // 2
            prior = Normal(f"p(z_{level}|h_{level})", net=SplitPrior(kept, shape[0] - kept))
            layers.append(FactorOut(shape[0], prior))
            shape = (kept, *shape[1:])
    return Flow(Normal("p_0(x)", loc=0.0, scale=1.0, features_shape=list(shape)), layers, direction="inverse")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100, batch_size=128, hidden=64)
    parser.add_argument("--levels", type=training.int_range(1, 3), default=2,
                        help="levels of the multi-scale architecture, 1 to 3 for 8x8 images (default: 2)")
    parser.add_argument("--steps", type=training.positive_int, default=4,
                        help="steps of flow (actnorm, 1x1 convolution, coupling) per level (default: 4)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    out, device = training.setup(args)

    pixels, pixels_test, source = digit_pixels(args.seed)
    description = f"{source}, pixel values 0..16 dequantized"
    p = glow_flow(args.levels, args.steps, args.hidden)
    history, log_p, objective = fit("digits", p, pixels, pixels_test, description, args, out, device)
    table = {"Glow": {"test bits/dim": bits_per_dim(torch.tensor(log_p), (1, 8, 8)).item()},
             "diagonal Gaussian": {"test bits/dim": gaussian_bits_per_dim(dequantize(pixels, args.seed),
                                                                          dequantize(pixels_test, args.seed + 1))}}
    p.cpu().eval()
    with torch.no_grad():
        samples = p.sample({}, sample_shape=16)["x"].clamp(0, 16) / 16
    multimodal.image_grid_figure(out / "samples.png", torch.stack([pixels_test[:16] / 16, samples]).flatten(2),
                                 (8, 8), ["test data", "samples"], f"Glow on digits ({args.levels} levels)")
    return results.write(out, "Glow: test bits per dimension", table, args, description, {"digits": objective},
                         {"digits": history}, flat=False)


if __name__ == "__main__":
    training.run(main)
