"""GMM: a Gaussian mixture model (Bishop, "Pattern Recognition and Machine Learning", 2006, section 9.2) fitted
by maximum likelihood, the class y summed out exactly.

    p(y) = Cat(y; softmax(w)),  p(x|y) = N(x; mu_y, diag sigma_y^2),  p(x) = sum_y p(x|y) p(y);
    J = E_data[log p(x)]        (maximized with Adam; log p(x) is a log-sum-exp over the K classes)

Data: 2-D points from scikit-learn's make_blobs (K centres of random spreads), 3/4 train, 1/4 test. Reports the
test mean log p(x) beside scikit-learn's GaussianMixture (EM, diagonal covariances, same K, best of 5 k-means
starts) fitted on the same points, and draws both densities to <out>/density.png. Means start at K training points.

    python examples/gmm.py                                # 2,000 points, 4 centres, K = 4
    python examples/gmm.py --components 3 --points 500 --epochs 100
"""
import argparse
import itertools
import math

import numpy as np
import torch
from torch import nn

from common import data, results, training
from pgm.distributions import Categorical, Normal
from pgm.losses import LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


class Components(nn.Module):
    """The mean and scale of the component the one-hot y picks: {"loc": y mu, "scale": exp(y log sigma)}."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc, self.log_scale = nn.Parameter(loc.clone()), nn.Parameter(scale.log())  # (K, D) each

    def forward(self, y):
        return {"loc": y @ self.loc, "scale": (y @ self.log_scale).exp()}


def points(n, k, seed):
    """n points around k centres (make_blobs, spreads drawn in [0.5, 1.5]): train (3n/4, 2), test (n/4, 2)."""
    from sklearn.datasets import make_blobs
    from sklearn.model_selection import train_test_split
    x, _ = make_blobs(n, centers=k, cluster_std=np.random.default_rng(seed).uniform(0.5, 1.5, k), random_state=seed)
    return [torch.tensor(a, dtype=torch.float32) for a in train_test_split(x, random_state=seed)]


def train_size(n):
    """The training points of ``points(n, ...)``: train_test_split holds out a quarter, rounded up."""
    return n - math.ceil(n / 4)


def density_figure(path, x, log_densities, title):
    """The points x (N, 2) and contours of each {label: log-density of (M, 2) points}, solid then dashed, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    (x0, y0), (x1, y1) = x.min(0).values - 1, x.max(0).values + 1
    u, v = torch.meshgrid(torch.linspace(x0, x1, 200), torch.linspace(y0, y1, 200), indexing="xy")
    figure, axis = plt.subplots(figsize=(6, 5))
    axis.scatter(*x.T, s=3, c="grey", alpha=0.5)
    for (label, log_density), style, colour in zip(log_densities.items(), ("solid", "dashed"), ("C0", "C3")):
        grid = log_density(torch.stack([u.flatten(), v.flatten()], 1)).reshape(u.shape)
        axis.contour(u, v, grid, np.arange(-11, 0, 1.5), colors=colour, linestyles=style)  # the same levels
        title += f"\nlog p(x) of {label} ({style})"
    axis.set_title(title, fontsize=9)
    axis.set(xlabel="x[0]", ylabel="x[1]")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=200, batch_size=256, lr=0.05)
    parser.add_argument("--points", type=training.positive_int, default=2000, help="number of points, train and test (default: 2000)")
    parser.add_argument("--components", type=training.positive_int, default=4, help="K, mixture components and blobs (default: 4)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    if train_size(args.points) < max(2, args.components):  # the means start at K training points
        least = next(n for n in itertools.count(args.points) if train_size(n) >= max(2, args.components))
        parser.error(f"argument --points: {args.points} points leave {train_size(args.points)} for training (a "
                     f"quarter is held out), and --components {args.components} needs at least "
                     f"{max(2, args.components)}; use --points {least} or more")
    out, device = training.setup(args)
    k, (x, x_test) = args.components, points(args.points, args.components, args.seed)
    description = f"scikit-learn make_blobs ({k} centres; {len(x):,} train / {len(x_test):,} test, 2-D)"
    print(f"Data: {description}")
    w, w_test = x[:, :0], x_test[:, :0]  # no second modality, no labels
    paired = training.to_device(data.PairedData((x, w, w), (x, w), (x_test, w_test, w_test), k, 2, 0, None, False,
                                                description), device)

    start = x[torch.randperm(len(x))[:k]]  # the means start at K training points, the scales at the data's spread
    p_x = Normal("p(x|y)", net=Components(start, x.std(0).expand(k, 2)))
    p_y = Categorical("p(y)", logits=nn.Parameter(torch.zeros(k)))  # an nn.Parameter: learned
    p = (p_x * p_y).marginalize_var("y")
    objective = LogProb(p)
    print(f"Objective (maximized):\n{objective.latex()}\nwhere {p.latex()}")
    draw_graphical_model([p_x * p_y], out / "graphical_model.png", title="GMM")

    model = Model(-objective.mean(), distributions=[p.to(device)], **training.model_options(args))
    log_p = lambda batch: -model.test({"x": batch})  # noqa: E731  (the mean log p(x), in evaluation mode)
    history = training.train(model, paired, args, out, prepare=lambda _, unlabelled: {"x": unlabelled["x"]},
                             monitor=lambda: {"test log p(x)": log_p(paired.test[0])})

    from sklearn.mixture import GaussianMixture
    em = GaussianMixture(k, covariance_type="diag", n_init=5, random_state=args.seed).fit(x.numpy())
    scores = {"pgm GMM (Adam)": {"log p(x)": log_p(paired.test[0]), "train log p(x)": log_p(paired.labelled[0])},
              "scikit-learn GaussianMixture (EM)": {"log p(x)": em.score(x_test), "train log p(x)": em.score(x)}}
    with torch.no_grad():
        density_figure(out / "density.png", x, {"pgm": lambda v: p.log_prob({"x": v.to(device)}).cpu(),
                                                "scikit-learn": lambda v: torch.from_numpy(em.score_samples(v))},
                       description)
    return results.write(out, f"GMM (K={k}): test mean log p(x) per point", scores, args, description,
                         objective.latex(), history, flat=False, headings={"log p(x)": "test log p(x)"})


if __name__ == "__main__":
    training.run(main)
