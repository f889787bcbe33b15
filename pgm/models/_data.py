"""What ``fit`` reads each epoch: the batches of ``train_data`` and ``valid_data`` (from a re-iterable or a
function returning an iterable), the size of a batch, and the epoch's Parameter values."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from ._checks import flat_inputs
from ._rng import _generators


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
