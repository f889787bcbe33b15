"""The training loop of ``fit``: epochs of batches, each a step of the model (its losses read back now or
deferred), the epoch's record (validation, the callback's numbers), and checkpoints where they fall, also when a
Ctrl-C or a non-finite loss stops the run."""
from __future__ import annotations

import math

from ._checks import NonFiniteLossError
from ._data import _batch_size, _params_for
from ._progress import _log
from ._records import _Losses, _named, _validate
from ._rng import get_rng_state, set_rng_state


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
        _log(self.writer, epoch, record)
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
