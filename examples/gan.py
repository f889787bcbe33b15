"""GAN (Goodfellow et al. 2014): a generator p(x) = int p(x|z) p(z) dz trained against a discriminator D(x), the
two in turn, on a ring of 8 Gaussians (2-D) and on the 8x8 digits.

    p(z) = N(0, I),  p(x|z) = delta(x - G(z)),  D(x) = sigmoid(d(x))
    discriminator:  max_D E_p_data(x)[log D(x)] + E_p(x)[log(1 - D(x))]
    generator:      min -E_p(x)[log D(x)]   (the paper's non-saturating form; --minimax for max_D V itself)

Ring: 8 Gaussians of standard deviation --ring-std on a circle of radius 2 (2,000 points drawn once). Of 2,500
samples, a sample is of high quality within 3 standard deviations of a mode's centre, and a mode is covered when
at least 1% of the samples are of high quality near it; ring.png. Digits: scikit-learn's 8x8 digits scaled to
[0, 1]; a logistic regression fitted on them classifies 1,000 samples (the classes generated, each by at least 2%
of them, and its mean confidence, beside its confidence on the real digits); samples.png.

    python examples/gan.py                        # both data sets, about 2 minutes on one CPU thread
    python examples/gan.py --data ring --ring-std 0.02 --epochs 600
"""
import argparse
import math
import sys

import torch
from torch import nn

from common import results, training
from pgm.distributions import Deterministic, Normal
from pgm.losses import JensenShannon
from pgm.models import Model, Objective
from pgm.visualize import draw_graphical_model


def mlp(sizes, last=None):
    """Linear layers of these sizes with ReLUs between them, and ``last`` (a module) after the last."""
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1], *([last] if last is not None else []))


class Generator(nn.Module):
    """G(z), the location of the point mass p(x|z): {"loc": G(z)}."""

    def __init__(self, latent, hidden, dim, last=None):
        super().__init__()
        self.net = mlp([latent, hidden, hidden, dim], last)

    def forward(self, z):
        return {"loc": self.net(z)}


def ring(n, std, seed):
    """The 8 centres (8, 2) on a circle of radius 2, and n points (n, 2) around centres drawn uniformly."""
    angles = torch.arange(8) * 2 * math.pi / 8
    centres = 2 * torch.stack([angles.cos(), angles.sin()], 1)
    generator = torch.Generator().manual_seed(seed)
    return centres, centres[torch.randint(8, (n,), generator=generator)] + std * torch.randn(n, 2, generator=generator)


def generator_of(args, dim, last=None):
    """The generator p(x) = int p(x|z) p(z) dz, a marginal of the point mass at G(z) under a standard normal."""
    p_x = Deterministic("p(x|z)", net=Generator(args.latent, args.hidden, dim, last))
    return p_x, Normal("p(z)", loc=0.0, scale=1.0, features_shape=[args.latent])


def fit(x, divergence, args, out, name, critic_every=1):
    """Train the divergence's discriminator (``critic_every`` steps per generator step) and generator in turn on
    the rows of x, with checkpoints in <out>/checkpoints/<name>; returns the history {column: [value per epoch]}."""
    adam = {"lr": args.lr, "betas": tuple(args.betas)}
    model = Model([Objective(divergence.discriminator_loss, [divergence.discriminator], optimizer_params=adam,
                             name="discriminator"),
                   Objective(divergence, [divergence.p], optimizer_params=adam, name="generator", every=critic_every)],
                  compile=training.COMPILE[args.compile])
    shuffle = torch.Generator().manual_seed(args.seed)

    def batches():
        return ({"x": x[i]} for i in torch.randperm(len(x), generator=shuffle).split(args.batch_size))
    batches.generator = shuffle  # saved with the checkpoints: --resume continues the same shuffles
    checkpoints = out / "checkpoints" / name
    records = model.fit(batches, args.epochs, checkpoint_dir=checkpoints, keep=2,
                        checkpoint_every=args.checkpoint_every,
                        resume=training.resume_checkpoint(model, checkpoints) if args.resume else None,
                        progress=sys.stderr.isatty())
    return {key: [r[key] for r in records] for key in records[0]}


def draw(p, n, device):
    with torch.no_grad():
        return p.sample({"x": torch.zeros(n, 1, device=device)})["x"].cpu()


def ring_scores(samples, centres, std):
    distance, mode = torch.cdist(samples, centres).min(1)
    counts = torch.bincount(mode[distance < 3 * std], minlength=len(centres))
    return {"modes covered (of 8)": int((counts >= 0.01 * len(samples)).sum()),
            "high-quality samples (%)": 100 * counts.sum().item() / len(samples)}


