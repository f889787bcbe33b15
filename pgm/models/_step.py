"""One training step of one objective: the forward and backward pass, the non-finite check and the update.

Two ideas, by composition:

* :class:`StepPieces` holds what a step is made of, and its state: the forward and backward pass, the update, the
  guarded update (a no-op on the device after a non-finite loss or gradient), the reads of the loss, the record of
  the deferred steps. It knows the model only through an :class:`Environment`.
* A *runner* decides how the pieces run: :class:`EagerStep` here; ``InductorStep`` (``_compile.py``) compiles the
  same pieces and ``CUDAGraphStep`` (``_cudagraph.py``) captures them as one CUDA graph, so that every kind
  computes the same numbers. A runner whose compilation fails is replaced by an :class:`EagerStep` of the same
  pieces, which carry on from where they were.

A step is *synchronous* (``sync=True``: the loss is read on the host before the update, and a non-finite loss or
gradient raises before the parameters change) or *deferred* (``sync=False``: the loss stays on the device, a
non-finite loss or gradient makes the update a no-op there, as ``torch.amp.GradScaler`` does with its found-inf
flag, and :meth:`StepPieces.settle` reports it at the next read).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable

import torch
from torch import nn

from . import _checks, _distributed
from ._objective import fused

PRECISIONS = ("float32", "bf16")


def evaluate(loss, inputs, params):
    value = loss.eval(inputs, **params)
    if value.dim() != 0:
        raise ValueError(
            f"the loss is per example (shape {tuple(value.shape)}); reduce it over the batch with "
            f".mean() or .sum() before training, e.g. Model((...).mean(), ...)."
        )
    return value


def evaluate_test(loss, inputs, params, precision, device):
    """The test loss: without gradients, the forward pass in ``precision``."""
    with torch.no_grad(), autocast(precision, device):
        return evaluate(loss, inputs, params)


def check_precision(precision):
    if precision is None:
        return "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"Model: precision must be 'float32' or 'bf16' (autocast to bfloat16 for the forward "
                         f"pass, parameters and optimizer in float32); got {precision!r}.")
    return precision


def autocast(precision, device, cache_enabled=True):
    """The autocast context of a forward pass in ``precision`` on ``device`` (``cache_enabled=False`` inside a
    CUDA graph: a cache would hold casts of the parameters made while capturing)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


