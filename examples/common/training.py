"""Command-line options, seeding and the training loop every example script shares.

A script uses it as::

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__)
    data.add_arguments(parser)
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    paired = training.load_data(args, device)       # multimodal.load_data for the unsupervised models
    model = Model(loss, distributions, **training.model_options(args))
    history = training.train(model, paired, args, out, params={"alpha": 1.0}, monitor=...)

The loop is ``model.fit``, with checkpoints in ``<out>/checkpoints``.
"""
from __future__ import annotations

import dataclasses
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import data


COMPILE = {"off": False, "on": True, "inductor": "inductor", "cudagraph": "cudagraph"}
MONITOR = "monitor:"  # the prefix of the monitored values in the records of model.fit


def model_options(args):
    """The ``Model`` keyword arguments the command line sets: Adam with ``--lr``, ``compile=`` from ``--compile``."""
    return {"optimizer": torch.optim.Adam, "optimizer_params": {"lr": args.lr}, "compile": COMPILE[args.compile]}


def add_arguments(parser, script, epochs=500, batch_size=512, lr=1e-3, hidden=512):
    """Add --epochs --batch-size --lr --hidden --device --seed --out --eval-every --checkpoint-every --resume
    --compile (defaults: the papers' settings).

    ``script`` (the caller's ``__file__``) names the default results folder ``results/<script name>``.
    """
    name = Path(script).stem
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=epochs, help=f"passes over the unlabelled set (default: {epochs})")
    group.add_argument("--batch-size", type=int, default=batch_size,
                       help=f"unlabelled (and at most labelled) examples per step (default: {batch_size})")
    group.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default: {lr:g})")
    group.add_argument("--hidden", type=int, default=hidden,
                       help=f"width of every hidden DkBR layer (default: {hidden}, the papers')")
    group.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                       help="torch device (default: cuda when available, else cpu)")
    group.add_argument("--seed", type=int, default=0, help="seed of the data split, initialization and sampling")
    group.add_argument("--out", type=Path, default=Path("results") / name,
                       help=f"results folder (default: results/{name})")
    group.add_argument("--eval-every", type=int, default=10,
                       help="test scores (accuracies, or the test objective) for the learning curves every "
                            "this many epochs and after the last; 0: only after the last (default: 10)")
    group.add_argument("--checkpoint-every", type=int, default=10,
                       help="write <out>/checkpoints/epoch-NNNN.pt every this many epochs and at the end, keeping "
                            "the latest two; Ctrl-C writes one too (default: 10)")
    group.add_argument("--resume", action="store_true",
                       help="continue exactly from the latest checkpoint in <out>/checkpoints")
    group.add_argument("--compile", choices=sorted(COMPILE), default="off",
                       help="compile the training step: 'on' is a CUDA graph on CUDA and inductor elsewhere "
                            "(see pgm.models.Model); default: off")
    return parser


