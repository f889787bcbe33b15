"""CVAE: the conditional variational autoencoder of x given its label y (Sohn, Lee & Yan, NeurIPS 2015).

"Learning Structured Output Representation using Deep Conditional Generative Models", in the paper's simple form:

    p(z) = N(0, I),  p(x|z,y) Bernoulli,  q(z|x,y) Gaussian,  y one-hot;
    L(x,y) = -KL(q(z|x,y) || p(z)) + E_q(z|x,y)[log p(x|z,y)]        (maximized; the KL is analytic)

Reports the test ELBO and the importance-weighted (IWAE, K = --iw-samples) test log p(x|y), and draws digits of
each class, z ~ p(z), to <out>/samples.png. Networks as M2's: (x-DkBR-DkBR, y)-DkBR, Gaussian heads for q(z|x,y);
(z, y)-DkBR-DkBR, then Dx for p(x|z,y).

    python examples/cvae.py                               # scikit-learn digits, whole 8x8 images, all labels
    python examples/cvae.py --dataset mnist --data-root ~/data --epochs 50
"""
import argparse

import torch

from common import data, multimodal, results, training
from common.networks import Gaussian, Join, Logits
from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100)
    data.add_image_arguments(parser)
    multimodal.add_arguments(parser)
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description}")
    dx, k, h, dz = images.x_dim, images.num_classes, args.hidden, args.latent

    q = Normal("q(z|x,y)", net=Gaussian(Join([dx, k], [[h, h], []], [h]), dz))
    p = Bernoulli("p(x|z,y)", net=Logits(Join([dz, k], [[], []], [h, h]), dx))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    elbo = -KL(q, prior) + E(q, LogProb(p))
    print(f"Objective (maximized):\n{elbo.latex()}")
    draw_graphical_model([p * prior, q], out / "graphical_model.png", title="CVAE")

    model = Model(-elbo.mean(), distributions=[q.to(device), p.to(device), prior.to(device)],
                  **training.model_options(args))
    test = {"x": images.test[0], "y": images.test[2]}
    history = training.train(model, images, args, out, prepare=lambda labelled, _: {"x": labelled["x"],
                                                                                     "y": labelled["y"]},
                             monitor=lambda: {"test ELBO": -model.test(test)})

    scores = {"ELBO": -model.test(test),
              "log p(x|y)": multimodal.importance_log_likelihood(p * prior, q, test, args.iw_samples).mean().item()}
    p.eval()  # 8 draws z ~ p(z) for each class y, as the means of p(x|z,y)
    with torch.no_grad():
        means = p.sample_mean(prior.sample({"y": torch.eye(k, device=device).repeat_interleave(8, 0)}))
    multimodal.image_grid_figure(out / "samples.png", means.reshape(k, 8, dx), images.image_shape,
                                 [f"y = {c}" for c in range(k)], f"mean of {p.prob_text}, z ~ {prior.prob_text}")
    return results.write(out, f"CVAE: test ELBO and log p(x|y) (IWAE, K={args.iw_samples})", {"CVAE": scores},
                         args, images.description, elbo.latex(), history)


if __name__ == "__main__":
    training.run(main)
