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

    if __name__ == "__main__":
        training.run(main)

The loop is ``model.fit``, with checkpoints in ``<out>/checkpoints``. ``run`` turns a user's mistake (a
:class:`UsageError`, or a bad option value) into one line ``error: ...`` and exit status 2, and Ctrl-C into the
checkpoint's path and the command that resumes it.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pgm.models import NonFiniteLossError, latest_checkpoint

from . import data
from .figures import plot_learning_curves  # noqa: F401  (the scripts call training.plot_learning_curves)
from .errors import UsageError


COMPILE = {"off": False, "on": True, "inductor": "inductor", "cudagraph": "cudagraph"}
MONITOR = "monitor:"  # the prefix of the monitored values in the records of model.fit


def _number(kind, minimum, strict, maximum=None, strict_maximum=False):
    """An argparse type: a finite ``kind`` (int or float) >= ``minimum`` (> with ``strict``) and, with a
    ``maximum``, <= it (< with ``strict_maximum``). nan and inf are refused, never coerced."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}; got {text!r}")
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number; got {text}")
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {_shown(minimum)}; got {text}")
        if maximum is not None and (value > maximum or (strict_maximum and value == maximum)):
            raise argparse.ArgumentTypeError(f"must be {'<' if strict_maximum else '<='} {_shown(maximum)}; got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _shown(bound):
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def int_range(minimum, maximum=None):
    """An argparse type: an integer >= ``minimum`` and, with a ``maximum``, <= it."""
    return _number(int, minimum, strict=False, maximum=maximum)


positive_int = _number(int, 0, strict=True)
non_negative_int = _number(int, 0, strict=False)
positive_float = _number(float, 0.0, strict=True)
non_negative_float = _number(float, 0.0, strict=False)
unit_interval = _number(float, 0.0, strict=False, maximum=1.0, strict_maximum=True)  # [0, 1), e.g. Adam's betas
SEED_MAX = 2 ** 32 - 1  # numpy's and scikit-learn's seeds are 32-bit
seed_int = _number(int, 0, strict=False, maximum=SEED_MAX)
MAX_THREADS = 1024  # --threads: torch takes a C int; far more threads than cores only thrash


def _one_line_error(parser, message):
    """argparse's error, as one line naming the option and pointing to --help; exit status 2."""
    parser.exit(2, f"error: {message} (see {parser.prog} --help)\n")


