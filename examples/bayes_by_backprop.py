"""Bayes by backprop (Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015): a Bayesian neural network
for 1-D regression, its weights one global variable w with a mean-field Gaussian q(w), trained on minibatches.

    p(w) = N(0, prior_scale^2 I),  p(y|x,w) = N(y; f_w(x), sigma^2) (sigma known),  q(w) = N(m, diag s^2);
    J = E_q(w)[sum_{n=1}^N log p(y_n|x_n,w)] - KL(q(w) || p(w))    (maximized; K draws of w per step, the KL analytic)

f_w is a 1-H-1 tanh MLP whose 3H + 1 weights are w, cut into its layers inside p(y|x,w)'s network. The paper's
scale-mixture prior is replaced by one Gaussian, for which the KL is in closed form. Data: y = sin(2x) + x/2 +
noise, x uniform on [-3, 3] outside the gap (-1, 1); the test points are drawn the same way. Reports the test RMSE
of the predictive mean and the test log-likelihood log 1/S sum_s p(y|x,w_s) over S = --draws draws of w, beside the
same network with q's mean weights only, and draws the predictive mean and band (+-2 standard deviations of f_w(x)
over the draws, wider in the gap) to <out>/predictive.png.

    python examples/bayes_by_backprop.py                       # 400 points, H = 32
    python examples/bayes_by_backprop.py --samples 4 --hidden 64
"""
import argparse
import math

import torch
from torch import nn

from common import data, results, training
from pgm.distributions import Learned, Normal
from pgm.losses import KL, E, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model

GAP = 1.0  # no training point in (-GAP, GAP)


def truth(x):
    return torch.sin(2 * x) + x / 2


def points(n, noise, generator):
    """n points (x, y), each (n, 1): x uniform on [-3, -GAP] and [GAP, 3], y = truth(x) + noise."""
    side = 2.0 * torch.randint(0, 2, (n, 1), generator=generator) - 1
    x = side * (GAP + (3 - GAP) * torch.rand(n, 1, generator=generator))
    return x, truth(x) + noise * torch.randn(n, 1, generator=generator)


class Network(nn.Module):
    """f_w(x) of a 1-H-1 tanh MLP whose weights are w, and the known noise scale: p(y|x,w)'s parameters.

    forward(x (..., 1), w (..., 3H + 1)) -> {"loc": (..., 1), "scale": (..., 1)}, the leading dims broadcast;
    w is (W1 (H), b1 (H), W2 (H), b2 (1)), f_w(x) = W2 . tanh(W1 x + b1) + b2.
    """

    def __init__(self, hidden, noise):
        super().__init__()
        self.hidden, self.noise = hidden, noise

    def forward(self, x, w):
        w1, b1, w2, b2 = w.split([self.hidden] * 3 + [1], -1)
        f = (torch.tanh(x * w1 + b1) * w2).sum(-1, keepdim=True) + b2  # an input of one feature: W1 x is x * W1
        return {"loc": f, "scale": torch.full_like(f, self.noise)}


def bayes_by_backprop(hidden, points, noise, prior_scale, samples=1):
    """The model and its objective: (J, q(w), p(w), p(y|x,w)), J estimated with ``samples`` draws of w."""
    size = 3 * hidden + 1
    start = torch.cat([torch.randn(hidden), torch.empty(hidden).uniform_(-3, 3), torch.randn(hidden) / hidden ** 0.5,
                       torch.zeros(1)])  # hidden units with their steep parts spread over the data's range
    q_w = Normal("q(w)", loc=Learned(start), scale=Learned(torch.full((size,), 1e-3)))
    p_w = Normal("p(w)", loc=torch.zeros(size), scale=torch.full((size,), prior_scale))
    p_y = Normal("p(y|x,w)", net=Network(hidden, noise))
    objective = E(q_w, LogProb(p_y).sum(size=points), sample_shape=samples) - KL(q_w, p_w)
    return objective, q_w, p_w, p_y