class _Watch:
    """A device-side record of the non-finite losses of deferred steps since the last read.

    ``bad_at`` is the (device) number of the first non-finite step, -1 while there is none; once one is
    seen, ``skip`` is 1 and every update until the read is a no-op, so the parameters stay those from before
    that step. The host keeps the inputs of the pending steps to diagnose the bad one.
    """

    limit = 100  # pending steps kept (their inputs alive) before a read is forced; fit reads as often

    def __init__(self, device, dtype):
        self.found = torch.zeros((), dtype=torch.float32, device=device)  # a non-finite gradient (GradScaler's flag)
        self.one = torch.ones((), dtype=torch.float32, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_at = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_value = torch.zeros((), dtype=dtype, device=device)
        self.skip = torch.zeros((), dtype=torch.float32, device=device)
        self.host_count = 0
        self.pending = []  # (step number, model call, inputs, params) of the steps since the last read

    def gradients(self, parameters):
        """Device ops only: ``found`` set to 1 where a gradient of ``parameters`` is not finite (GradScaler's check,
        one kernel per device and dtype), else 0."""
        self.found.zero_()
        groups = {}
        for p in parameters:
            if p.grad is not None:
                groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for grads in groups.values():
            torch._amp_foreach_non_finite_check_and_unscale_(grads, self.found, self.one)
        return self.found

    def record(self, value, parameters=()):
        """Device ops only: note whether ``value`` and the gradients of ``parameters`` are finite; returns the skip
        flag for the update."""
        value = value.detach()
        bad = ~torch.isfinite(value) | (self.gradients(parameters) > 0)
        first = bad & (self.bad_at < 0)
        self.bad_at.copy_(torch.where(first, self.count, self.bad_at))
        self.bad_value.copy_(torch.where(first, value.to(self.bad_value.dtype), self.bad_value))
        self.count.add_(1)
        self.skip.copy_((self.bad_at >= 0).to(self.skip.dtype))
        return self.skip

    def reset(self):
        self.bad_at.fill_(-1)
        self.skip.zero_()
        self.pending.clear()


@dataclasses.dataclass
class Environment:
    """What a step needs from its model, and nothing else.

    ``device``, ``dtype``: where the parameters are, and their floating dtype. ``precision``: ``"float32"`` or
    ``"bf16"``. ``world``: the number of data-parallel processes. ``modules``: the model's networks (for the
    buffers a failed compile puts back, and to name parameters in reports). ``users``: the distributions the losses
    use (to diagnose a non-finite loss). ``boxes``: the 0-dim tensors numeric Parameter values are filled into.
    ``compile``: the ``compile=`` the model was given (for messages). ``calls``: the number of ``Model.train``
    calls so far. ``set_training``: switch the networks' train/eval mode. ``compile_failed(runner, error,
    stacklevel)``: warn once and give the runner's objective an eager runner of the same pieces. ``objectives``:
    how many objectives the model steps (with several, a loss may reach another's parameters).
    """

    device: torch.device
    dtype: torch.dtype
    precision: str
    world: int
    modules: nn.Module
    users: list
    boxes: object
    compile: object
    calls: Callable[[], int]
    set_training: Callable[[bool], None]
    compile_failed: Callable[..., None]
    objectives: int = 1


class StepPieces:
    """The pieces of one objective's training step and their state, which every runner shares."""

    def __init__(self, objective, environment):
        self.objective, self.environment = objective, environment
        self.loss, self.optimizer, self.parameters = objective.loss, objective.optimizer, objective.parameters
        self.checked = False  # parameter checks run on the first step, then are off
        self.stepped = False  # the first step (eager, synchronous) has updated the parameters
        self.given = None  # the Parameter values of the current step as given (a compiled step boxes them)
        self.autocast_cache = True  # off inside a CUDA graph
        self._ddp = None
        self._watch = None
        self._tensors = None
        self._saved = None  # where a non-fused deferred update keeps what it may have to undo
        # set by the first step: the loss's graph reaches no leaf but this objective's parameters, so a plain
        # backward() gives the same gradients as backward(inputs=parameters), without the pass over the graph
        # that finds the paths to them (a tenth of a millisecond per hundred steps of a Sum)
        self.reaches_only_parameters = False

    # ----------------------------------------------------------------- pieces
    def forward(self, inputs, params, distributed=True):
        """The loss on ``inputs``: through DistributedDataParallel when training data-parallel."""
        env = self.environment
        with autocast(env.precision, env.device, self.autocast_cache):
            if distributed and env.world > 1:
                if self._ddp is None:
                    self._ddp = _distributed.wrap(nn.ModuleList(self.objective.modules), evaluate, env.device)
                return self._ddp(self.loss, inputs, params)
            return evaluate(self.loss, inputs, params)

    def zero_grad(self):
        for p in self.parameters:
            p.grad = None

    def backward(self, value):
        # only this objective's parameters: a discriminator's step leaves the generator's gradients alone
        value.backward(inputs=self.parameters)

    def forward_backward(self, inputs, params):
        value = self.forward(inputs, params)
        detached = value.detach()  # before backward (Dynamo would otherwise wrap a non-leaf after the break)
        if self.reaches_only_parameters and not _any_requires_grad(inputs, params):
            value.backward()
        else:
            value.backward(inputs=self.parameters)  # here, not in a method: Dynamo breaks the graph here
        return detached

    def clip(self):
        objective = self.objective
        if objective.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(objective.parameters, objective.clip_grad_norm)
        if objective.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(objective.parameters, objective.clip_grad_value)

    def update(self):
        self.clip()
        self.optimizer.step()

    def guarded_update(self, value):
        """The update, made a no-op on the device when ``value`` (or an earlier pending loss) or a gradient is not
        finite."""
        skip = self.watch().record(value, self.parameters)
        self.clip()
        optimizer = self.optimizer
        if fused(optimizer):
            # fused optimizers take GradScaler's found-inf flag and skip the update (step count included)
            optimizer.grad_scale, optimizer.found_inf = None, skip
            try:
                optimizer.step()
            finally:
                optimizer.found_inf = None  # as absent: the optimizer reads getattr(self, "found_inf", None)
            return
        tensors = self.state_tensors()
        if self._saved is None or len(self._saved) != len(tensors):
            with torch.no_grad():
                self._saved = [torch.empty_like(t) for t in tensors]
        saved = self._saved
        with torch.no_grad():  # one multi-tensor copy into buffers kept from step to step
            torch._foreach_copy_(saved, tensors)
        optimizer.step()
        keep = skip.bool()
        with torch.no_grad():
            for tensor, old in zip(tensors, saved):
                tensor.copy_(torch.where(keep, old, tensor))

    def state_tensors(self):
        """The parameters and the optimizer's state tensors: what an update changes."""
        if self._tensors is None:
            tensors = list(self.parameters)
            for p in self.parameters:
                tensors += [t for t in self.optimizer.state.get(p, {}).values() if isinstance(t, torch.Tensor)]
            self._tensors, self._saved = tensors, None
        return self._tensors

    def forget_state_tensors(self):
        """The optimizer made new state (a first step, a warm-up): list it again at the next update."""
        self._tensors = None

    # --------------------------------------------------------------- stepping
    def deferrable(self):
        """A deferred step needs the optimizer's state to exist: the first step creates it (plain SGD keeps
        none), or a loaded checkpoint brought it."""
        return self.stepped or bool(self.optimizer.state) or not self.parameters

    def watch(self):
        """The device-side record of the deferred steps (made at the first need)."""
        if self._watch is None:
            ref = self.parameters[0]
            self._watch = _Watch(ref.device, torch.float32)
            self._tensors = None
        return self._watch

    def run(self, inputs, params, sync, forward_backward, update, guarded_update):
        """One step with these versions of the pieces (eager or compiled); returns the loss before it: a float, or
        with ``sync=False`` a 0-dim tensor on the device."""
        if not self.checked or not sync and not self.deferrable():
            return self.first(inputs, params)
        if sync:
            self.settle()
            self.zero_grad()
            with _checks.validation(False):
                value = forward_backward(inputs, params)
            loss = self.read(value, inputs, params)
            update()
            return loss
        self.watch()
        self.zero_grad()
        with _checks.validation(False):
            value = forward_backward(inputs, params)
        guarded_update(value)
        return self.defer(value, inputs, params)

    def first(self, inputs, params):
        """The first step: eager, synchronous, with parameter checks on (it also creates the optimizer state)."""
        self.settle()
        self.zero_grad()
        value = self.forward(inputs, params)
        self.checked = True
        detached = value.detach()
        self.reaches_only_parameters = self.environment.objectives == 1 and _reaches_only(value, self.parameters)
        self.backward(value)
        loss = self.read(detached, inputs, params)
        self.update()
        self.stepped = True
        self._tensors = None
        return loss

    def read(self, value, inputs, params):
        """The loss as a float (averaged over processes); a non-finite loss or gradient raises before the update.
        One read of the device for both."""
        env = self.environment
        found = self.watch().gradients(self.parameters)
        if env.world > 1:
            loss, bad = _distributed.mean(value), bool(found.item())
        else:
            loss, bad = torch.stack((value.detach(), found.to(value.dtype))).tolist()
        self.raise_if_non_finite(loss, bad, inputs, params)
        return loss

    def raise_if_non_finite(self, loss, gradient_bad, inputs, params):
        """Raise for a non-finite loss (naming its terms), else for a non-finite gradient (naming the parameters)."""
        env = self.environment
        if not math.isfinite(loss):
            raise _checks.non_finite_report(self.loss, inputs, params, env.users, loss)
        if gradient_bad:
            raise _checks.non_finite_gradient_report(loss, env.modules, self.parameters)

    def defer(self, value, inputs, params):
        """Keep what is needed to diagnose this step later; force a read after too many pending steps."""
        watch = self._watch
        watch.pending.append((watch.host_count, self.environment.calls(), inputs, self.given or params))
        watch.host_count += 1
        if len(watch.pending) >= watch.limit:
            self.settle()
        return value

    def settle(self):
        """Read the pending steps' record; raise for the first non-finite loss among them, naming its terms."""
        watch = self._watch
        if watch is None or not watch.pending:
            return
        bad = int(watch.bad_at.item())
        if bad < 0:
            watch.pending.clear()
            return
        found = [entry for entry in watch.pending if entry[0] == bad]
        value = watch.bad_value.item()
        watch.reset()
        _, call, inputs, params = found[0]
        if math.isfinite(value):  # the loss was finite: its gradient was not
            error = _checks.non_finite_gradient_report(value)
        else:
            error = _checks.non_finite_report(self.loss, inputs, params, self.environment.users, value)
        error.call = call
        raise error


def _reaches_only(value, parameters):
    """Whether every leaf tensor that ``value``'s autograd graph leads to is one of ``parameters``."""
    allowed = {id(p) for p in parameters}
    seen, stack = set(), [value.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # an AccumulateGrad node: the gradient of a leaf tensor
        if leaf is not None and id(leaf) not in allowed:
            return False
        stack.extend(next_node for next_node, _ in node.next_functions)
    return True


def _any_requires_grad(inputs, params):
    """Whether an input (of a named data set too) or a Parameter value is a tensor that requires a gradient."""
    for values in (inputs, params):
        for value in values.values():
            if isinstance(value, dict):
                if _any_requires_grad(value, {}):
                    return True
            elif isinstance(value, torch.Tensor) and value.requires_grad:
                return True
    return False


class EagerStep:
    """The runner of a step in eager PyTorch."""

    kind = "eager"

    def __init__(self, pieces):
        self.pieces = pieces
        pieces.autocast_cache = True

    def train(self, inputs, params, sync=True):
        pieces = self.pieces
        return pieces.run(inputs, params, sync, pieces.forward_backward, pieces.update, pieces.guarded_update)

    def settle(self):
        self.pieces.settle()
