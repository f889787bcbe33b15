"""Discrete VAE: a VAE with D Bernoulli latent bits, trained with five gradient estimators of the same expectation.

    p(z) = Bernoulli(1/2)^D,  p(x|z) Bernoulli,  q(z|x) Bernoulli;
    -L(x) = KL(q(z|x) || p(z)) + E_q(z|x)[-log p(x|z)]        (minimized; the KL is analytic)

E_q is estimated by the score function (REINFORCE, Williams 1992) without a baseline, with a moving-average one
and with a learned b(x) (NVIL, Mnih & Gregor 2014), by Gumbel-softmax (q a binary Concrete at --temperature; Jang,
Gu & Poole 2017; Maddison, Mnih & Teh 2017) and exactly over its 2^D values. Every run starts from the same weights
and is scored with the same exact (enumerated) test ELBO; its gradient variance is that of --repeats estimates of
the loss's gradient w.r.t. the encoder on one batch (summed over coordinates), at the initial and at the trained
weights, beside the exact gradient's squared norm. Networks (no batch norm, which would couple the examples'
samples): x-D-ReLU-D-ReLU-Dz for q(z|x), z-D-ReLU-D-ReLU-Dx for p(x|z), x-D-ReLU-1 for b(x), starting at Dx log 2.

    python examples/discrete_vae.py                       # scikit-learn digits, whole 8x8 images, 8 bits
"""
import argparse
import math

import torch
from torch import nn

from common import data, results, training
from common.networks import Logits
from pgm.distributions import Bernoulli, RelaxedBernoulli
from pgm.losses import E, KL, LogProb
from pgm.models import Model

MAX_BITS = 16  # the enumeration (exact ELBO, test score) of 2^D values: pgm refuses more than 2^16
ESTIMATORS = ("score function", "moving average", "learned baseline", "Gumbel-softmax", "enumeration")


def relu_mlp(*sizes):
    """sizes[0]-D-ReLU-...-D-ReLU."""
    body = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
    body.out_features = sizes[-1]
    return body


def build(name, dx, args):
    """The training loss (with ``name``'s estimator) and the exact loss of a fresh, seeded discrete VAE."""
    torch.manual_seed(args.seed)
    h, dz = args.hidden, args.latent
    q = Bernoulli("q(z|x)", net=Logits(relu_mlp(dx, h, h), dz))
    p = Bernoulli("p(x|z)", net=Logits(relu_mlp(dz, h, h), dx))
    prior = Bernoulli("p(z)", probs=0.5, features_shape=[dz])
    q_train, options = q, {"estimator": "score_function"}
    if name == "moving average":
        options["baseline"] = "moving_average"
    elif name == "learned baseline":
        options["baseline"] = nn.Sequential(relu_mlp(dx, h), nn.Linear(h, 1))
        nn.init.constant_(options["baseline"][-1].bias, dx * math.log(2))
    elif name == "Gumbel-softmax":
        q_train, options = RelaxedBernoulli("q(z|x)", net=q.net, temperature=args.temperature), {}
    elif name == "enumeration":
        options = {"estimator": "enumerate"}
    loss = (KL(q, prior) + E(q_train, -LogProb(p), **options)).mean()
    exact = (KL(q, prior) + E(q, -LogProb(p), estimator="enumerate")).mean()
    return loss, exact, [q, p, prior] + ([q_train] if q_train is not q else [])


def gradient_variance(loss, exact, model, parameters, x, repeats):
    """The variance of ``repeats`` gradients of ``loss`` on ``x`` w.r.t. ``parameters`` (summed over coordinates)
    and the squared norm of ``exact``'s; a moving average is updated with ``x`` first (it is 0 before), then held."""
    saved = {k: v.clone() for k, v in model.distributions.state_dict().items()}
    loss.eval({"x": x})
    warm = {k: v.clone() for k, v in model.distributions.state_dict().items()}

    def gradient(loss):
        model.distributions.load_state_dict(warm)
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss.eval({"x": x}), parameters)])

    variance = torch.stack([gradient(loss) for _ in range(repeats)]).var(0).sum().item()
    norm = gradient(exact).pow(2).sum().item()
    model.distributions.load_state_dict(saved)
    return {"Var": variance, "‖g‖²": norm}


def variance_figure(path, table, floor=1e-8):
    """The gradient variances as bars on a log scale (0 at ``floor``), the exact gradients' squared norms as ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    figure, axis = plt.subplots(figsize=(8, 3.8))
    for i, when in enumerate(("initial", "trained")):
        where = [j + 0.4 * i - 0.2 for j in range(len(names))]
        axis.bar(where, [max(table[n][f"Var ({when})"], floor) for n in names], 0.4, label=f"{when} parameters")
        axis.scatter(where, [table[n][f"‖g‖² ({when})"] for n in names], marker="_", s=300, c="k",
                     label="‖exact gradient‖²" if i else None)
    axis.set_xticks(range(len(names)), [f"{n}\nELBO {table[n]['test ELBO']:.2f}" for n in names], fontsize=8)
    axis.set(yscale="log", ylim=(floor / 2, None), ylabel="gradient variance (sum over weights)",
             xlabel="estimator of E_q[log p(x|z)] (exact test ELBO, nats)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100, batch_size=100, hidden=64)
    data.add_image_arguments(parser)
    parser.add_argument("--latent", type=training.int_range(1, MAX_BITS), default=8,
                        help=f"number of latent bits D, 1 to {MAX_BITS} (the exact ELBO enumerates the 2^D values; "
                             f"default: 8)")
    parser.add_argument("--temperature", type=training.positive_float, default=0.5,
                        help="Gumbel-softmax temperature (default: 0.5)")
    parser.add_argument("--repeats", type=training.int_range(2), default=50,
                        help="gradient estimates per variance, at least 2 (default: 50)")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    images = training.load_images(args, device)
    print(f"Data: {images.description}; labels unused")
    test, batch = {"x": images.test[0]}, images.unlabelled[0][:args.batch_size]

    table, histories = {}, {}
    for name in ESTIMATORS:
        loss, exact, distributions = build(name, images.x_dim, args)
        print(f"\n{name}: loss (minimized)\n{loss.latex()}")
        model = Model(loss, distributions=[d.to(device) for d in distributions], test_loss=exact,
                      **training.model_options(args))
        probe = (loss, exact, model, list(distributions[0].net.parameters()), batch, args.repeats)
        initial = gradient_variance(*probe)
        tag = name.replace(" ", "_")
        histories[name] = training.train(model, images, args, checkpoints=out / "checkpoints" / tag,
                                         prepare=lambda _, unlabelled: {"x": unlabelled["x"]},
                                         monitor=lambda: {"test ELBO": -model.test(test)})
        training.plot_learning_curves(histories[name], out / f"learning_curves_{tag}.png")
        model.save(out / f"model_{tag}.pt")
        table[name] = {"test ELBO": -model.test(test), **{f"{k} (initial)": v for k, v in initial.items()},
                       **{f"{k} (trained)": v for k, v in gradient_variance(*probe).items()},
                       "seconds": sum(histories[name]["seconds"])}
    variance_figure(out / "gradient_variance.png", table)
    return results.write(out, f"Discrete VAE ({args.latent} bits): exact test ELBO, encoder-gradient variance "
                         f"({args.repeats} estimates) and squared norm of the exact gradient", table, args,
                         images.description, loss.latex(), histories, flat=False, objective_heading="Loss (minimized)")


if __name__ == "__main__":
    training.run(main)
