"""What ``fit`` shows of a run: a progress bar (or a line per epoch where no terminal redraws) with the latest
numbers of each kind, and the epochs' records as TensorBoard scalars."""
from __future__ import annotations

import os
import sys
import time


def _tensorboard(tensorboard):
    """The writer for ``fit(tensorboard=...)`` (None for none) and whether ``fit`` made it (and so closes it)."""
    if tensorboard is None or tensorboard is False:
        return None, False
    if hasattr(tensorboard, "add_scalar"):
        return tensorboard, False
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "fit(tensorboard=...) logs through torch.utils.tensorboard, which needs the tensorboard package: "
            "pip install tensorboard (or pass tensorboard=None)."
        ) from error
    return SummaryWriter(log_dir=os.fspath(tensorboard)), True


def _log(writer, epoch, record):
    """An epoch's record as scalars: the losses under ``loss/train`` and ``loss/valid``, the rest by their name."""
    if writer is None:
        return
    for key, value in record.items():
        if key.startswith(("train_loss", "valid_loss")):
            name = key.split(":")
            writer.add_scalar("/".join(["loss", name[0][:-5], *name[1:]]), value, epoch)
        elif key != "epoch":
            writer.add_scalar(key, value, epoch)


class _Progress:
    """What a person watching a run sees: one bar for the run (epochs) showing the loss and the latest numbers
    of each kind (validation loss, what the callback adds, e.g. a test accuracy); an inner bar over the batches
    only once an epoch has taken more than ``inner_after`` seconds. Where there is no terminal to redraw (a log
    file, ``TERM=dumb``) or no tqdm, one line per epoch instead."""

    inner_after = 2.0

    def __init__(self, enabled, epochs, done, batches):
        self.epochs, self.batches, self.latest = epochs, batches, {}
        self.outer = self.inner = None
        self.lines = False
        if not enabled:
            return
        tqdm = _tqdm() if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else None
        if tqdm is None:
            self.lines = True
            return
        self.tqdm = tqdm
        self.outer = tqdm(total=epochs, initial=done, desc=f"epoch {done}/{epochs}", unit="epoch",
                          dynamic_ncols=True, leave=True, file=sys.stderr)

    def start_epoch(self, epoch, done_batches):
        self.epoch, self.done, self.started = epoch, done_batches, time.perf_counter()
        if self.outer is not None:
            self.outer.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)

    def step(self, mean_loss):
        self.done += 1
        if self.outer is None:
            return
        if self.inner is None and time.perf_counter() - self.started > self.inner_after:
            self.inner = self.tqdm(total=self.batches, initial=self.done, desc=f"  epoch {self.epoch}", unit="batch",
                                   dynamic_ncols=True, leave=False, file=sys.stderr)
        elif self.inner is not None:
            self.inner.update()
        if self.inner is not None and mean_loss is not None:
            self.inner.set_postfix(loss=f"{mean_loss:.4g}", refresh=False)

    def end_epoch(self, record):
        self.close_inner()
        self.latest.update({k: v for k, v in record.items() if k != "epoch"})
        if self.outer is not None:
            self.outer.set_postfix_str(", ".join(f"{_short(k)} {v:.4g}" for k, v in self.latest.items()),
                                       refresh=False)
            self.outer.update()
        elif self.lines:
            print(_summary(record), flush=True)

    def close_inner(self):
        if self.inner is not None:
            self.inner.close()
            self.inner = None

    def close(self):
        self.close_inner()
        if self.outer is not None:
            self.outer.close()


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _short(key):
    if key.startswith(("train_loss:", "valid_loss:")):  # several objectives: "loss:generator", "valid:generator"
        return f"{_short(key.split(':')[0])}:{key.split(':', 1)[1]}"
    return {"train_loss": "loss", "valid_loss": "valid"}.get(key, key.split(":")[-1])


def _summary(record):
    parts = [f"epoch {record['epoch']}"]
    for key, value in record.items():
        if key.startswith(("train_loss", "valid_loss")):
            parts.append(f"{key.replace('_loss', ' loss').replace(':', ' ')} {value:.6g}")
    parts += [f"{k} {v:.6g}" for k, v in record.items() if k != "epoch" and not k.startswith(("train_loss", "valid_loss"))]
    return ", ".join(parts)
