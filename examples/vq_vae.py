"""VQ-VAE: the vector-quantized variational autoencoder (van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete
Representation Learning", NeurIPS 2017), its equation 3 with the decoder's log-likelihood:

    z_e(x) = encoder(x) (N vectors of D dims),  e = the nearest of K learned codebook vectors to each,
    z_q(x) = z_e(x) + sg[e - z_e(x)] (straight-through: the value of e, the gradient of z_e),  p(x|z_q) Bernoulli;
    J = log p(x|z_q(x)) - ||sg[z_e(x)] - e||^2 - beta ||z_e(x) - sg[e]||^2        (maximized; beta = --beta)

The codebook term trains the codebook only, the commitment term the encoder only: both are written with pgm's
variables inside the formula (Var, detach, squared_norm), so the LaTeX printed is the objective trained. The
prior over the codes is uniform and left out, as in the paper (its KL is the constant log K). Reports the test
reconstruction error (the mean squared error of the decoder's mean, per pixel), log p(x|z_q), and the codebook's
use on the test split: the number of codes used and the perplexity exp(H) of their frequencies (K at most);
writes the test images and their reconstructions to <out>/reconstructions.png.
Networks: x-DkBR-DkBR, then D(N*D) for z_e; z_q-DkBR-DkBR, then Dx for p(x|z_q).

    python examples/vq_vae.py                             # scikit-learn digits, whole 8x8 images
    python examples/vq_vae.py --codes 64 --positions 8 --beta 0.5
    python examples/vq_vae.py --dataset mnist --data-root ~/data --epochs 50
"""
import argparse
import math

import torch
from torch import nn

from common import data, multimodal, results, training
from common.networks import Logits, mlp
from pgm.distributions import Bernoulli, Deterministic, VectorQuantizer
from pgm.losses import E, LogProb, Parameter, Var, detach, squared_norm
from pgm.models import Model


class Encoder(nn.Module):
    """x (B, Dx) -> {"loc": z_e (B, N, D)}: N vectors of the codebook's D dims, the layout VectorQuantizer takes."""

    def __init__(self, dx, hidden, positions, code_dim):
        super().__init__()
        self.body, self.shape = mlp(dx, [hidden, hidden]), (positions, code_dim)
        self.head = nn.Linear(hidden, positions * code_dim)

    def forward(self, x):
        return {"loc": self.head(self.body(x)).reshape(-1, *self.shape)}


class Decoder(Logits):
    """z_q (B, N, D) -> {"logits": (B, Dx)}."""

    def forward(self, z_q):
        return super().forward(z_q.flatten(1))


def build(dx, hidden, positions, code_dim, codes):
    """The encoder q(z_e|x), the quantizer q(z_q,e|z_e), the decoder p(x|z_q) and the objective J."""
    encoder = Deterministic("q(z_e|x)", net=Encoder(dx, hidden, positions, code_dim))
    codebook = nn.Embedding(codes, code_dim)
    nn.init.uniform_(codebook.weight, -1 / codes, 1 / codes)
    quantizer = VectorQuantizer("q(z_q,e|z_e)", codebook=codebook)
    decoder = Bernoulli("p(x|z_q)", net=Decoder(mlp(positions * code_dim, [hidden, hidden]), dx))
    z_e, e = Var("z_e"), Var("e")
    objective = E(encoder * quantizer, LogProb(decoder) - squared_norm(detach(z_e) - e)
                  - Parameter("beta") * squared_norm(z_e - detach(e)))
    return encoder, quantizer, decoder, objective


@torch.no_grad()
def evaluate(encoder, quantizer, decoder, x):
    """Test scores on x (all rows at once), in evaluation mode (Model.train switches back): the reconstruction's
    mean squared error per pixel, log p(x|z_q) per image, the number of codes used and their perplexity."""
    for module in (encoder, quantizer, decoder):
        module.eval()
    z_e = encoder.sample({"x": x})["z_e"]
    codes = quantizer.nearest(z_e)
    drawn = quantizer.sample({"z_e": z_e})
    mean = decoder.sample_mean({"z_q": drawn["z_q"]})
    frequencies = torch.bincount(codes.flatten(), minlength=quantizer.codebook_size).float() / codes.numel()
    entropy = -(frequencies[frequencies > 0] * frequencies[frequencies > 0].log()).sum()
    return {"reconstruction MSE": (mean - x).pow(2).mean().item(),
            "log p(x|z_q)": decoder.log_prob({"x": x, "z_q": drawn["z_q"]}).mean().item(),
            "codes used": int((frequencies > 0).sum()), "perplexity": math.exp(entropy.item())}


@torch.no_grad()
def reconstructions_figure(path, encoder, quantizer, decoder, x, image_shape, columns=12):
    """The first ``columns`` test images above the means of their reconstructions, as a PNG."""
    for module in (encoder, quantizer, decoder):
        module.eval()
    x = x[:columns]
    z_q = quantizer.sample(encoder.sample({"x": x}))["z_q"]
    rows = torch.stack([x, decoder.sample_mean({"z_q": z_q})])
    multimodal.image_grid_figure(path, rows, image_shape, ["x", "mean of p(x|z_q)"],
                                 title="VQ-VAE: test images and their reconstructions")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=150, batch_size=128, hidden=256)
    data.add_image_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--codes", type=training.int_range(2), default=32, help="K, codebook vectors (default: 32)")
    group.add_argument("--code-dim", type=training.positive_int, default=8, help="D, their dims (default: 8)")
    group.add_argument("--positions", type=training.positive_int, default=4,
                       help="N, the vectors z_e(x) holds, each quantized to its own code (default: 4)")
    group.add_argument("--beta", type=training.non_negative_float, default=0.25,
                       help="beta, the commitment term's weight (default: 0.25, the paper's)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description} (labels unused)")

    encoder, quantizer, decoder, objective = build(images.x_dim, args.hidden, args.positions, args.code_dim,
                                                   args.codes)
    print(f"Objective (maximized):\n{objective.latex()}")
    model = Model(-objective.mean(), distributions=[encoder.to(device), quantizer.to(device), decoder.to(device)],
                  **training.model_options(args))
    x_test = images.test[0]
    history = training.train(model, images, args, out, params={"beta": args.beta},
                             prepare=lambda labelled, _: {"x": labelled["x"]},
                             monitor=lambda: evaluate(encoder, quantizer, decoder, x_test))

    reconstructions_figure(out / "reconstructions.png", encoder, quantizer, decoder, x_test, images.image_shape)
    scores = evaluate(encoder, quantizer, decoder, x_test)
    return results.write(out, f"VQ-VAE (K={args.codes}, N={args.positions}, D={args.code_dim}): test reconstruction "
                              f"and codebook use", {"VQ-VAE": scores}, args, images.description, objective.latex(),
                         history)


if __name__ == "__main__":
    training.run(main)
