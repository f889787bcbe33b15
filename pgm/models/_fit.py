"""``Model.fit``: its arguments checked, then the run set up (data, checkpoint to resume from, TensorBoard,
progress bar, Ctrl-C handler) around the training loop of ``_loop``."""
from __future__ import annotations

import os

from . import _distributed
from ._checkpoints import _Run, latest_checkpoint
from ._data import _Data
from ._interrupt import TrainingInterrupted, _Interrupt
from ._loop import _Loop
from ._progress import _Progress, _tensorboard

DEFERRED = 100  # steps between reads of the loss on an accelerator


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
