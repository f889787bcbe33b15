"""``Model.fit``: epochs over data, with a progress bar, validation, checkpoints and exact resumption."""
from __future__ import annotations

import math
import os
import random
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from . import _distributed
from ._checks import NonFiniteLossError, flat_inputs

_CHECKPOINT = re.compile(r"^epoch-(\d+)(?:-batch-(\d+))?\.pt$")


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


# ------------------------------------------------------------------ random state
def _generators(data):
    """The torch generators a DataLoader shuffles with, if it was given its own."""
    out = []
    for owner in (data, getattr(data, "sampler", None), getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not o for o in out):
            out.append(g)
    return out


def get_rng_state(generators=()):
    """Every random state training uses: torch (CPU and CUDA), numpy, Python, and the data's generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "data": [g.get_state() for g in generators],
    }


def set_rng_state(state, generators=()):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for g, s in zip(generators, state["data"]):
        g.set_state(s)


# ------------------------------------------------------------------------ data
class _Data:
    """Batches for one epoch at a time from a re-iterable or from a function returning an iterable."""

    def __init__(self, data, name):
        self.name = name
        if callable(data) and not isinstance(data, Iterable):
            self.make = data
        elif isinstance(data, Iterable):
            if isinstance(data, Iterator):  # not iter(data) is data: a DataLoader would start its workers
                raise TypeError(
                    f"fit: {name} is an iterator (e.g. a generator), which is used up after one epoch; pass a "
                    f"list of batches, a DataLoader, or a function that returns a new iterator each epoch: "
                    f"fit(lambda: batches(...), ...)."
                )
            self.make = lambda: data
        else:
            raise TypeError(f"fit: {name} must be an iterable of input dicts (e.g. a DataLoader yielding dicts) "
                            f"or a function returning one; got {type(data).__name__}.")
        self.data = data
        self.generators = _generators(data)

    def sized(self):
        try:
            return len(self.data)
        except TypeError:
            return None

    def epoch(self, epoch):
        sampler = getattr(self.data, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler shuffles per epoch
            sampler.set_epoch(epoch)
        return iter(self.make())

    def check(self, batch):
        if not isinstance(batch, dict):
            raise TypeError(
                f"fit: each batch of {self.name} must be a dict of inputs such as {{'x': x}}; got "
                f"{type(batch).__name__}. For a DataLoader over a TensorDataset, pass a function that names the "
                f"tensors: fit(lambda: ({{'x': x}} for (x,) in loader), ...)."
            )
        return batch


def _batch_size(batch):
    """The first dimension of the first input (of the first named data set, for those)."""
    for _, _, value in flat_inputs(batch):
        if value.dim() > 0:
            return value.shape[0]
    return 1


def _params_for(params, epoch):
    if params is None:
        return {}
    value = params(epoch) if callable(params) else params
    if not isinstance(value, dict):
        raise TypeError(f"fit: params must be a dict of Parameter values, or a function of the epoch returning "
                        f"one (e.g. lambda epoch: {{'beta': min(1.0, epoch / 10)}}); got {type(value).__name__}.")
    return value


# -------------------------------------------------------------------- logging
def _tensorboard(tensorboard):
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


# -------------------------------------------------------------------- interrupts
class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`Model.fit`; ``checkpoint`` is the checkpoint to resume from (None without one)."""

    def __init__(self, checkpoint=None):
        super().__init__(f"training interrupted; checkpoint: {checkpoint}" if checkpoint else "training interrupted")
        self.checkpoint = checkpoint


