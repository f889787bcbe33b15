"""Bayesian linear regression by mean-field variational inference, checked against the exact posterior (Bishop,
"Pattern Recognition and Machine Learning", 2006, sections 3.3 and 10.1.2), with Bayes by backprop's objective
(Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015) on minibatches. No network: q(w)'s mean and
scales are learned directly (Learned), and w is a global variable, drawn once per step and shared by the batch.

    p(w) = N(0, alpha^-1 I),  p(y|x,w) = N(y; x^T w, beta^-1) (beta known),  q(w) = N(m, diag s^2);
    J = E_q(w)[sum_{n=1}^N log p(y_n|x_n,w)] - KL(q(w) || p(w))        (maximized; the KL is analytic)

The exact posterior is N(mu, Sigma), Sigma = (alpha I + beta X^T X)^-1, mu = beta Sigma X^T y. Mean-field VI's
optimum q* has mean exactly mu and variances exactly 1 / diag(Sigma^-1), smaller than diag(Sigma) when the
features are correlated (Bishop's figure 10.2). Reports q's distance to q* and to the posterior, and draws q's
marginals beside both to <out>/marginals.png.

Data: N points x ~ N(0, C) with C_ij = rho^|i-j| (--correlation rho), true weights drawn from the prior,
y = x^T w + noise of scale beta^-1/2 (--noise).

    python examples/bayesian_regression.py                      # N = 500 points, D = 4 features
    python examples/bayesian_regression.py --features 8 --correlation 0.95 --samples 4
"""
import argparse

import torch
import torch.distributions as td

from common import data, results, training
from pgm.distributions import Learned, Normal
from pgm.losses import KL, E, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


def regression_data(points, features, correlation, noise, prior_scale, seed):
    """x (N, D) with corr(x_i, x_j) = correlation^|i-j|, and y = x w + noise (N,), w (D,) drawn from the prior."""
    generator = torch.Generator().manual_seed(seed)
    lags = torch.arange(features)
    chol = torch.linalg.cholesky(correlation ** (lags[:, None] - lags).abs().double()).float()
    x = torch.randn(points, features, generator=generator) @ chol.T
    w = prior_scale * torch.randn(features, generator=generator)
    return x, x @ w + noise * torch.randn(points, generator=generator), w


def bayesian_regression(features, points, noise, prior_scale, samples=1):
    """The model and its objective: (J, q(w), p(w), p(y|x,w)), J estimated with ``samples`` draws of w."""
    q_w = Normal("q(w)", loc=Learned(torch.zeros(features)), scale=Learned(torch.full((features,), 0.1)))
    p_w = Normal("p(w)", loc=torch.zeros(features), scale=torch.full((features,), prior_scale))
    # x (n, D) and the global w broadcast to (n, D): one draw of w shared by the batch
    p_y = Normal("p(y|x,w)", net=lambda x, w: {"loc": (x * w).sum(-1), "scale": torch.full_like(x[:, 0], noise)})
    objective = E(q_w, LogProb(p_y).sum(size=points), sample_shape=samples) - KL(q_w, p_w)
    return objective, q_w, p_w, p_y


def exact_posterior(x, y, noise, prior_scale):
    """N(mu, Sigma), Sigma = (alpha I + beta X^T X)^-1, mu = beta Sigma X^T y; and mean-field's optimum q*,
    N(mu, diag(1 / diag(Sigma^-1))). In float64."""
    x, y = x.double(), y.double()
    precision = torch.eye(x.shape[1], dtype=x.dtype) / prior_scale ** 2 + x.T @ x / noise ** 2
    covariance = torch.linalg.inv(precision)
    mean = covariance @ x.T @ y / noise ** 2
    return td.MultivariateNormal(mean, covariance), td.Normal(mean, precision.diagonal().rsqrt())


def distances(loc, scale, posterior, optimum):
    """How far N(loc, diag scale^2) is from mean-field's optimum and from the exact posterior."""
    loc, scale = loc.double(), scale.double()
    exact_scale = posterior.covariance_matrix.diagonal().sqrt()
    q = td.MultivariateNormal(loc, torch.diag_embed(scale ** 2))
    return {"mean error": ((loc - optimum.loc).abs() / optimum.scale).max().item(),
            "scale error vs q*": (scale / optimum.scale - 1).abs().max().item(),
            "scale error vs posterior": (scale / exact_scale - 1).abs().max().item(),
            "KL(q || posterior)": td.kl_divergence(q, posterior).item()}


