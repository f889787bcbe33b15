"""Checkpoints: their names (``epoch-0003.pt``, ``epoch-0003-batch-000017.pt``), the latest in a folder, writing
one so that a crash never leaves half a file, and a run's position (epochs and batches done, the history, the
random states) saved to one and restored from it."""
from __future__ import annotations

import os
import re
import uuid
import warnings

import torch

from . import _distributed
from ._records import _Losses
from ._rng import get_rng_state, set_rng_state

_CHECKPOINT = re.compile(r"^epoch-(\d+)(?:-batch-(\d+))?\.pt$")


def atomic_save(obj, path):
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # a new file (O_EXCL) with the mode any file gets (0666 less the umask; mkstemp's would be private, 0600)
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}.pt")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def checkpoint_name(epoch, batch=0):
    """``epoch-0003.pt`` after 3 epochs; ``epoch-0003-batch-000017.pt`` 17 batches into the 4th."""
    return f"epoch-{epoch:04d}.pt" if batch == 0 else f"epoch-{epoch:04d}-batch-{batch:06d}.pt"


def _checkpoints(folder):
    """The checkpoints in ``folder``, from the earliest in training to the furthest."""
    if folder is None or not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _CHECKPOINT.match(name)
        if match:
            found.append((_position(name), name))
    return [os.path.join(folder, name) for _, name in sorted(found)]


def _position(name):
    match = _CHECKPOINT.match(name)
    return int(match[1]), int(match[2] or 0)


def latest_checkpoint(folder):
    """The checkpoint that :meth:`Model.fit` wrote in ``folder`` furthest into training (``epoch-0003.pt``,
    ``epoch-0003-batch-000017.pt``), its path; None if there is none (or no such folder)."""
    found = _checkpoints(folder)
    return found[-1] if found else None


class _Run:
    """The position of a run (epochs and batches done, the epoch's partial losses) and its checkpoints."""

    def __init__(self, model, folder, train, keep=None):
        self.model, self.folder, self.train, self.keep = model, folder, train, keep
        self.history, self.epoch, self.batch = [], 0, 0
        self.losses = _Losses()
        self.epoch_rng, self.resume_rng = None, None
        self.last_checkpoint = None
        self.main = _distributed.rank() == 0

    def restore(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"fit: resume={os.fspath(path)!r}: no such checkpoint file.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        position = state.get("fit") if isinstance(state, dict) else None
        if position is None:
            raise ValueError(
                f"fit: {os.fspath(path)!r} is not a checkpoint written by fit (it holds no training position); "
                f"load its parameters with model.load(path) and call fit without resume=."
            )
        self.model.load_state_dict(state)
        self.history = list(position["history"])
        self.epoch, self.batch = position["epoch"], position["batch"]
        self.losses = _Losses(position["partial"])
        rank = _distributed.rank()
        if self.batch:
            self.epoch_rng = position["epoch_rng"][min(rank, len(position["epoch_rng"]) - 1)]
        rng = position["rng"][min(rank, len(position["rng"]) - 1)]
        if self.batch:
            self.resume_rng = rng  # put back once the epoch's first batches are skipped
        else:
            set_rng_state(rng, self.train.generators)
        self.last_checkpoint = os.fspath(path)

    def warn_of_later_checkpoints(self):
        """Checkpoints in the folder further than where this run starts are another run's: say so once."""
        start = checkpoint_name(self.epoch, self.batch)
        later = [os.path.basename(c) for c in _checkpoints(self.folder)
                 if _position(os.path.basename(c)) > _position(start)]
        if later and self.main:
            warnings.warn(f"fit: {self.folder} holds checkpoints further than where this run starts "
                          f"({', '.join(later[:3])}{', ...' if len(later) > 3 else ''}), from another run; this "
                          f"run overwrites those of the same name, and resume='latest' would pick the furthest. "
                          f"Use another checkpoint_dir to keep the runs apart.", stacklevel=4)

    def save(self):
        """Write a checkpoint of the current position (every process takes part; the first one writes)."""
        rng = _distributed.gather(get_rng_state(self.train.generators))
        epoch_rng = _distributed.gather(self.epoch_rng) if self.batch else None
        path = os.path.join(self.folder, checkpoint_name(self.epoch, self.batch))
        partial = self.losses.state()
        if self.main:
            state = self.model.state_dict()
            state["fit"] = {"epoch": self.epoch, "batch": self.batch, "history": self.history,
                            "partial": partial, "rng": rng, "epoch_rng": epoch_rng, "world_size": len(rng)}
            atomic_save(state, path)
            if self.keep is not None:  # only once the new one is safely written; never one further than it
                found = _checkpoints(self.folder)
                for old in found[:found.index(path) + 1][:-self.keep]:
                    os.remove(old)
        _distributed.barrier()
        self.last_checkpoint = path
        return path
