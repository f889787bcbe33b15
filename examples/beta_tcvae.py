"""beta-TCVAE: the ELBO split into mutual information, total correlation and dimension-wise KL (Chen, Li, Grosse &
Duvenaud, "Isolating Sources of Disentanglement in Variational Autoencoders", NeurIPS 2018).

    p(z) = N(0, I),  p(x|z) Bernoulli,  q(z|x) Gaussian;
    L(x) = E_q(z|x)[log p(x|z)] - alpha I_q(x;z) - beta TC(z) - gamma sum_d KL(q(z_d)||p(z_d))      (maximized)
    I = E_q(z|x)[log q(z|x) - log q(z)],  TC = E_q(z|x)[log q(z) - sum_d log q(z_d)],
    dimension-wise KL = E_q(z|x)[sum_d log q(z_d) - log p(z)]

(alpha = beta = gamma = 1 is the VAE's ELBO.) The aggregate posterior q(z) = 1/N sum_n q(z|x_n) is estimated on
each batch by minibatch-weighted sampling (MWS, section 4.1): the batch's draws z_i ~ q(z|x_i), i = 1..M, are scored
under every example's posterior, without running the encoder again (ParametersOf(q)),

    log q(z_i) ~= logsumexp_j log q(z_i|x_j) - log(N M),   log q(z_id) ~= logsumexp_j log q(z_id|x_j) - log(N M),

N the training set's size. These estimates sit below the true log-densities by about log N (log q(z)) and D log N
(sum_d log q(z_d)), constants without gradient, so the training loss printed, -L with them, exceeds the test -ELBO
by about (alpha + (D - 1) beta - D gamma) log N.

Reports the test ELBO and I, TC and the dimension-wise KL on the test split (its first 1,000 examples), there with
q(z) their own aggregate posterior (all of them as one batch, log q(z_i) = logsumexp_j log q(z_i|x_j) - log N, as the
authors' ELBO decomposition does), and a latent traversal of a test digit to <out>/traversal.png (one row per
latent dimension, most informative first). Networks as examples/vae.py's: x-DkBR-DkBR, Gaussian heads;
z-DkBR-DkBR, then Dx.

    python examples/beta_tcvae.py                          # scikit-learn digits, whole 8x8 images, beta = 6
    python examples/beta_tcvae.py --beta 1                 # the VAE's ELBO, decomposed
"""
import argparse
import functools
import math

import torch

from common import data, evaluation, multimodal, results, training
from common.networks import Gaussian, Logits, mlp
from pgm import Shared
from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb, Parameter, ParametersOf, Term
from pgm.models import Model
from pgm.visualize import draw_graphical_model

WEIGHTS = ("alpha", "beta", "gamma")
DECOMPOSED = 1000  # test rows scored under each other's posteriors, (n, n, D) numbers: all of the digits' 400


def aggregate_log_densities(z, loc, scale, dataset_size):
    r"""log q(z) and log q(z_d) of each draw under the aggregate posterior, by minibatch-weighted sampling.

    With :math:`\ell_{ijd} = \log q(z_{id}|x_j)` (the draw of example i scored under example j's posterior):

    .. math:: \log q(z_i) \approx \mathrm{logsumexp}_j \sum_d \ell_{ijd} - \log(NM), \qquad
              \log q(z_{id}) \approx \mathrm{logsumexp}_j \ell_{ijd} - \log(NM).

    With ``dataset_size`` 1 the batch is the data set, and :math:`\frac{1}{M}\sum_j q(z|x_j)` is its aggregate
    posterior exactly.

    Args:
        z: the draws, ``(..., M, D)``, row i drawn from q(z|x_i).
        loc, scale: the batch's posteriors q(z|x_j), ``(M, D)`` each.
        dataset_size: N, the number of examples the batch is drawn from.

    Returns:
        ``(log q(z) (..., M), log q(z_d) (..., M, D))``.
    """
    pairs = torch.distributions.Normal(loc, scale).log_prob(z.unsqueeze(-2))  # (..., M_i, M_j, D)
    normalizer = math.log(dataset_size * z.shape[-2])
    return torch.logsumexp(pairs.sum(-1), -1) - normalizer, torch.logsumexp(pairs, -2) - normalizer


def decomposition(q, prior, dataset_size):
    """The estimates of I_q(x;z), TC(z) and the dimension-wise KL, as pgm terms (each one value per example) that
    share one evaluation of :func:`aggregate_log_densities` on q's draw and parameters."""
    # Shared: log q(z) and sum_d log q(z_d) come from the same (M, M, D) scores, computed once per evaluation
    estimate = Shared(functools.partial(aggregate_log_densities, dataset_size=dataset_size))
    inputs = {"q_params": ParametersOf(q)}
    log_q_z = Term(lambda z, q_params: estimate(z, q_params["loc"], q_params["scale"])[0], r"\log q(z)",
                   "log q(z)", inputs=inputs)
    log_q_z_d = Term(lambda z, q_params: estimate(z, q_params["loc"], q_params["scale"])[1].sum(-1),
                     r"\sum_{d} \log q(z_d)", "sum_d log q(z_d)", inputs=inputs)
    return {"I": E(q, LogProb(q) - log_q_z), "TC": E(q, log_q_z - log_q_z_d),
            "dimension-wise KL": E(q, log_q_z_d - LogProb(prior))}


