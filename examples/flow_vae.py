"""Flow VAE: a VAE whose posterior is a planar normalizing flow (Rezende & Mohamed, ICML 2015, "Variational
Inference with Normalizing Flows").

    p(z) = N(0, I),  p(x|z) Bernoulli,  q_0(z_0|x) = N(mu(x), diag sigma(x)^2);
    z_k = z_{k-1} + u_k tanh(w_k^T z_{k-1} + b_k),  k = 1..K  (planar layers, u_k reparametrized so w_k^T u_k >= -1);
    log q_K(z_K|x) = log q_0(z_0|x) - sum_k log|1 + u_k^T psi_k(z_{k-1})|,  psi_k = (1 - tanh^2(.)) w_k;
    ELBO(x) = E_q_K(z|x)[log p(x|z) + log p(z) - log q_K(z|x)]        (maximized; one reparameterized draw)

The flow's parameters are amortized as in the paper: u_k, w_k, b_k are a linear head of layer k on a network of x
(x-DhBR) shared by the layers. One model per K in --layers (K = 0: a plain VAE, as examples/vae.py but its KL
estimated by the same one-draw Monte Carlo) from the same seed for the same epochs; each is scored by its test
ELBO (30 draws per image) and its importance-weighted test log p(x) (IWAE, K_iw = --iw-samples draws of q_K(z|x)
as the proposal).
Networks as examples/vae.py's: x-DhBR-DhBR, Gaussian heads for q_0(z|x); z-DhBR-DhBR, then Dx for p(x|z).

    python examples/flow_vae.py                           # scikit-learn digits, whole 8x8 images, K = 0, 2, 8
    python examples/flow_vae.py --layers 0,4,16 --epochs 200
"""
import argparse

import torch
from torch import nn

from common import data, multimodal, results, training
from common.networks import Gaussian, Logits, mlp
from pgm.distributions import Bernoulli, Flow, Normal
from pgm.distributions.flows import Planar
from pgm.losses import E, LogProb
from pgm.models import Model

ELBO_DRAWS = 30  # draws of z per test image in the test ELBO


class PlanarParameters(nn.Module):
    """u, w (N, Dz) and b (N,) of one planar layer from x: a linear head on a ``body`` of x shared by the layers."""

    def __init__(self, body, latent):
        super().__init__()
        self.body, self.head, self.latent = body, nn.Linear(body.out_features, 2 * latent + 1), latent

    def forward(self, x):
        u, w, b = self.head(self.body(x)).split([self.latent, self.latent, 1], -1)
        return {"u": u, "w": w, "b": b}


def build(layers, dx, hidden, latent):
    """q_K(z|x) with ``layers`` amortized planar layers, p(x|z), p(z), the ELBO (per example) with one draw and with
    ELBO_DRAWS draws (the test score)."""
    body = mlp(dx, [hidden])
    q = Flow(Normal("q_0(z|x)", net=Gaussian(mlp(dx, [hidden, hidden]), latent)),
             [Planar(latent, cond_var="x", net=PlanarParameters(body, latent)) for _ in range(layers)])
    p = Bernoulli("p(x|z)", net=Logits(mlp(latent, [hidden, hidden]), dx))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[latent])
    log_w = LogProb(p) + LogProb(prior) - LogProb(q)
    return q, p, prior, E(q, log_w), E(q, log_w, sample_shape=ELBO_DRAWS)


def layer_counts(text):
    """argparse type of --layers: comma-separated K >= 0, e.g. '0,2,8'."""
    try:
        counts = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, e.g. 0,2,8; got {text!r}") from None
    if any(k < 0 for k in counts) or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"must be distinct integers >= 0; got {text!r}")
    return counts


def figure(path, layers, table, histories, samples):
    """Test ELBO per epoch for each K, and the final test ELBO and log p(x) against K, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (curves, scores) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, history in histories.items():
        curves.plot(history["monitor_epoch"], history["test ELBO"], marker="o", markersize=3, label=name)
    curves.set(xlabel="epoch", ylabel="test ELBO (nats per image)", title="learning curves")
    for score, label in (("test ELBO", "test ELBO"), ("log p(x)", f"log p(x), IWAE with K_iw = {samples}")):
        scores.plot(layers, [row[score] for row in table.values()], marker="o", label=label)
    scores.set(xticks=layers, xlabel="planar layers K of q_K(z|x)", ylabel="nats per test image",
               title="after training")
    for axis in (curves, scores):
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=300, batch_size=128, hidden=256)
    data.add_image_arguments(parser)
    multimodal.add_arguments(parser, latent=8, iw_samples=500)
    parser.add_argument("--layers", type=layer_counts, default=[0, 2, 8],
                        help="the numbers K of planar layers, one model each (default: 0,2,8)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description}; labels unused")
    test = {"x": images.test[0]}

    table, histories = {}, {}
    for k in args.layers:
        torch.manual_seed(args.seed)
        q, p, prior, elbo, test_elbo = build(k, images.x_dim, args.hidden, args.latent)
        if not table:
            print(f"Posterior:\n{q.latex()}\nObjective (maximized):\nELBO = {elbo.latex()}")
        model = Model(-elbo.mean(), [q.to(device), p.to(device), prior.to(device)], test_loss=-test_elbo.mean(),
                      **training.model_options(args))
        name = f"K = {k}"
        print(f"\n{name} planar layers ({sum(t.numel() for t in q.parameters())} parameters in q_K(z|x))")
        histories[name] = training.train(model, images, args, checkpoints=out / "checkpoints" / f"K{k}",
                                         prepare=lambda _, unlabelled: {"x": unlabelled["x"]},
                                         monitor=lambda: {"test ELBO": -model.test(test)})
        model.save(out / f"model_K{k}.pt")
        table[name] = {"test ELBO": -model.test(test),
                       "log p(x)": multimodal.importance_log_likelihood(p * prior, q, test, args.iw_samples)
                                             .mean().item(), "seconds": sum(histories[name]["seconds"])}
    figure(out / "elbo_vs_layers.png", args.layers, table, histories, args.iw_samples)
    return results.write(out, f"Flow VAE: test ELBO and log p(x) (IWAE, K_iw={args.iw_samples}) by planar layers K",
                         table, args, images.description, {"ELBO": elbo.latex(), "posterior": q.latex()}, histories,
                         flat=False, headings={"log p(x)": f"log p(x) (IWAE, K_iw={args.iw_samples})"})


if __name__ == "__main__":
    training.run(main)