def run(main, argv=None):
    """Run a script's ``main(argv)``: a user's mistake prints ``error: ...`` and exits with status 2 (no
    traceback); a loss that became NaN or infinite prints ``error: training stopped: ...`` (the terms and the last
    checkpoint) and exits with status 1; Ctrl-C prints where the checkpoint is and the command that resumes the
    run, exit status 130."""
    try:
        return main(argv)
    except UsageError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None
    except NonFiniteLossError as error:  # its message names the terms, the epoch and batch, and the last checkpoint
        print(f"error: training stopped: {_one_line(error)} A smaller --lr may help.", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt as interrupt:
        checkpoint = getattr(interrupt, "checkpoint", None)
        if checkpoint is None:
            print("\ninterrupted before a checkpoint was written; nothing to resume.", file=sys.stderr)
        else:
            words = [a for a in (sys.argv[1:] if argv is None else list(argv)) if a != "--resume"]
            command = shlex.join(["python", sys.argv[0], *words, "--resume"])
            print(f"\ninterrupted: the run is saved in {checkpoint}\nresume it with: {command}", file=sys.stderr)
        raise SystemExit(130) from None


def _one_line(error):
    return " ".join(str(error).split())


def model_options(args):
    """The ``Model`` keyword arguments the command line sets: Adam with ``--lr``, ``compile=`` from ``--compile``."""
    return {"optimizer": torch.optim.Adam, "optimizer_params": {"lr": args.lr}, "compile": COMPILE[args.compile]}


def add_arguments(parser, script, epochs=500, batch_size=512, lr=1e-3, hidden=512):
    """Add --epochs --batch-size --lr --hidden --device --seed --out --eval-every --checkpoint-every --resume
    --compile (defaults: the papers' settings).

    ``script`` (the caller's ``__file__``) names the default results folder ``results/<script name>``.
    """
    name = Path(script).stem
    parser.error = _one_line_error.__get__(parser)
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, default=epochs, help=f"passes over the unlabelled set (default: {epochs})")
    group.add_argument("--batch-size", type=positive_int, default=batch_size,
                       help=f"unlabelled (and at most labelled) examples per step (default: {batch_size})")
    group.add_argument("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default: {lr:g})")
    group.add_argument("--hidden", type=positive_int, default=hidden,
                       help=f"width of every hidden DkBR layer (default: {hidden}, the papers')")
    group.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                       help="torch device (default: cuda when available, else cpu)")
    group.add_argument("--seed", type=seed_int, default=0,
                       help=f"seed of the data split, initialization and sampling, 0 to {SEED_MAX} (default: 0)")
    group.add_argument("--out", type=Path, default=Path("results") / name,
                       help=f"results folder (default: results/{name})")
    group.add_argument("--eval-every", type=non_negative_int, default=10,
                       help="test scores (accuracies, or the test objective) for the learning curves every "
                            "this many epochs and after the last; 0: only after the last (default: 10)")
    group.add_argument("--checkpoint-every", type=positive_int, default=10,
                       help="write <out>/checkpoints/epoch-NNNN.pt every this many epochs and at the end, keeping "
                            "the latest two; Ctrl-C writes one too (default: 10)")
    group.add_argument("--resume", action="store_true",
                       help="continue exactly from the latest checkpoint in <out>/checkpoints")
    group.add_argument("--overwrite", action="store_true",
                       help="start afresh in an --out folder that holds an earlier run (its checkpoints are deleted)")
    group.add_argument("--threads", type=int_range(0, MAX_THREADS), default=0,
                       help="CPU threads for torch; 0 (default): one thread for networks this small, which is as "
                            "fast on an idle machine and degrades far less on a busy one")
    group.add_argument("--compile", choices=sorted(COMPILE), default="off",
                       help="compile the training step: 'on' is a CUDA graph on CUDA and inductor elsewhere "
                            "(see pgm.models.Model); default: off")
    return parser


