"""VAE: the variational autoencoder of one modality x (Kingma & Welling 2013, docs/papers.md section 1).

    p(z) = N(0, I),  p(x|z) Bernoulli,  q(z|x) Gaussian;
    L(x) = -KL(q(z|x) || p(z)) + E_q(z|x)[log p(x|z)]        (maximized; the KL is analytic)

Reports the test ELBO and the importance-weighted (IWAE, K = --iw-samples) test log-likelihood log p(x).
Networks: x-D512BR-D512BR, heads D64 for q(z|x); z-D512BR-D512BR, then Dx for p(x|z).

--prior vamp replaces N(0, I) by the VampPrior (Tomczak & Welling, "VAE with a VampPrior", AISTATS 2018): the
encoder mixed over K = --pseudo-inputs learned pseudo-inputs u_k, started at K training examples,

    p(z) = 1/K sum_k q(z|u_k)                                  (Mixture.at(q, x=u); the KL by Monte Carlo)

    python examples/vae.py                                # scikit-learn digits, x = left halves
    python examples/vae.py --prior vamp --pseudo-inputs 50
    python examples/vae.py --dataset mnist --data-root ~/data --pairing noisy
"""
import argparse

from torch import nn

from common import data, multimodal, results, training
from common.errors import UsageError
from common.networks import Gaussian, Logits, mlp
from pgm.distributions import Bernoulli, Mixture, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    multimodal.add_arguments(parser)
    group = parser.add_argument_group("prior")
    group.add_argument("--prior", choices=["normal", "vamp"], default="normal",
                       help="N(0, I), or the VampPrior: the encoder mixed over learned pseudo-inputs (default: normal)")
    group.add_argument("--pseudo-inputs", type=training.int_range(2), default=50,
                       help="K, the VampPrior's pseudo-inputs, at least 2 (the encoder's BatchNorm sees them as one "
                            "batch; default: 50)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = multimodal.load_data(args, device)
    print(f"Data: {paired.description} (x only, labels unused)")
    dx, h, dz = paired.x_dim, args.hidden, args.latent

    q = Normal("q(z|x)", net=Gaussian(mlp(dx, [h, h]), dz))
    p = Bernoulli("p(x|z)", net=Logits(mlp(dz, [h, h]), dx))
    if args.prior == "vamp":  # K pseudo-inputs, started at the first K training examples
        x_train = paired.unlabelled[0]
        if args.pseudo_inputs > len(x_train):
            raise UsageError(f"--pseudo-inputs {args.pseudo_inputs}: the VampPrior starts its pseudo-inputs at "
                             f"training examples, and there are {len(x_train)}; give at most that many.")
        pseudo = nn.Parameter(x_train[:args.pseudo_inputs].detach().clone().cpu())
        prior = Mixture.at(q, x=pseudo)
        print(f"Prior: {prior.latex()}")
    else:
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
    name = "VAE" if args.prior == "normal" else f"VAE, VampPrior (K={args.pseudo_inputs})"
    return results.write(out, f"VAE: test ELBO and log p(x) (IWAE, K={args.iw_samples})", {name: scores}, args,
                         paired.description, elbo.latex(), history)


if __name__ == "__main__":
    training.run(main)