def build(dx, hidden, dz, dataset_size):
    """q(z|x), p(x|z), p(z) and the objective L (its weights the Parameters alpha, beta, gamma)."""
    q = Normal("q(z|x)", net=Gaussian(mlp(dx, [hidden, hidden]), dz))
    p = Bernoulli("p(x|z)", net=Logits(mlp(dz, [hidden, hidden]), dx))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[dz])
    terms = decomposition(q, prior, dataset_size)
    objective = E(q, LogProb(p))
    for weight, term in zip(WEIGHTS, terms.values()):
        objective = objective - Parameter(weight) * term
    return q, p, prior, objective


@torch.no_grad()
def evaluate(q, p, prior, x, seed=0):
    """The test ELBO (analytic KL) on x and I, TC, dimension-wise KL on its first DECOMPOSED rows, q(z) being their
    aggregate posterior (one batch), in evaluation mode (left so: Model.train switches back); each from the same
    seeded draw."""
    q.eval(), p.eval()
    scores = {"ELBO": (E(q, LogProb(p)) - KL(q, prior), x),
              **{name: (term, x[:DECOMPOSED]) for name, term in decomposition(q, prior, dataset_size=1).items()}}
    out = {}
    for name, (term, rows) in scores.items():
        with evaluation.seeded(seed, x.device):
            out[name] = term.eval({"x": rows}).mean().item()
    return out


@torch.no_grad()
def activities(q, x):
    """The variance over x of each dimension's posterior mean E_q[z_d|x], (D,): a dimension whose mean does not
    move with x carries no information (Burda, Grosse & Salakhutdinov 2016 count it active above 0.01)."""
    q.eval()
    return q.get_params({"x": x})["loc"].var(0)


@torch.no_grad()
def traversal_figure(path, q, p, x, image_shape, activity, steps=9, limit=3.0):
    """Decoded means as one latent dimension sweeps [-limit, limit] from the posterior mean of x (1, Dx), the other
    dimensions held; one row per dimension, the most active first (``activity`` (D,), see :func:`activities`)."""
    q.eval(), p.eval()
    loc = q.get_params({"x": x})["loc"][0]
    order = torch.argsort(activity, descending=True).tolist()
    values = torch.linspace(-limit, limit, steps, device=loc.device)
    z = loc.repeat(len(order), steps, 1)  # (D, steps, D)
    for row, d in enumerate(order):
        z[row, :, d] = values
    images = p.sample_mean({"z": z.reshape(-1, loc.shape[-1])}).reshape(len(order), steps, -1)
    labels = [f"$z_{{{d}}}$ ({activity[d]:.2f})" for d in order]
    multimodal.image_grid_figure(path, images, image_shape, labels,
                                 title=f"$z_d$ from {-limit:g} to {limit:g} (the variance of its posterior mean)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100, batch_size=256)
    data.add_image_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--latent", type=training.positive_int, default=10, help="size of the latent z (default: 10)")
    group.add_argument("--beta", type=training.non_negative_float, default=6.0,
                       help="beta, the total correlation's weight (default: 6)")
    group.add_argument("--alpha", type=training.non_negative_float, default=1.0,
                       help="alpha, the mutual information's weight (default: 1, the paper's)")
    group.add_argument("--gamma", type=training.non_negative_float, default=1.0,
                       help="gamma, the dimension-wise KL's weight (default: 1, the paper's)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description} (labels unused)")

    q, p, prior, objective = build(images.x_dim, args.hidden, args.latent, dataset_size=len(images.unlabelled[0]))
    print(f"Objective (maximized):\n{objective.latex()}")
    draw_graphical_model([p * prior, q], out / "graphical_model.png", title="beta-TCVAE")

    model = Model(-objective.mean(), distributions=[q.to(device), p.to(device), prior.to(device)],
                  **training.model_options(args))
    x_test = images.test[0]
    weights = {name: getattr(args, name) for name in WEIGHTS}
    history = training.train(model, images, args, out, params=weights,
                             prepare=lambda labelled, _: {"x": labelled["x"]},
                             monitor=lambda: evaluate(q, p, prior, x_test, args.seed))

    activity = activities(q, x_test)
    traversal_figure(out / "traversal.png", q, p, x_test[:1], images.image_shape, activity)
    scores = {**evaluate(q, p, prior, x_test, args.seed), "active dims": int((activity > 0.01).sum())}
    return results.write(out, f"beta-TCVAE (alpha={args.alpha:g}, beta={args.beta:g}, gamma={args.gamma:g}): test "
                              f"ELBO, I, TC and dimension-wise KL", {"beta-TCVAE": scores}, args,
                         images.description, objective.latex(), history)


if __name__ == "__main__":
    training.run(main)