class _Interrupt:
    """The first Ctrl-C asks to stop after the current step (and save); a second stops at once."""

    def __init__(self, enabled):
        self.enabled, self.requested, self._previous = enabled, False, None

    def __enter__(self):
        if (self.enabled and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfit: interrupted; stopping after this step (press Ctrl-C again to stop at once).",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


# ------------------------------------------------------------------ the loop
def _named(losses, prefix):
    """``{"train_loss": v}`` for one objective's loss, ``{"train_loss:<name>": v, ...}`` for several."""
    if isinstance(losses, dict):
        return {f"{prefix}:{name}": value for name, value in losses.items()}
    return {prefix: losses}


class _Losses:
    """The batch-size weighted sums of an epoch's training losses, per objective. While steps are deferred the
    sums are tensors on the device, added to without reading them; :meth:`read` turns them into floats."""

    def __init__(self, state=None):
        self.sums, self.counts = {}, {}
        if isinstance(state, (list, tuple)):  # a checkpoint of one objective written before several existed
            state = {"sums": {"train_loss": state[0]}, "counts": {"train_loss": state[1]}} if state[1] else None
        if state:
            self.sums, self.counts = dict(state["sums"]), dict(state["counts"])

    def add(self, losses, size):
        for key, value in _named(losses, "train_loss").items():
            self.sums[key] = self.sums.get(key, 0.0) + (value.detach() if isinstance(value, torch.Tensor) else value) * size
            self.counts[key] = self.counts.get(key, 0) + size

    def read(self):
        self.sums = {k: float(v) for k, v in self.sums.items()}

    def means(self):
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def shown(self):
        """The mean loss for the progress bar (the first objective's), or None while it is on the device."""
        for key, value in self.sums.items():
            return None if isinstance(value, torch.Tensor) else value / self.counts[key]
        return None

    def state(self):
        self.read()
        return {"sums": dict(self.sums), "counts": dict(self.counts)}


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
            from .model import atomic_save
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


def fit(model, train_data, epochs, valid_data=None, *, checkpoint_dir=None, checkpoint_every=1, resume=None,
        keep=None, progress=True, tensorboard=None, params=None, callback=None, sync_every=None):
    """Train ``model`` for ``epochs`` epochs over ``train_data``; what :meth:`Model.fit` documents."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"fit: epochs must be a whole number >= 0; got {epochs!r}.")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"fit: checkpoint_every must be a whole number >= 1; got {checkpoint_every!r}.")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
        raise ValueError(f"fit: keep must be a whole number >= 1 (or None to keep every checkpoint); got {keep!r}.")
    if sync_every is not None and (not isinstance(sync_every, int) or isinstance(sync_every, bool) or sync_every < 1):
        raise ValueError(f"fit: sync_every must be a whole number >= 1 (or None: every step on the CPU, every "
                         f"{DEFERRED} steps on an accelerator); got {sync_every!r}.")
    if callback is not None and not callable(callback):
        raise TypeError(f"fit: callback must be a function of the epoch's record; got {type(callback).__name__}.")
    if resume == "latest" and checkpoint_dir is None:
        raise ValueError("fit: resume='latest' looks in checkpoint_dir; pass checkpoint_dir=... too.")
    train = _Data(train_data, "train_data")
    valid = _Data(valid_data, "valid_data") if valid_data is not None else None
    run = _Run(model, None if checkpoint_dir is None else os.fspath(checkpoint_dir), train, keep)
    path = latest_checkpoint(run.folder) if resume == "latest" else resume
    if path is not None:
        run.restore(path)
    run.warn_of_later_checkpoints()
    writer, owned = _tensorboard(tensorboard) if run.main else (None, False)
    world = _distributed.world_size() if _distributed.resolve(model.distributed) else 1
    if sync_every is None:
        sync_every = 1 if model.device.type == "cpu" or world > 1 else DEFERRED
    bar = _Progress(progress and run.main, epochs, run.epoch, train.sized())
    try:
        with _Interrupt(enabled=world == 1) as interrupt:
            _Loop(run, model, train, valid, epochs, checkpoint_every, bar, writer, params, interrupt, world,
                  callback, sync_every).epochs_to_go()
    except KeyboardInterrupt:
        raise TrainingInterrupted(run.last_checkpoint if run.folder is not None else None) from None
    finally:
        bar.close()
        if owned:
            writer.close()
    return run.history


DEFERRED = 100  # steps between reads of the loss on an accelerator


class _Loop:
    """Epochs of batches: each step, the epoch's record (validation, callback), logging and checkpoints."""

    def __init__(self, run, model, train, valid, epochs, checkpoint_every, progress, writer, params, interrupt,
                 world, callback, sync_every):
        self.run, self.model, self.train, self.valid, self.epochs = run, model, train, valid, epochs
        self.checkpoint_every, self.progress, self.writer, self.params = checkpoint_every, progress, writer, params
        self.interrupt, self.world, self.callback, self.sync_every = interrupt, world, callback, sync_every
        self.between_steps = False  # where a KeyboardInterrupt leaves the model and optimizer consistent
        self.pending = None  # (first batch, model call) of the deferred steps not read yet

    def epochs_to_go(self):
        try:
            while self.run.epoch < self.epochs:
                self.epoch(self.run.epoch + 1)
        except KeyboardInterrupt:
            # one our handler did not defer (a second Ctrl-C, a handler of the user's): save if it came between
            # steps, where the model and optimizer are consistent; never from inside a step
            run = self.run
            if (self.between_steps and run.batch and run.folder is not None and self.world == 1
                    and not self.interrupt.requested):
                self.settle()
                run.save()
            raise

    def epoch(self, epoch):
        values = _params_for(self.params, epoch)
        self.progress.start_epoch(epoch, self.run.batch)
        try:
            for batch in self.batches(epoch):
                self.step(epoch, batch, values)
                if self.interrupt.requested:
                    self.between_steps = False
                    if self.run.folder is not None:
                        self.settle()
                        self.run.save()
                    raise KeyboardInterrupt
            self.between_steps = False
            self.settle()
            record = self.record(epoch, values)
        finally:
            self.between_steps = False
            self.progress.close_inner()
        self.end_epoch(epoch, record)

    def batches(self, epoch):
        """The epoch's batches, after those a resumed run already trained on."""
        run, train = self.run, self.train
        if run.batch:
            set_rng_state(run.epoch_rng, train.generators)
        elif run.folder is not None:
            run.epoch_rng = get_rng_state(train.generators)
        batches = train.epoch(epoch)
        for _ in range(run.batch):  # the batches this epoch trained on before it was interrupted
            if next(batches, None) is None:
                raise ValueError(f"fit: resuming needs the same train_data; it now has fewer than {run.batch} "
                                 f"batches in epoch {epoch}.")
        if run.resume_rng is not None:
            set_rng_state(run.resume_rng, train.generators)
            run.resume_rng = None
        self.between_steps = True
        for batch in batches:
            yield self.train.check(batch)
            self.between_steps = True

    def step(self, epoch, batch, values):
        run, model = self.run, self.model
        sync = self.sync_every == 1
        if not sync and self.pending is None:
            self.pending = (run.batch, model.calls)
        self.between_steps = False
        try:
            losses = model.train(batch, sync=sync, **values)
        except NonFiniteLossError as error:
            raise self.located(error, run.batch + 1) from None
        run.batch += 1
        run.losses.add(losses, _batch_size(batch))
        self.between_steps = True
        if not sync and run.batch % self.sync_every == 0:
            self.settle()
        self.progress.step(run.losses.shown())

    def settle(self):
        """Read the deferred steps: their losses, and a non-finite one among them (located by batch)."""
        if self.pending is None:
            return
        first_batch, first_call = self.pending
        try:
            self.model.synchronize()
        except NonFiniteLossError as error:
            raise self.located(error, first_batch + getattr(error, "call", first_call + 1) - first_call) from None
        self.pending = None
        self.run.losses.read()

    def located(self, error, batch):
        run = self.run
        kept = (f"the last good checkpoint, {run.last_checkpoint}, is kept" if run.last_checkpoint
                else "no checkpoint was written (pass checkpoint_dir= to keep one)" if run.folder is None
                else f"no checkpoint was written to {run.folder} yet")
        error.args = (f"{error.args[0]} At epoch {run.epoch + 1}, batch {batch}; {kept}.",)
        error.checkpoint = run.last_checkpoint
        return error

    def record(self, epoch, values):
        """The epoch's mean training losses and, with valid_data, validation losses."""
        run = self.run
        if not run.losses.counts:
            raise ValueError(f"fit: train_data gave no batches in epoch {epoch}; a function passed as data "
                             f"must return a new iterable each time it is called.")
        means = run.losses.means()
        # every objective in every record: one that took no step this epoch (every=k) has nan
        objectives = self.model.objectives
        keys = _named({o.name: None for o in objectives} if len(objectives) > 1 else None, "train_loss")
        record = {"epoch": epoch, **{k: means.get(k, math.nan) for k in keys}}
        if self.valid is not None:
            record.update(_named(_validate(self.model, self.valid, epoch, values, self.world), "valid_loss"))
        return record

    def end_epoch(self, epoch, record):
        run = self.run
        record = self.called_back(record)
        self.progress.end_epoch(record)
        run.history.append(record)
        run.epoch, run.batch, run.losses = epoch, 0, _Losses()
        self.log(epoch, record)
        if run.folder is not None and (epoch % self.checkpoint_every == 0 or epoch == self.epochs
                                       or self.interrupt.requested):
            run.save()
        if self.interrupt.requested:
            raise KeyboardInterrupt

    def called_back(self, record):
        if self.callback is None:
            return record
        extra = self.callback(dict(record))
        if extra is None:
            return record
        if not isinstance(extra, dict):
            raise TypeError(f"fit: callback must return a dict of numbers or None; got {type(extra).__name__}.")
        clash = sorted(k for k in extra if k == "epoch" or k.startswith(("train_loss", "valid_loss")))
        if clash:
            raise ValueError(f"fit: callback returned {clash}, which fit records itself; name them differently.")
        return {**record, **{k: float(v) for k, v in extra.items()}}

    def log(self, epoch, record):
        if self.writer is None:
            return
        for key, value in record.items():
            if key.startswith(("train_loss", "valid_loss")):
                name = key.split(":")
                self.writer.add_scalar("/".join(["loss", name[0][:-5], *name[1:]]), value, epoch)
            elif key != "epoch":
                self.writer.add_scalar(key, value, epoch)


def _validate(model, valid, epoch, values, world):
    """The batch-size weighted mean test loss (a dict of them with several objectives and no test_loss)."""
    # every key from the start: a process whose share of valid_data is empty still takes part in each reduction
    names = [None] if model.test_loss is not None else [o.name for o in model.objectives]
    totals, count = dict.fromkeys(names, 0.0), 0
    for batch in valid.epoch(epoch):
        valid.check(batch)
        size = _batch_size(batch)
        result = model.test(batch, **values)
        for key, value in (result.items() if isinstance(result, dict) else [(None, result)]):
            totals[key] = totals.get(key, 0.0) + value * size
        count += size
    if world > 1:
        means = {k: _distributed.weighted_mean(v, count, model.device) for k, v in totals.items()}
    elif count == 0:
        raise ValueError(f"fit: valid_data gave no batches in epoch {epoch}.")
    else:
        means = {k: v / count for k, v in totals.items()}
    return means[None] if None in means else means
