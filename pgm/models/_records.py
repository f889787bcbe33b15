"""What an epoch records of its losses: the batch-size weighted means of the training losses (summed as the
steps go, per objective) and of the validation losses, named ``train_loss`` and ``valid_loss`` (with
``:<name>`` for each of several objectives)."""
from __future__ import annotations

import torch

from . import _distributed
from ._data import _batch_size


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