def setup(args):
    """Check the options a script cannot check by their type (the device, the results folder and --resume), set
    the threads, seed python, numpy and torch with ``args.seed``, create ``args.out`` (a file there, or a folder
    that cannot be created or written to, is a mistake too); return (out, device).
    Every mistake is a :class:`UsageError`, raised before any slow work."""
    device = _device(args.device)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: that is a file, not a folder; pass a folder for the results (it is created "
                         f"if missing).")
    checkpoints = out / "checkpoints"
    held = [n for n in ("results.json", "checkpoints", "model.pt") if (out / n).exists()]
    if getattr(args, "resume", False):
        if not any(checkpoints.rglob("epoch-*.pt")):  # scripts training several models keep subfolders
            raise UsageError(f"--resume: there is no checkpoint in {checkpoints} to resume from; run without "
                             f"--resume to start, or point --out at the folder of the run to continue.")
    elif held and not getattr(args, "overwrite", False):
        raise UsageError(f"--out {out} already holds a run ({', '.join(held)}); pass --resume to continue it, "
                         f"--overwrite to start afresh there, or another --out.")
    elif held:
        shutil.rmtree(checkpoints, ignore_errors=True)
    threads = getattr(args, "threads", 0) or auto_threads(args)
    if device.type == "cpu":
        torch.set_num_threads(threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    _writable_folder(out)
    return out, device


def _writable_folder(out):
    """Create ``out`` (and its parents) and check a file can be written there; a UsageError if not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        what = "create the folder" if not out.is_dir() else "write in the folder"
        where = f" ({error.filename})" if error.filename and Path(error.filename) != out else ""
        raise UsageError(f"--out {out}: cannot {what}: {error.strerror or error}{where}; pass a folder you can "
                         f"write to.") from None


def auto_threads(args):
    """One thread unless a step's largest product (batch x hidden x hidden multiply-adds) is big enough for
    threads to pay (about 2^30, e.g. batch 1024 with hidden 1024): for the papers' sizes a second thread gains
    little on an idle machine and, on a busy one, spins waiting for a core."""
    work = getattr(args, "batch_size", 1) * getattr(args, "hidden", 1) ** 2
    return 1 if work < 2 ** 30 else min(4, os.cpu_count() or 1)


def _device(name):
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name}: not a torch device; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: this machine has no CUDA device torch can use; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                             f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available here; use --device cpu.")
    return device


def load_data(args, device):
    """The paired data of ``args`` (see common.data) on ``device``; single-label only (the classifiers are
    categorical)."""
    paired = data.from_args(args)
    if paired.multilabel:
        raise UsageError("--dataset features: the semi-supervised models classify into one of K classes; the "
                         "features given are multi-label. Use single-label y (N,) integer classes.")
    return to_device(paired, device)


def load_images(args, device):
    """The labelled images of ``args`` (the options of data.add_image_arguments) on ``device``."""
    return to_device(data.labelled_images(args.dataset, args.data_root, args.seed, args.download), device)


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

    _check_batch_size(model, len(paired.unlabelled[0]), args.batch_size)
    records = model.fit(Batches(paired, args.batch_size, args.seed, prepare), args.epochs, params=params,
                        checkpoint_dir=checkpoints, checkpoint_every=args.checkpoint_every, keep=2,
                        resume=resume_checkpoint(model, checkpoints) if args.resume else None,
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


def _check_batch_size(model, examples, batch_size):
    """Batch normalization cannot train on a batch of one example: a UsageError, before training, when
    ``batch_size`` makes every batch or the last batch of an epoch over ``examples`` rows hold just one."""
    if not any("BatchNorm" in type(m).__name__ for m in model.distributions.modules()):
        return
    if examples == 1:
        raise UsageError("the training set holds a single example, and batch normalization cannot train on one; "
                         "use more data.")
    if batch_size == 1:
        raise UsageError("--batch-size 1: batch normalization cannot train on batches of one example; use "
                         "--batch-size 2 or more.")
    if examples % batch_size == 1:
        fits = lambda b: b >= 2 and examples % b != 1  # noqa: E731
        near = [b for b in range(batch_size - 1, 1, -1) if fits(b)][:1] + [
            b for b in range(batch_size + 1, examples + 1) if fits(b)][:1]
        raise UsageError(f"--batch-size {batch_size}: the last batch of each epoch would hold 1 of the {examples:,} "
                         f"training examples, and batch normalization cannot train on one; use another --batch-size "
                         f"(e.g. {' or '.join(map(str, near))}).")


def resume_checkpoint(model, checkpoints):
    """The latest checkpoint in ``checkpoints`` for ``model.fit(resume=...)``, once it is known to load into
    ``model`` (None when there is none: that model starts afresh). A file that is not a checkpoint, or one written
    for a model of other options (e.g. another --hidden), is a :class:`UsageError` naming it and the fix."""
    path = latest_checkpoint(checkpoints)
    if path is None:
        return None
    fix = "pass --overwrite to start afresh in that --out, or another --out"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unpickling errors, truncated zip archives, ... (torch's messages are long and misleading)
        raise UsageError(f"--resume: {path} cannot be read as a checkpoint (it is damaged, or not one torch "
                         f"wrote); delete it to resume from an earlier one, or {fix}.") from None
    if not (isinstance(state, dict) and "fit" in state and "distributions" in state):
        raise UsageError(f"--resume: {path} is not a checkpoint written by an example script's training; delete "
                         f"it to resume from an earlier one, or {fix}.")
    try:
        model.load_state_dict(state)  # fit loads it again; this only finds a mismatch before the run starts
    except Exception as error:  # size mismatches, missing or unexpected keys, other objectives
        raise UsageError(f"--resume: the checkpoint {path} does not match this model "
                         f"({_state_difference(state, model) or _short_reason(error)}); resume with the same model "
                         f"options (e.g. --hidden, --latent) as the run that wrote it, or {fix}.") from None
    return path


def _short_reason(error, limit=160):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _state_difference(state, model):
    """The first network tensor whose shape (or presence) differs between a checkpoint and ``model``, in words."""
    saved, here = state.get("distributions"), model.distributions.state_dict()
    if not isinstance(saved, dict):
        return None
    for key, value in here.items():
        if key not in saved:
            return f"it has no {key}"
        if hasattr(saved[key], "shape") and tuple(saved[key].shape) != tuple(value.shape):
            return f"{key} has shape {list(saved[key].shape)} there and {list(value.shape)} here"
    extra = [key for key in saved if key not in here]
    return f"it has {extra[0]}, which this model lacks" if extra else None
