"""Bouncing-ball videos for the sequence examples (dmm.py, vrnn.py): the data, its options, and the figure.

A script uses it as::

    sequences.add_arguments(parser)
    paired = sequences.load(parser.parse_args(), device)  # x (n, T, size*size), its mask (n, T) as w
    sequences.videos_figure(out / "sequences.png", x, reconstructed, generated, size, title)
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from . import data, training


def bouncing_balls(n, steps, size, seed, radius=1.2):
    """n videos of a ball bouncing in a size x size box, (n, steps, size*size) in {0, 1}, and their lengths (n,)
    drawn in [steps/2, steps] (frames after a video's length are zeros)."""
    g = torch.Generator().manual_seed(seed)
    position = radius + torch.rand(n, 2, generator=g) * (size - 1 - 2 * radius)
    angle = torch.rand(n, generator=g) * 2 * torch.pi
    velocity = torch.stack([angle.cos(), angle.sin()], 1) * (0.6 + 0.6 * torch.rand(n, 1, generator=g))
    low, high, grid = radius, size - 1 - radius, torch.arange(size, dtype=torch.float32)
    frames = []
    for _ in range(steps):
        rows = (grid - position[:, :1]) ** 2  # (n, size): squared distance of each row (and column) to the centre
        columns = (grid - position[:, 1:]) ** 2
        frames.append((rows[:, :, None] + columns[:, None, :] <= radius ** 2).float().flatten(1))
        position = position + velocity
        bounced = (position < low) | (position > high)
        velocity = torch.where(bounced, -velocity, velocity)
        position = position.clamp(low, high)
    lengths = torch.randint(steps // 2, steps + 1, (n,), generator=g)
    mask = torch.arange(steps) < lengths[:, None]
    return torch.stack(frames, 1) * mask[..., None], lengths


def train(model, paired, args, out):
    """Train ``model`` (its loss over inputs x and mask) on ``paired``, reporting the test ELBO per real frame each
    epoch; returns the history, the final scores (ELBO per frame and per video) and the test inputs."""
    test = {"x": paired.test[0], "mask": paired.test[1]}
    frames = paired.test[1].sum().item() / len(paired.test[1])  # mean real frames per test video
    per_frame = lambda: -model.test(test) / frames  # noqa: E731  (ELBO summed over the real frames, per frame)
    history = training.train(model, paired, args, out, prepare=lambda _, u: {"x": u["x"], "mask": u["w"]},
                             monitor=lambda: {"test ELBO per frame": per_frame()})
    return history, {"ELBO per frame": per_frame(), "ELBO per video": -model.test(test)}, test


def parser(description, script, rnn_help):
    """The command line of the sequence examples: training options, --latent and --rnn, and the data's."""
    import argparse
    out = argparse.ArgumentParser(description=description)
    training.add_arguments(out, script, epochs=100, batch_size=64, lr=3e-3, hidden=64)
    group = out.add_argument_group("model")
    group.add_argument("--latent", type=training.positive_int, default=8, help="size of z_t (default: 8)")
    group.add_argument("--rnn", type=training.positive_int, default=64, help=f"{rnn_help} (default: 64)")
    add_arguments(out)
    return out


def add_arguments(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--sequences", type=training.positive_int, default=1000, help="training videos (default: 1000)")
    group.add_argument("--steps", type=training.positive_int, default=16, help="frames per video at most (default: 16)")
    group.add_argument("--size", type=training.positive_int, default=12, help="frame width and height (default: 12)")
    parser.set_defaults(labels="all")


def load(args, device):
    """--sequences training and a quarter as many test videos (seeds --seed and --seed + 1) on ``device``, as a
    data.PairedData whose x is the videos (n, T, size*size) and w their masks (n, T): labelled and test are
    (x, mask, mask), unlabelled (x, mask). Its description names the data."""
    (x, lengths), (x_test, lengths_test) = (bouncing_balls(n, args.steps, args.size, args.seed + i)
                                            for i, n in enumerate((args.sequences, max(args.sequences // 4, 2))))
    mask, mask_test = (torch.arange(args.steps) < n[:, None] for n in (lengths, lengths_test))
    description = (f"bouncing balls ({len(x):,} train / {len(x_test):,} test videos of {args.steps // 2} to "
                   f"{args.steps} frames of {args.size}x{args.size})")
    return training.to_device(data.PairedData((x, mask, mask), (x, mask), (x_test, mask_test, mask_test), 1,
                                              args.size ** 2, 0, None, False, description), device)


@torch.no_grad()
def videos_figure(path, x, recon, generated, size, title):
    """Rows of frames: test videos, their reconstructions and generated videos, (rows, T, size*size) each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [("data", x), ("reconstructed", recon), ("generated", generated)]
    figure, axes = plt.subplots(len(rows) * len(x), 1,
                                figsize=(0.45 * x.shape[1] + 1.2, 0.5 * len(rows) * len(x) + 0.6))
    for axis, (label, videos, k) in zip(axes, [(lb, v, k) for k in range(len(x)) for lb, v in rows]):
        strip = torch.cat(list(F.pad(videos[k].reshape(-1, size, size), (0, 1)).cpu()), 1)
        axis.imshow(strip.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axis.set(xticks=[], yticks=[])
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    axes[0].set_title(title, fontsize=9)
    figure.tight_layout(h_pad=0.1)
    figure.savefig(path, dpi=80)
    plt.close(figure)
