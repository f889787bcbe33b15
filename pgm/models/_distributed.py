"""Data-parallel training on torch.distributed: the loss evaluated through DistributedDataParallel.

Each process (one per GPU, launched by ``torchrun``) evaluates the loss on its own shard of the batch;
DDP averages the gradients across processes during ``backward()``, so every process takes the same
optimizer step, the step a single process would take on the whole batch when the loss is a ``.mean()``
and the shards have equal sizes. (With ``.sum()`` the averaged gradient is 1/world_size of the sum's.)
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def initialized():
    return dist.is_available() and dist.is_initialized()


def world_size():
    return dist.get_world_size() if initialized() else 1


def rank():
    return dist.get_rank() if initialized() else 0


def resolve(flag):
    """Whether a model trains data-parallel: ``True``, ``False``, or ``None`` for "when torch.distributed is
    initialized with more than one process"."""
    if flag is None:
        return initialized() and dist.get_world_size() > 1
    if flag and not initialized():
        raise RuntimeError(
            "Model(distributed=True) needs torch.distributed to be initialized: launch the script with "
            "torchrun (e.g. torchrun --nproc_per_node=2 train.py) and call "
            "torch.distributed.init_process_group() before the first training step."
        )
    return bool(flag)


class LossModule(nn.Module):
    """The distributions as one module whose forward evaluates a loss: what DDP wraps."""

    def __init__(self, distributions, evaluate):
        super().__init__()
        self.distributions = distributions
        self._evaluate = evaluate

    def forward(self, loss, inputs, params):
        return self._evaluate(loss, inputs, params)


def wrap(distributions, evaluate, device):
    module = LossModule(distributions, evaluate)
    device_ids = [device] if device.type == "cuda" else None
    # static_graph: parameters the loss never uses (a classifier only the test loss needs) are fine, and
    # DDP learns once which ones they are instead of searching the graph every step
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, static_graph=True)


def broadcast(module):
    """Every parameter and buffer of ``module`` as the first process has them (what DDP does for the modules it
    wraps; done once for all of a model's, since each objective's DDP wraps only its own)."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def mean(value: torch.Tensor) -> float:
    """The mean of the scalar ``value`` over the processes."""
    tensor = value.detach().reshape(1).to(torch.float64)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def weighted_mean(total: float, count: float, device) -> float:
    tensor = torch.tensor([total, count], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor[0] / tensor[1]).item() if tensor[1] > 0 else float("nan")


def gather(obj):
    """``obj`` of every process, in rank order (a list of one when not distributed)."""
    if not initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if initialized():
        dist.barrier()
