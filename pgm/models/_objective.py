"""An objective: a loss, the parameters it trains and their optimizer (how it was built, so that a loaded
checkpoint keeps it)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..losses import Loss


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
            raise ValueError(f"Model: the distributions{what} have no trainable parameters.{_plain_nets(modules)}")
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


def _plain_nets(modules):
    """For the message of a model with nothing to train: the distributions whose ``net`` is a plain function (a
    lambda calling a module hides that module's parameters), and the fix; empty if none."""
    plain = []
    for module in unique(modules):
        for m in module.modules():
            net = getattr(m, "net", None)
            if callable(net) and not isinstance(net, nn.Module) and getattr(m, "prob_text", None):
                plain.append(f"{m.prob_text} (net={getattr(net, '__qualname__', type(net).__name__)})")
    if not plain:
        return ""
    return (f" The net of {', '.join(plain)} is a plain function, whose modules' parameters Model cannot see: pass "
            f"the nn.Module itself as net=, or wrap the function in an nn.Module that holds the modules it calls.")


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
