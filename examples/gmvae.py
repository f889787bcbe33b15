"""GMVAE: a Gaussian-mixture VAE that clusters the digits without labels, the clusters summed over exactly.

After Dilokthanakul et al. ("Deep Unsupervised Clustering with Gaussian Mixture Variational Autoencoders", 2016), in
the simpler form without their second latent: the bound of M2 (Kingma et al., "Semi-Supervised Learning with Deep
Generative Models", NIPS 2014) with y never observed, y choosing the Gaussian prior of z.

    p(y) = Cat(1/K),  p(z|y) = N(mu_y, diag sigma_y^2) (learned per cluster),  p(x|z) Bernoulli;
    q(y|x) categorical,  q(z|x,y) Gaussian;
    ELBO(x) = E_q(y|x)[E_q(z|x,y)[log p(x|z)] - KL(q(z|x,y) || p(z|y))] - KL(q(y|x) || p(y))      (maximized)

E over y is the exact sum over the K clusters (E(..., enumerate=True)); E over z, one reparameterized draw. Reports
the test ELBO and the unsupervised clustering accuracy (clusters argmax q(y|x) matched one-to-one to the labels, the
Hungarian algorithm of scipy.optimize.linear_sum_assignment) of the trained networks and of the same networks at
initialization, beside k-means on the pixels. Networks: x-DkBR-DkBR for q(y|x); (x-DkBR, y)-DkBR for q(z|x,y);
z-DkBR-DkBR for p(x|z); Gaussian and logit heads as the other examples'.

    python examples/gmvae.py                              # scikit-learn digits, whole 8x8 images, K = 10
    python examples/gmvae.py --clusters 20 --latent 16 --epochs 200
"""
import argparse

import numpy as np
import torch
from torch import nn

from common import data, evaluation, results, training
from common.networks import Gaussian, Join, Logits, mlp
from pgm.distributions import Bernoulli, Categorical, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model
from pgm.visualize import draw_graphical_model


class ClusterPrior(nn.Module):
    """p(z|y): the mean and scale of the cluster the one-hot y picks, learned (K, Z) tables."""

    def __init__(self, k, dz):
        super().__init__()
        self.loc, self.log_scale = nn.Parameter(torch.randn(k, dz)), nn.Parameter(torch.zeros(k, dz))

    def forward(self, y):
        return {"loc": y @ self.loc, "scale": (y @ self.log_scale).exp()}


def build(dx, hidden, dz, k):
    """The ELBO per example and its distributions q(y|x), q(z|x,y), p(x|z), p(z|y), p(y)."""
    q_y = Categorical("q(y|x)", net=Logits(mlp(dx, [hidden, hidden]), k))
    q_z = Normal("q(z|x,y)", net=Gaussian(Join([dx, k], [[hidden], []], [hidden]), dz))
    p_x = Bernoulli("p(x|z)", net=Logits(mlp(dz, [hidden, hidden]), dx))
    p_z = Normal("p(z|y)", net=ClusterPrior(k, dz))
    p_y = Categorical("p(y)", probs=torch.full((k,), 1 / k))
    elbo = E(q_y, E(q_z, LogProb(p_x)) - KL(q_z, p_z), enumerate=True) - KL(q_y, p_y)
    return elbo, [q_y, q_z, p_x, p_z, p_y]


@torch.no_grad()
def evaluate(model, q_y, x, labels, k, seed=0):
    """Test ELBO (exact over y, one draw of z) and clustering accuracy (%) of argmax q(y|x), in evaluation mode
    (left so: Model.train switches back), with a seeded random stream of its own."""
    with evaluation.seeded(seed, x.device):
        elbo = -model.test({"x": x})
    clusters = q_y.get_params({"x": x})["logits"].argmax(-1).cpu().numpy()
    return {"ELBO": elbo, "clustering accuracy (%)": evaluation.matched_accuracy(clusters, labels, k),
            "clusters used": len(np.unique(clusters))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=150, batch_size=128, lr=3e-3, hidden=256)
    data.add_image_arguments(parser)
    group = parser.add_argument_group("model")
    group.add_argument("--latent", type=training.positive_int, default=8, help="size of z (default: 8)")
    group.add_argument("--clusters", type=training.int_range(2), default=10, help="K, clusters (default: 10)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description} (labels only to score the clusters)")
    x_test, labels = images.test[0], images.test[2].argmax(-1).cpu().numpy()

    elbo, distributions = build(images.x_dim, args.hidden, args.latent, args.clusters)
    q_y, q_z, p_x, p_z, p_y = distributions
    print(f"Objective (maximized):\n{elbo.latex()}")
    draw_graphical_model([p_x * p_z * p_y, q_y, q_z], out / "graphical_model.png", title="GMVAE")
    model = Model(-elbo.mean(), [d.to(device) for d in distributions], **training.model_options(args))
    score = lambda: evaluate(model, q_y, x_test, labels, args.clusters, args.seed)  # noqa: E731
    initial = score()
    history = training.train(model, images, args, out, prepare=lambda labelled, _: {"x": labelled["x"]},
                             monitor=lambda: {k: v for k, v in score().items() if k != "clusters used"})

    from sklearn.cluster import KMeans
    k_means = KMeans(args.clusters, n_init=10, random_state=args.seed).fit(images.labelled[0].cpu().numpy())
    pixels = evaluation.matched_accuracy(k_means.predict(x_test.cpu().numpy()), labels, args.clusters)
    scores = {"GMVAE at initialization": initial, "GMVAE trained": score(),
              "k-means on the pixels (scikit-learn)": {"clustering accuracy (%)": pixels}}
    return results.write(out, f"GMVAE (K={args.clusters}): test ELBO and clustering accuracy", scores, args,
                         images.description, elbo.latex(), history, flat=False,
                         headings={"ELBO": "test ELBO", "clustering accuracy (%)": "test clustering accuracy (%)"})


if __name__ == "__main__":
    training.run(main)
