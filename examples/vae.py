"""VAE: the variational autoencoder of one modality x (Kingma & Welling 2013, docs/papers.md section 1).

    p(z) = N(0, I),  p(x|z) Bernoulli,  q(z|x) Gaussian;
    L(x) = -KL(q(z|x) || p(z)) + E_q(z|x)[log p(x|z)]        (maximized; the KL is analytic)

Reports the test ELBO and the importance-weighted (IWAE, K = --iw-samples) test log-likelihood log p(x).
Networks: x-D512BR-D512BR, heads D64 for q(z|x); z-D512BR-D512BR, then Dx for p(x|z).

    python examples/vae.py                                # scikit-learn digits, x = left halves
    python examples/vae.py --dataset mnist --data-root ~/data --pairing noisy
"""
import argparse

from common import data, multimodal, results, training
from common.networks import Gaussian, Logits, mlp
from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    multimodal.add_arguments(parser)
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = multimodal.load_data(args, device)
    print(f"Data: {paired.description} (x only, labels unused)")
    dx, h, dz = paired.x_dim, args.hidden, args.latent

    q = Normal("q(z|x)", net=Gaussian(mlp(dx, [h, h]), dz))
    p = Bernoulli("p(x|z)", net=Logits(mlp(dz, [h, h]), dx))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    elbo = -KL(q, prior) + E(q, LogProb(p))
    print(f"Objective (maximized):\n{elbo.latex()}")
    draw_graphical_model([p * prior, q], out / "graphical_model.png", title="VAE")

    model = Model(-elbo.mean(), distributions=[q.to(device), p.to(device), prior.to(device)],
                  **training.model_options(args))
    x_test = paired.test[0]
    history = training.train(model, paired, args, out, prepare=lambda labelled, unlabelled: {"x": unlabelled["x"]},
                             monitor=lambda: {"test ELBO": -model.test({"x": x_test})})

    scores = {"ELBO": -model.test({"x": x_test}),
              "log p(x)": multimodal.importance_log_likelihood(p * prior, q, {"x": x_test}, args.iw_samples)
                                    .mean().item()}
    return results.write(out, f"VAE: test ELBO and log p(x) (IWAE, K={args.iw_samples})", {"VAE": scores}, args,
                         paired.description, elbo.latex(), history)


if __name__ == "__main__":
    training.run(main)
