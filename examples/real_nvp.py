"""RealNVP: density estimation with affine coupling layers (Dinh, Sohl-Dickstein & Bengio, ICLR 2017, "Density
estimation using Real NVP").

    p_0(h) = N(0, I),  h = f_L(...f_1(x)),  f_l an affine coupling with a 0/1 mask m and networks s, t:
    f_l(h) = m h + (1 - m)(h exp(s(m h)) + t(m h)),  log|det df_l/dh| = sum (1 - m) s(m h);
    log p_K(x) = log p_0(h_L) + sum_l log|det df_l/dh_{l-1}|,  J = E_data[log p_K(x)]       (maximized)

(a) moons: 2-D points of scikit-learn's make_moons (--moons-noise), 3/4 train, 1/4 test; --couplings couplings with
    alternating masks (MLP s, t). Reports the test log p(x) per point; draws the data, the learned density and
    samples to <out>/moons.png.
(b) digits: scikit-learn's 8x8 digits as pixel values x in {0..16} (L = 17 levels), dequantized and squashed as
    in the paper by a first layer (pgm's Logit, its log-det included): y = logit(a + (1 - 2a)(x + u)/L),
    u ~ U[0, 1)^64 drawn afresh each pass; then 3 checkerboard couplings (1x8x8), a squeeze to 4x4x4, 3 channel
    couplings and 4 checkerboard ones (small CNN s, t). Reports the test bits per dimension -log p(x + u)/(64 log 2)
    beside a diagonal Gaussian fitted by maximum likelihood to the training pixels dequantized alike (x + u, u drawn
    once with fixed seeds; plain torch), scored on the test pixels dequantized alike (a uniform over the 17 levels
    scores log2 17 = 4.09); draws data and samples to <out>/digits.png.

    python examples/real_nvp.py                           # both parts
    python examples/real_nvp.py --data moons --couplings 12 --epochs 300
"""
import argparse
import math

import torch

from common import data, multimodal, results, training
from pgm.distributions import Flow, Normal
from pgm.distributions.flows import AffineCoupling, Flatten, Logit, Squeeze, bits_per_dim
from pgm.losses import LogProb
from pgm.models import Model

LEVELS = 17  # the digits' pixel values 0..16


def moons(points, noise, seed):
    """make_moons points: train (3n/4, 2), test (n/4, 2)."""
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split
    x, _ = make_moons(points, noise=noise, random_state=seed)
    return [torch.tensor(a, dtype=torch.float32) for a in train_test_split(x, random_state=seed)]


def digit_pixels(seed):
    """common.data's digits split as pixel values 0..16: train (N, 1, 8, 8), test (T, 1, 8, 8), description."""
    (train, _), (test, _), description = data.load_digits(seed)
    return (train * 16).round().unsqueeze(1), (test * 16).round().unsqueeze(1), description


def dequantize(pixels, seed):
    """pixels + u, u ~ U[0, 1) from a generator seeded with ``seed``."""
    return pixels + torch.rand(pixels.shape, generator=torch.Generator().manual_seed(seed))


def gaussian_bits_per_dim(train, test):
    """Mean bits/dim on ``test`` of the diagonal Gaussian fitted by maximum likelihood to ``train`` (N, ...)."""
    mean, var = train.mean(0), train.var(0, unbiased=False)
    log_p = -0.5 * ((test - mean) ** 2 / var + var.log() + math.log(2 * math.pi))
    return -log_p.flatten(1).sum(1).mean().item() / (train[0].numel() * math.log(2))


def moons_flow(couplings, hidden):
    layers = [AffineCoupling(2, "alternating", parity=i % 2, hidden=hidden) for i in range(couplings)]
    return Flow(Normal("p_0(x)", loc=0.0, scale=1.0, features_shape=[2]), layers, direction="inverse")


def digits_flow(hidden, alpha=0.05):
    squeezed = (4, 4, 4)
    layers = [Logit(alpha, levels=LEVELS)]
    layers += [AffineCoupling((1, 8, 8), "checkerboard", parity=i % 2, hidden=hidden) for i in range(3)]
    layers += [Squeeze()] + [AffineCoupling(squeezed, "channel", parity=i % 2, hidden=hidden) for i in range(3)]
    layers += [AffineCoupling(squeezed, "checkerboard", parity=i % 2, hidden=hidden) for i in range(4)]
    return Flow(Normal("p_0(x)", loc=0.0, scale=1.0, features_shape=[64]), layers + [Flatten(squeezed)],
                direction="inverse")


