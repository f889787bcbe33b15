"""One training step of one objective: the forward and backward pass, the non-finite check and the update.

:class:`EagerStep` is the step; the compiled kinds in ``_compile.py`` compile or capture its pieces
(:meth:`EagerStep.forward_backward`, :meth:`EagerStep.update`, :meth:`EagerStep.guarded_update`), so that every
kind computes the same numbers. A step is *synchronous* (``sync=True``: the loss is read on the host before the
update, and a non-finite loss or gradient raises before the parameters change) or *deferred* (``sync=False``: the
loss stays on the device, a non-finite loss or gradient makes the update a no-op there, as ``torch.amp.GradScaler``
does with its found-inf flag, and :meth:`EagerStep.settle` reports it at the next read).
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..losses import Loss
from . import _checks, _distributed

PRECISIONS = ("float32", "bf16")


def evaluate(loss, inputs, params):
    value = loss.eval(inputs, **params)
    if value.dim() != 0:
        raise ValueError(
            f"the loss is per example (shape {tuple(value.shape)}); reduce it over the batch with "
            f".mean() or .sum() before training, e.g. Model((...).mean(), ...)."
        )
    return value


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


IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")  # how an optimizer runs, not what it learnt


def fused(optimizer):
    """Whether ``optimizer``'s update takes GradScaler's found-inf flag and skips itself on the device (fused Adam,
    AdamW, SGD): decided by its param groups, which a loaded state dict replaces, not by how it was built."""
    return (getattr(optimizer, "_step_supports_amp_scaling", False)
            and all(group.get("fused") for group in optimizer.param_groups))


def place_steps(optimizer):
    """Each step counter where its param group's implementation needs it: on the parameter's device (float32) for
    a fused or capturable group, on the CPU for the others (as a newly built optimizer has them)."""
    for group in optimizer.param_groups:
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor):
                device = p.device if on_device else torch.device("cpu")
                if step.device != device:
                    state["step"] = step.to(device=device, dtype=torch.float32 if on_device else step.dtype)


class Objective:
    """A loss with its own parameters and optimizer, one of the several a :class:`Model` steps in turn.

    ``Model([Objective(discriminator_loss, [D], name="discriminator"), Objective(generator_loss, [G],
    name="generator")])`` trains a GAN: each training step updates the discriminator on the batch, then the
    generator. The backward pass of an objective reaches only its own parameters, so a discriminator step
    neither changes nor accumulates gradients into the generator.

    Args:
        loss: the scalar loss this objective minimizes.
        distributions: the distributions (or any ``nn.Module``) whose parameters it trains. Networks inside
            the loss that belong to no objective's distributions (a learned baseline, a term's network) are
            trained by the objective whose loss holds them.
        optimizer, optimizer_params, clip_grad_norm, clip_grad_value: as for :class:`Model`.
        name: the name its loss is reported under (``train_loss:<name>`` in ``fit``'s history).
        every: step this objective on every ``every``-th training batch (e.g. a generator updated once per
            five critic updates: ``every=5``).
    """

    def __init__(self, loss, distributions, optimizer=torch.optim.Adam, optimizer_params=None,
                 clip_grad_norm=None, clip_grad_value=None, name=None, every=1):
        if not isinstance(loss, Loss):
            raise TypeError(f"Objective: loss must be a pgm loss; got {type(loss).__name__}.")
        distributions = module_list(distributions, f"Objective{f' {name!r}' if name else ''}")
        if name is not None and (not isinstance(name, str) or not name.isidentifier()):
            raise ValueError(f"Objective: name must be a short identifier such as 'generator'; got {name!r}.")
        if not callable(optimizer):
            raise TypeError(f"Objective: optimizer must be an optimizer class such as torch.optim.Adam (or a "
                            f"function of the parameters returning an optimizer); got {type(optimizer).__name__} "
                            f"{optimizer!r}.")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"Objective: every must be a whole number >= 1; got {every!r}.")
        for label, value in (("clip_grad_norm", clip_grad_norm), ("clip_grad_value", clip_grad_value)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise ValueError(f"Objective: {label} must be a finite positive number or None; got {value!r}.")
        self.loss, self.distributions, self.name, self.every = loss, distributions, name, every
        self.optimizer_class, self.optimizer_params = optimizer, dict(optimizer_params or {})
        self.clip_grad_norm, self.clip_grad_value = clip_grad_norm, clip_grad_value
        self.modules = None  # set by Model: what this objective trains
        self.optimizer = None

    def __repr__(self):
        return f"Objective({self.name or 'loss'}: {self.loss})"

    def build(self, modules):
        """Create the optimizer over the trainable parameters of ``modules`` (called once, by Model)."""
        self.modules = modules
        self.parameters = unique([p for m in unique(modules) for p in m.parameters() if p.requires_grad])
        if not self.parameters:
            what = f" of objective {self.name!r}" if self.name else ""
            raise ValueError(f"Model: the distributions{what} have no trainable parameters.")
        devices = {p.device.type for p in self.parameters}
        self.optimizer = self.optimizer_class(self.parameters,
                                              **optimizer_keywords(self.optimizer_class, self.optimizer_params, devices))
        # the numbers it was built with (lr, betas, ...): a checkpoint records them, and a model built with others
        # keeps its own when it loads one (to resume with a lower learning rate)
        self.hyperparameters = {k: v for k, v in getattr(self.optimizer, "defaults", {}).items() if _number(v)}
        self.implementation = [{k: g[k] for k in IMPLEMENTATION if k in g} for g in self.optimizer.param_groups]
        return self.optimizer

    def restore_implementation(self):
        """After a state dict is loaded: the optimizer runs as it was built (fused or not, ...), not as the optimizer
        that saved the checkpoint did (a CPU run's plain Adam resumed on a GPU with a fused one, or back)."""
        groups = self.optimizer.param_groups
        if len(groups) == len(self.implementation):
            for group, flags in zip(groups, self.implementation):
                group.update(flags)
        place_steps(self.optimizer)


def _number(value):
    if isinstance(value, tuple):
        return all(_number(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def optimizer_keywords(optimizer, params, device_types):
    """``params`` for ``optimizer``, with Adam and AdamW fused on CUDA unless the user chose an implementation:
    one kernel per update, and the found-inf flag that skips a non-finite step on the device for free (the
    others' updates are undone with a copy of every tensor they change)."""
    if (optimizer in (torch.optim.Adam, torch.optim.AdamW) and device_types == {"cuda"}
            and not {"fused", "foreach", "differentiable"} & set(params)):
        return {**params, "fused": True}
    return params


def module_list(distributions, who):
    """``distributions`` (one, or an iterable) as a list of modules, or an error naming ``who`` got what."""
    if isinstance(distributions, nn.Module):
        distributions = [distributions]
    distributions = list(distributions)
    bad = [type(d).__name__ for d in distributions if not isinstance(d, nn.Module)]
    if bad or not distributions:
        raise TypeError(f"{who}: distributions must be a non-empty list of pgm distributions (or nn.Modules); "
                        f"got {bad or 'none'}.")
    return distributions


def unique(items):
    """``items`` without repeats (by identity), in order."""
    out = []
    for item in items:
        if all(item is not o for o in out):
            out.append(item)
    return out


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


class EagerStep:
    """The training step of one objective, in eager PyTorch."""

    kind = "eager"
    autocast_cache = True

    def __init__(self, model, objective):
        self.model, self.objective = model, objective
        self.loss, self.optimizer = objective.loss, objective.optimizer
        self.checked = False  # parameter checks run on the first step, then are off
        self.stepped = False  # the first step (eager, synchronous) has updated the parameters
        self._ddp = None
        self._watch = None
        self._tensors = None
        self._saved = None  # where a non-fused deferred update keeps what it may have to undo
        self.given = None  # the Parameter values of the current step as given (a compiled step boxes them)

    # ----------------------------------------------------------------- pieces
    def forward(self, inputs, params, distributed=True):
        """The loss on ``inputs``: through DistributedDataParallel when training data-parallel."""
        model = self.model
        with autocast(model.precision, model.device, self.autocast_cache):
            if distributed and model.world > 1:
                if self._ddp is None:
                    self._ddp = _distributed.wrap(nn.ModuleList(self.objective.modules), evaluate, model.device)
                return self._ddp(self.loss, inputs, params)
            return evaluate(self.loss, inputs, params)

    def zero_grad(self):
        for p in self.objective.parameters:
            p.grad = None

    def backward(self, value):
        # only this objective's parameters: a discriminator's step leaves the generator's gradients alone
        value.backward(inputs=self.objective.parameters)

    def forward_backward(self, inputs, params):
        value = self.forward(inputs, params)
        detached = value.detach()  # before backward (Dynamo would otherwise wrap a non-leaf after the break)
        value.backward(inputs=self.objective.parameters)  # here, not in a method: Dynamo breaks the graph here
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
        """The update, made a no-op on the device when ``value`` (or an earlier pending loss) is not finite."""
        skip = self._watch.record(value, self.objective.parameters)
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
        tensors = self._state_tensors()
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

    def _state_tensors(self):
        """The parameters and the optimizer's state tensors: what an update changes."""
        if self._tensors is None:
            tensors = list(self.objective.parameters)
            for p in self.objective.parameters:
                tensors += [t for t in self.optimizer.state.get(p, {}).values() if isinstance(t, torch.Tensor)]
            self._tensors, self._saved = tensors, None
        return self._tensors

    # --------------------------------------------------------------- stepping
    def deferrable(self):
        """A deferred step needs the optimizer's state to exist: the first step creates it (plain SGD keeps
        none), or a loaded checkpoint brought it."""
        return self.stepped or bool(self.optimizer.state) or not self.objective.parameters

    def watch(self):
        if self._watch is None:
            ref = self.objective.parameters[0]
            self._watch = _Watch(ref.device, torch.float32)
            self._tensors = None
        return self._watch

    def train(self, inputs, params, sync=True):
        """One step; returns the loss before it: a float, or with ``sync=False`` a 0-dim tensor on the device."""
        if not self.checked or not sync and not self.deferrable():
            return self.first(inputs, params)
        if sync:
            self.settle()
            self.zero_grad()
            with _checks.validation(False):
                value = self.forward_backward(inputs, params)
            loss = self.read(value, inputs, params)
            self.update()
            return loss
        self.watch()
        self.zero_grad()
        with _checks.validation(False):
            value = self.forward_backward(inputs, params)
        self.guarded_update(value)
        return self.defer(value, inputs, params)

    def first(self, inputs, params):
        """The first step: eager, synchronous, with parameter checks on (it also creates the optimizer state)."""
        self.settle()
        self.zero_grad()
        value = self.forward(inputs, params)
        self.checked = True
        detached = value.detach()
        self.backward(value)
        loss = self.read(detached, inputs, params)
        EagerStep.update(self)
        self.stepped = True
        self._tensors = None
        return loss

    def read(self, value, inputs, params):
        """The loss as a float (averaged over processes); a non-finite loss or gradient raises before the update.
        One read of the device for both."""
        model = self.model
        found = self.watch().gradients(self.objective.parameters)
        if model.world > 1:
            loss, bad = _distributed.mean(value), bool(found.item())
        else:
            loss, bad = torch.stack((value.detach(), found.to(value.dtype))).tolist()
        if not math.isfinite(loss):
            raise _checks.non_finite_report(self.loss, inputs, params, model.users, loss)
        if bad:
            raise _checks.non_finite_gradient_report(loss, model.distributions, self.objective.parameters)
        return loss

    def defer(self, value, inputs, params):
        """Keep what is needed to diagnose this step later; force a read after too many pending steps."""
        watch = self._watch
        watch.pending.append((watch.host_count, self.model.calls, inputs, self.given or params))
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
            error = _checks.non_finite_report(self.loss, inputs, params, self.model.users, value)
        error.call = call
        raise error

    def test(self, loss, inputs, params):
        with torch.no_grad(), autocast(self.model.precision, self.model.device):
            return evaluate(loss, inputs, params)