def marginals_figure(path, q, optimum, posterior, title):
    """One panel per weight: the densities of q(w_d), of q*(w_d) and of the exact posterior's marginal."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    exact = td.Normal(posterior.mean, posterior.covariance_matrix.diagonal().sqrt())
    count = len(exact.loc)
    columns = min(count, 4)
    figure, axes = plt.subplots(-(-count // columns), columns, figsize=(3 * columns, 2.6 * -(-count // columns)),
                                squeeze=False)
    for d, axis in enumerate(axes.flat):
        if d >= count:
            axis.axis("off")
            continue
        grid = exact.loc[d] + exact.scale[d] * torch.linspace(-4, 4, 200, dtype=exact.loc.dtype)
        for label, marginal, style in (("exact posterior", exact, "k:"), ("mean-field optimum q*", optimum, "C3--"),
                                       ("pgm q(w)", q, "C0-")):
            density = td.Normal(marginal.loc[d], marginal.scale[d]).log_prob(grid).exp()
            axis.plot(grid, density, style, label=label)
        axis.set(xlabel=f"w[{d}]", yticks=[])
    figure.legend(*axes.flat[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=600, batch_size=100, lr=0.003)
    group = parser.add_argument_group("model")
    group.add_argument("--points", type=training.positive_int, default=500, help="N, training points (default: 500)")
    group.add_argument("--features", type=training.positive_int, default=4, help="D, weights (default: 4)")
    group.add_argument("--correlation", type=training.unit_interval, default=0.8,
                       help="rho, the correlation of neighbouring features, in [0, 1) (default: 0.8)")
    group.add_argument("--noise", type=training.positive_float, default=1.0,
                       help="beta^-1/2, the known noise scale (default: 1)")
    group.add_argument("--prior-scale", type=training.positive_float, default=1.0,
                       help="alpha^-1/2, the prior's scale (default: 1)")
    group.add_argument("--samples", type=training.positive_int, default=16,
                       help="K, draws of w per step: fewer make Adam's iterates jitter more about q* (default: 16)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    x, y, _ = regression_data(args.points, args.features, args.correlation, args.noise, args.prior_scale, args.seed)
    description = (f"generated linear regression (N = {args.points:,}, D = {args.features}, feature correlation "
                   f"{args.correlation:g}, noise {args.noise:g})")
    print(f"Data: {description}")
    empty = x[:, :0]  # no labels, no test set: the score is the distance to the exact posterior
    paired = training.to_device(data.PairedData((x, y[:, None], empty), (x, y[:, None]), (x, y[:, None], empty), 0,
                                                args.features, 1, None, False, description), device)

    objective, q_w, p_w, p_y = bayesian_regression(args.features, args.points, args.noise, args.prior_scale,
                                                   args.samples)
    print(f"Objective (maximized):\n{objective.latex()}")
    draw_graphical_model([p_y * p_w, q_w], out / "graphical_model.png", title="Bayesian linear regression")
    posterior, optimum = exact_posterior(x, y, args.noise, args.prior_scale)

    def scores():
        params = q_w.get_params()
        return distances(params["loc"].detach().cpu(), params["scale"].detach().cpu(), posterior, optimum)

    model = Model(-objective, distributions=[d.to(device) for d in (q_w, p_y, p_w)], **training.model_options(args))
    history = training.train(model, paired, args, out, prepare=lambda _, unlabelled: {  # y travels as w
        "x": unlabelled["x"], "y": unlabelled["w"][:, 0]}, monitor=lambda: {"KL(q || posterior)": scores()[
            "KL(q || posterior)"]})

    table = {"pgm q(w) (Adam)": scores(),
             "mean-field optimum q*": distances(optimum.loc, optimum.scale, posterior, optimum)}
    with torch.no_grad():
        params = q_w.get_params()
        marginals_figure(out / "marginals.png", td.Normal(params["loc"].cpu(), params["scale"].cpu()), optimum,
                         posterior, description)
    return results.write(out, "Bayesian linear regression: q(w) against the exact posterior", table, args,
                         description, objective.latex(), history, flat=False,
                         headings={"mean error": "max abs(m - mu) / s*", "scale error vs q*": "max abs(s / s* - 1)",
                                   "scale error vs posterior": "max abs(s / sqrt(Sigma_dd) - 1)"})


if __name__ == "__main__":
    training.run(main)