def picture(path, title, draw_on, size=(4.5, 4.5)):
    """A PNG of one axis, drawn by ``draw_on(axis)``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axis = plt.subplots(figsize=size)
    draw_on(axis)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def scatter(axis, real, fake):
    axis.scatter(*real.T.numpy(), s=2, c="grey", alpha=0.4, label="data")
    axis.scatter(*fake.T.numpy(), s=2, c="C3", alpha=0.4, label="samples of p(x)")
    axis.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
    axis.legend(loc="upper right", fontsize=8, markerscale=4)


def grid(axis, images):
    padded = nn.functional.pad(images.reshape(100, 8, 8), (1, 1, 1, 1))  # a blank pixel around each digit
    axis.imshow(padded.reshape(10, 10, 10, 10).permute(0, 2, 1, 3).reshape(100, 100).numpy(), cmap="gray_r",
                vmin=0, vmax=1)
    axis.set_axis_off()


def digits(seed):
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1] (1797, 64), a logistic regression fitted on them."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images / 16, dtype=torch.float32)
    return x, LogisticRegression(max_iter=2000, random_state=seed).fit(x.numpy(), labels)


def digit_scores(samples, classifier, real):
    probs = classifier.predict_proba(samples.numpy())
    counts = torch.bincount(torch.as_tensor(probs.argmax(1)), minlength=10)
    return {"classes generated (of 10)": int((counts >= 0.02 * len(samples)).sum()),
            "classifier confidence": float(probs.max(1).mean()),
            "confidence on real digits": float(classifier.predict_proba(real.numpy()).max(1).mean())}


def add_arguments(parser, script, epochs):
    training.add_arguments(parser, script, epochs=epochs, batch_size=256, lr=1e-3, hidden=128)
    parser.add_argument("--data", choices=["ring", "digits", "both"], default="both", help="default: both")
    parser.add_argument("--ring-std", type=training.positive_float, default=0.05, help="the modes' std (0.05)")
    parser.add_argument("--latent", type=training.positive_int, default=16, help="dimensions of z (default: 16)")
    parser.add_argument("--betas", type=training.unit_interval, nargs=2, default=(0.5, 0.999),
                        help="Adam's betas, each in [0, 1) (default: 0.5 0.999)")
    parser.set_defaults(labels="all")
    return parser


def run(args, make, title, critic_every=1):
    """Train ``make(p, discriminator)`` on the data sets ``args.data`` names; write the results and pictures."""
    out, device = training.setup(args)
    table, histories, hidden = {}, {}, [args.hidden] * 2
    if args.data in ("ring", "both"):
        centres, x = ring(2000, args.ring_std, args.seed)
        p_x, prior = generator_of(args, 2)
        divergence = make((p_x * prior).marginalize_var("z").to(device), mlp([2, *hidden, 1]).to(device))
        histories["ring"] = fit(x.to(device), divergence, args, out, "ring", critic_every)
        samples = draw(divergence.p, 2500, device)
        table[f"ring of 8 (std {args.ring_std:g})"] = scores = ring_scores(samples, centres, args.ring_std)
        picture(out / "ring.png", f"{title}: {scores['modes covered (of 8)']} of 8 modes, "
                f"{scores['high-quality samples (%)']:.1f}% high quality", lambda axis: scatter(axis, x, samples))
    if args.data in ("digits", "both"):
        x, classifier = digits(args.seed)
        p_x, prior = generator_of(args, 64, nn.Sigmoid())
        divergence = make((p_x * prior).marginalize_var("z").to(device), mlp([64, *hidden, 1]).to(device))
        histories["digits"] = fit(x.to(device), divergence, args, out, "digits", critic_every)
        samples = draw(divergence.p, 1000, device)
        table["digits 8x8"] = scores = digit_scores(samples, classifier, x)
        picture(out / "samples.png", f"{title} samples: {scores['classes generated (of 10)']} classes",
                lambda axis: grid(axis, samples[:100]), size=(4, 4.3))
    objectives = {"generator (minimized)": divergence.latex(),
                  "discriminator (minimized)": divergence.discriminator_loss.latex()}
    print("\n".join(f"{k}:\n{v}" for k, v in objectives.items()))
    draw_graphical_model([p_x * prior], out / "graphical_model.png", title=title)
    return results.write(out, f"{title}: sample quality", table, args, "a ring of 8 Gaussians (2-D) and/or "
                         "scikit-learn's 8x8 digits", objectives, histories, flat=False,
                         objective_heading="Objectives")


def main(argv=None):
    parser = add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), __file__, 800)
    parser.add_argument("--minimax", action="store_true", help="the generator minimizes max_D V itself")
    args = parser.parse_args(argv)
    return run(args, lambda p, d: JensenShannon(p, discriminator=d, non_saturating=not args.minimax), "GAN")


if __name__ == "__main__":
    training.run(main)