def fit(name, p, x, x_test, description, args, out, device):
    """Maximum likelihood on x (batches of --batch-size), the test log p(x) monitored: (history, mean test log p(x),
    the objective's LaTeX)."""
    empty, empty_test = x.new_zeros(len(x), 0), x_test.new_zeros(len(x_test), 0)
    points = data.PairedData((x, empty, empty), (x, empty), (x_test, empty_test, empty_test), 0, x[0].numel(), 0,
                             None, False, description)
    objective = LogProb(p)
    print(f"\n{name}: {description}\nObjective (maximized):\n{objective.latex()}\nwhere {p.latex()}")
    model = Model(-objective.mean(), [p.to(device)], **training.model_options(args))
    test = {"x": x_test.to(device)}
    history = training.train(model, training.to_device(points, device), args, checkpoints=out / "checkpoints" / name,
                             prepare=lambda _, unlabelled: {"x": unlabelled["x"]},
                             monitor=lambda: {"test log p(x)": -model.test(test)})
    training.plot_learning_curves(history, out / f"learning_curves_{name}.png")
    model.save(out / f"model_{name}.pt")
    return history, -model.test(test), objective.latex()


def moons_figure(path, p, x_test, samples):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    u, v = torch.meshgrid(torch.linspace(-1.5, 2.5, 200), torch.linspace(-1, 1.5, 125), indexing="xy")
    with torch.no_grad():
        density = p.log_prob({"x": torch.stack([u.flatten(), v.flatten()], 1)}).exp().reshape(u.shape).numpy()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharex=True, sharey=True)
    axes[0].scatter(*x_test.numpy().T, s=3, c="grey")
    image = axes[1].pcolormesh(u.numpy(), v.numpy(), density, cmap="viridis", shading="auto")
    fig.colorbar(image, ax=axes[1], label="p_K(x)")
    axes[2].scatter(*samples.numpy().T, s=3, c="C0")
    for axis, title in zip(axes, ("test points", "learned density p_K(x)", f"{len(samples)} samples x ~ p_K(x)")):
        axis.set(xlabel="x[0]", ylabel="x[1]", title=title, xlim=(-1.5, 2.5), ylim=(-1, 1.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100, batch_size=128, hidden=64)
    parser.add_argument("--data", choices=("moons", "digits", "both"), default="both",
                        help="which part runs (default: both)")
    parser.add_argument("--points", type=training.int_range(2), default=4000,
                        help="moons: points, train and test, at least 2 (default: 4000)")
    parser.add_argument("--moons-noise", type=training.non_negative_float, default=0.05,
                        help="moons: standard deviation of the noise (default: 0.05)")
    parser.add_argument("--couplings", type=training.positive_int, default=8,
                        help="moons: coupling layers (default: 8)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    table, histories, objectives, descriptions = {}, {}, {}, []

    if args.data in ("moons", "both"):
        x, x_test = moons(args.points, args.moons_noise, args.seed)
        description = (f"scikit-learn make_moons (noise {args.moons_noise:g}; {len(x):,} train / {len(x_test):,} test, "
                       f"2-D)")
        p = moons_flow(args.couplings, args.hidden)
        histories["moons"], log_p, objectives["moons"] = fit("moons", p, x, x_test, description, args, out, device)
        table["moons: RealNVP"] = {"test log p(x)": log_p}
        p.cpu().eval()
        with torch.no_grad():
            moons_figure(out / "moons.png", p, x_test, p.sample({}, sample_shape=len(x_test))["x"])
        descriptions.append(description)

    if args.data in ("digits", "both"):
        pixels, pixels_test, source = digit_pixels(args.seed)
        description = f"{source}, pixel values 0..16 dequantized"
        p = digits_flow(args.hidden)
        histories["digits"], log_p, objectives["digits"] = fit("digits", p, pixels, pixels_test, description, args,
                                                               out, device)
        baseline = gaussian_bits_per_dim(dequantize(pixels, args.seed), dequantize(pixels_test, args.seed + 1))
        table["digits: RealNVP"] = {"test bits/dim": bits_per_dim(torch.tensor(log_p), (1, 8, 8)).item()}
        table["digits: diagonal Gaussian"] = {"test bits/dim": baseline}
        p.cpu().eval()
        with torch.no_grad():
            samples = p.sample({}, sample_shape=16)["x"].clamp(0, 16) / 16
        multimodal.image_grid_figure(out / "digits.png", torch.stack([pixels_test[:16] / 16, samples]).flatten(2),
                                     (8, 8), ["test data", "samples"], "RealNVP on digits")
        descriptions.append(description)
    return results.write(out, "RealNVP: test log-likelihood (moons: nats per point; digits: bits per dimension)",
                         table, args, "; ".join(descriptions), objectives, histories, flat=False)


if __name__ == "__main__":
    training.run(main)
