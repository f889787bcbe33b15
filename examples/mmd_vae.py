"""MMD-VAE: InfoVAE with the maximum mean discrepancy (Zhao, Song & Ermon, "InfoVAE: Information Maximizing
Variational Autoencoders", 2017), its alpha = 1 case: the KL of the VAE replaced by an MMD between q(z) and p(z).

    p(z) = N(0, I),  p(x|z) Bernoulli,  q(z|x) Gaussian;
    J = E_data[E_q(z|x)[log p(x|z)]] - lambda MMD[q(z) || p(z)]        (maximized; lambda = --mmd-weight)

MMD^2 is estimated on each batch from B draws z_q ~ q(z|x) (one per example, so from the aggregate posterior
q(z)) and B draws z_p ~ p(z), with the Gaussian kernel k(a, b) = exp(-|a - b|^2 / D), D = dim z (a V-statistic):
mean k(z_q, z_q') + mean k(z_p, z_p') - 2 mean k(z_q, z_p). Reports the test reconstruction log-likelihood, the
test MMD and, for comparison with a VAE, the ELBO of the same networks (which this objective does not maximize);
decodes z ~ p(z) to <out>/samples.png. Networks as examples/vae.py's: x-DkBR-DkBR, Gaussian heads; z-DkBR-DkBR, then Dx.

    python examples/mmd_vae.py                            # scikit-learn digits, whole 8x8 images
    python examples/mmd_vae.py --dataset mnist --data-root ~/data --epochs 50 --latent 16
"""
import argparse

import torch

from common import data, evaluation, multimodal, results, training
from common.networks import Gaussian, Logits, mlp
from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb, Parameter, Term
from pgm.models import Model
from pgm.visualize import draw_graphical_model

def mmd(z_q, z_p):
    """The squared MMD between the samples z_q (..., D) and z_p (..., D), Gaussian kernel of width D: shape ()."""
    z_q, z_p = z_q.reshape(-1, z_q.shape[-1]), z_p.reshape(-1, z_p.shape[-1])
    kernel = lambda a, b: torch.exp(-(a[:, None] - b[None]).pow(2).sum(-1) / a.shape[-1])  # noqa: E731
    return kernel(z_q, z_q).mean() + kernel(z_p, z_p).mean() - 2 * kernel(z_q, z_p).mean()


def build(dx, hidden, dz):
    """q(z|x), p(x|z), p(z), the objective J and its MMD term."""
    q = Normal("q(z|x)", net=Gaussian(mlp(dx, [hidden, hidden]), dz))
    p = Bernoulli("p(x|z)", net=Logits(mlp(dz, [hidden, hidden]), dx))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    divergence = Term(mmd, r"\mathrm{MMD}\left[q(z)\|p(z)\right]", "MMD[q(z)||p(z)]", inputs={"z_q": q, "z_p": prior})
    return q, p, prior, E(q, LogProb(p)) - Parameter("lambda") * divergence, divergence


@torch.no_grad()
def evaluate(q, p, prior, divergence, x, seed=0):
    """Test reconstruction E_q(z|x)[log p(x|z)], MMD[q(z)||p(z)] and ELBO on x (all rows at once), in evaluation
    mode (left so: Model.train switches back), with a seeded random stream of its own (training's left as it was)."""
    q.eval(), p.eval()
    with evaluation.seeded(seed, x.device):
        return {"log p(x|z)": E(q, LogProb(p)).eval({"x": x}).mean().item(), "MMD": divergence.eval({"x": x}).item(),
                "ELBO": (E(q, LogProb(p)) - KL(q, prior)).eval({"x": x}).mean().item()}


@torch.no_grad()
def samples_figure(path, p, prior, image_shape, rows=8, columns=12):
    """A grid of means of p(x|z), z ~ p(z), as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid
    p.eval()
    images = p.sample_mean(prior.sample({}, sample_shape=[rows * columns])).cpu().reshape(-1, 1, *image_shape)
    grid = make_grid(images, nrow=columns, padding=1, pad_value=1.0)[0]
    figure, axis = plt.subplots(figsize=(0.4 * columns, 0.4 * rows + 0.4))
    axis.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set(xticks=[], yticks=[], title=f"mean of {p.prob_text}, z ~ {prior.prob_text}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100)
    data.add_image_arguments(parser)
    multimodal.add_arguments(parser, latent=16)
    parser.add_argument("--mmd-weight", type=training.non_negative_float, default=1000.0, help="lambda, the MMD's weight (default: 1000)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description} (labels unused)")

    q, p, prior, objective, divergence = build(images.x_dim, args.hidden, args.latent)
    print(f"Objective (maximized):\n{objective.latex()}")
    draw_graphical_model([p * prior, q], out / "graphical_model.png", title="MMD-VAE")

    model = Model(-objective.mean(), distributions=[q.to(device), p.to(device), prior.to(device)],
                  **training.model_options(args))
    x_test = images.test[0]
    history = training.train(model, images, args, out, params={"lambda": args.mmd_weight},
                             prepare=lambda labelled, _: {"x": labelled["x"]},
                             monitor=lambda: evaluate(q, p, prior, divergence, x_test, args.seed))

    samples_figure(out / "samples.png", p, prior, images.image_shape)
    return results.write(out, f"MMD-VAE (lambda={args.mmd_weight:g}): test log p(x|z), MMD and ELBO",
                         {"MMD-VAE": evaluate(q, p, prior, divergence, x_test, args.seed)}, args,
                         images.description, objective.latex(), history)


if __name__ == "__main__":
    training.run(main)