def setup(args):
    """Seed python, numpy and torch with ``args.seed``, create ``args.out``; return (out folder, device)."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out, torch.device(args.device)


def load_data(args, device):
    """The paired data of ``args`` (see common.data) on ``device``; single-label only (the classifiers are
    categorical)."""
    paired = data.from_args(args)
    if paired.multilabel:
        raise ValueError("the semi-supervised models classify into one of K classes; the features given are "
                         "multi-label. Use single-label y (N,) integer classes.")
    return to_device(paired, device)


def to_device(paired, device):
    """``paired`` (a data.PairedData) with every tensor moved to ``device``."""
    move = lambda tensors: tuple(t.to(device) for t in tensors)  # noqa: E731
    return dataclasses.replace(paired, labelled=move(paired.labelled), unlabelled=move(paired.unlabelled),
                               test=move(paired.test))


class Batches:
    """One epoch of ``prepare(labelled, unlabelled)`` input dicts per call (see data.semi_supervised_batches).

    ``generator`` is its shuffling generator: ``model.fit`` saves it with each checkpoint and restores it on resume.
    """

    def __init__(self, paired, batch_size, seed, prepare):
        self.paired, self.batch_size, self.prepare = paired, batch_size, prepare
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self):
        return -(-len(self.paired.unlabelled[0]) // self.batch_size)

    def __call__(self):
        return (self.prepare(labelled, unlabelled) for labelled, unlabelled
                in data.semi_supervised_batches(self.paired, self.batch_size, self.generator))


def train(model, paired, args, out=None, params=None, prepare=None, monitor=None, checkpoints=None):
    """Train ``model`` for ``args.epochs`` passes over ``paired.unlabelled``, the labelled set cycled alongside,
    with ``model.fit``.

    Each step is ``model.train({"labelled": {"x", "w", "y"}, "unlabelled": {"x", "w"}}, **params)``;
    ``prepare(labelled, unlabelled)`` may rebuild that inputs dict (e.g. M2 concatenates x and w).
    ``monitor()`` returns a dict of numbers (e.g. test accuracy) recorded every ``args.eval_every`` epochs
    and after the last. Checkpoints go to ``checkpoints`` (default ``out/checkpoints`` when ``out`` is given)
    every ``args.checkpoint_every`` epochs and at the end, the latest two kept; a Ctrl-C saves one too, and
    ``--resume`` continues from the latest exactly. With ``out``, saves ``out/model.pt`` and
    ``out/learning_curves.png`` at the end.

    Returns the history: {"epoch": [1, 2, ...], "loss": [mean training loss of each epoch],
    "seconds": [wall time of each epoch], "monitor_epoch": [...], <monitor key>: [...]}.
    """
    params = params or {}
    prepare = prepare or (lambda labelled, unlabelled: {"labelled": labelled, "unlabelled": unlabelled})
    if checkpoints is None and out is not None:
        checkpoints = Path(out) / "checkpoints"
    interactive = sys.stderr.isatty()
    clock = [time.perf_counter()]

    def callback(record):
        epoch, extra = record["epoch"], {"seconds": time.perf_counter() - clock[0]}
        if monitor is not None and ((args.eval_every and epoch % args.eval_every == 0) or epoch == args.epochs):
            extra.update({MONITOR + key: float(value) for key, value in monitor().items()})
            if not interactive:
                print(f"epoch {epoch}/{args.epochs} ({extra['seconds']:.2f} s): loss {record['train_loss']:.4g}, "
                      + ", ".join(f"{k.removeprefix(MONITOR)} {v:.4g}" for k, v in extra.items()
                                  if k.startswith(MONITOR)),
                      flush=True)
        clock[0] = time.perf_counter()
        return extra

    records = model.fit(Batches(paired, args.batch_size, args.seed, prepare), args.epochs, params=params,
                        checkpoint_dir=checkpoints, checkpoint_every=args.checkpoint_every, keep=2,
                        resume="latest" if args.resume and checkpoints is not None else None,
                        progress=interactive, callback=callback)
    history = {"epoch": [r["epoch"] for r in records], "loss": [r["train_loss"] for r in records],
               "seconds": [r["seconds"] for r in records], "monitor_epoch": []}
    for r in records:
        monitored = {k.removeprefix(MONITOR): v for k, v in r.items() if k.startswith(MONITOR)}
        if monitored:
            history["monitor_epoch"].append(r["epoch"])
        for key, value in monitored.items():
            history.setdefault(key, []).append(value)
    if out is not None:
        model.save(Path(out) / "model.pt")
        plot_learning_curves(history, Path(out) / "learning_curves.png")
    return history


def plot_learning_curves(history, path):
    """Training loss per epoch and, beside it, the monitored values (e.g. test accuracy) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monitored = [k for k in history if k not in ("epoch", "loss", "seconds", "monitor_epoch")]
    figure, axes = plt.subplots(1, 1 + bool(monitored), figsize=(5 + 4.5 * bool(monitored), 3.5), squeeze=False)
    axes = axes[0]
    axes[0].plot(history["epoch"], history["loss"])
    axes[0].set(xlabel="epoch", ylabel="training loss (-J)", title="loss")
    for key in monitored:
        axes[1].plot(history["monitor_epoch"], history[key], marker="o", markersize=3, label=key)
    if monitored:
        axes[1].set(xlabel="epoch", title="test")
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