def predictive(network, w, x, y, noise):
    """The test scores of the predictive of draws w (S, 3H + 1) on points x, y (n, 1): the RMSE of the predictive
    mean and the mean over the points of log 1/S sum_s N(y; f_{w_s}(x), noise^2)."""
    f = network(x, w[:, None])["loc"]  # (S, n, 1)
    log_p = torch.distributions.Normal(f, noise).log_prob(y).logsumexp(0) - math.log(len(w))
    return {"test RMSE": (f.mean(0) - y).pow(2).mean().sqrt().item(), "test log-likelihood": log_p.mean().item()}


def predictive_figure(path, network, w, x, y, title):
    """The training points, the true function, and the predictive mean +-2 standard deviations of f_w(x)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    grid = torch.linspace(-4, 4, 400)[:, None]
    f = network(grid, w[:, None])["loc"][..., 0]  # (S, 400)
    mean, band = f.mean(0), 2 * f.std(0)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.axvspan(-GAP, GAP, color="0.93", label="no training data")
    axis.fill_between(grid[:, 0], mean - band, mean + band, color="C0", alpha=0.3, label="+-2 sd of f_w(x)")
    axis.plot(grid[:, 0], mean, "C0", label="predictive mean")
    axis.plot(grid[:, 0], truth(grid[:, 0]), "k--", linewidth=1, label="sin(2x) + x/2")
    axis.scatter(x[:, 0], y[:, 0], s=4, c="k", alpha=0.5, label="training points")
    axis.set(xlabel="x", ylabel="y", ylim=(-4, 4), title=title)
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=1000, batch_size=100, lr=0.01, hidden=32)
    group = parser.add_argument_group("model")
    group.add_argument("--points", type=training.positive_int, default=400, help="N, training points (default: 400)")
    group.add_argument("--noise", type=training.positive_float, default=0.1,
                       help="sigma, the known noise scale (default: 0.1)")
    group.add_argument("--prior-scale", type=training.positive_float, default=1.0,
                       help="the prior's scale (default: 1)")
    group.add_argument("--samples", type=training.positive_int, default=1, help="K, draws of w per step (default: 1)")
    group.add_argument("--draws", type=training.positive_int, default=100,
                       help="S, draws of w for the test scores and the band (default: 100)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    generator = torch.Generator().manual_seed(args.seed)
    (x, y), (x_test, y_test) = points(args.points, args.noise, generator), points(args.points, args.noise, generator)
    description = f"y = sin(2x) + x/2 + N(0, {args.noise:g}^2), x outside (-{GAP:g}, {GAP:g}) ({args.points} points)"
    print(f"Data: {description}")
    empty = x[:, :0]  # no labels
    paired = training.to_device(data.PairedData((x, y, empty), (x, y), (x_test, y_test, empty), 0, 1, 1, None,
                                                False, description), device)

    objective, q_w, p_w, p_y = bayes_by_backprop(args.hidden, args.points, args.noise, args.prior_scale, args.samples)
    print(f"Objective (maximized):\n{objective.latex()}")
    draw_graphical_model([p_y * p_w, q_w], out / "graphical_model.png", title="Bayes by backprop")
    network = p_y.net

    def draws():  # the same S draws' noise at every evaluation, and the training's random state left as it was
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(args.seed)
            return q_w.sample(sample_shape=args.draws)["w"]

    def scores():
        return predictive(network, draws(), *paired.test[:2], args.noise)

    model = Model(-objective, distributions=[d.to(device) for d in (q_w, p_y, p_w)], **training.model_options(args))
    history = training.train(model, paired, args, out, prepare=lambda _, unlabelled: {  # y travels as w
        "x": unlabelled["x"], "y": unlabelled["w"]}, monitor=lambda: {"test log-likelihood": scores()[
            "test log-likelihood"]})

    with torch.no_grad():
        mean = q_w.get_params()["loc"]
        table = {f"Bayes by backprop ({args.draws} draws of w)": scores(),
                 "q's mean weights only": predictive(network, mean[None], *paired.test[:2], args.noise)}
        predictive_figure(out / "predictive.png", network, draws().cpu(),
                          x, y, f"Bayes by backprop, 1-{args.hidden}-1 tanh MLP: {args.draws} draws of w")
    return results.write(out, "Bayes by backprop: test scores per point", table, args, description,
                         objective.latex(), history, flat=False)


if __name__ == "__main__":
    training.run(main)
