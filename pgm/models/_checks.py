"""Checks that keep a training run from failing obscurely: inputs on the wrong device or of the wrong
dtype (checked once per input signature) and a non-finite loss (diagnosed term by term)."""
from __future__ import annotations

import contextlib
import itertools
import math
import numbers

import torch

from ..distributions import set_validation, validation_enabled


@contextlib.contextmanager
def validation(enabled):
    """Parameter checks (see :func:`pgm.distributions.set_validation`) on or off inside the block."""
    before = validation_enabled()
    set_validation(enabled)
    try:
        yield
    finally:
        set_validation(before)


class NonFiniteLossError(FloatingPointError):
    """The loss was NaN or infinite; the message names the terms that were.

    Raised before the optimizer update, so the parameters are those from before the failing step.
    Attributes: ``loss`` (the value), ``terms`` (the text of each non-finite term of the loss's top-level
    sum), ``checkpoint`` (the last good checkpoint written by :meth:`Model.fit`, or None).
    """

    def __init__(self, message, loss=math.nan, terms=(), checkpoint=None):
        super().__init__(message)
        self.loss, self.terms, self.checkpoint = loss, list(terms), checkpoint


class NonFiniteGradientError(NonFiniteLossError):
    """The loss was finite but its gradient was not (a ``sqrt`` or ``log`` at 0 in a branch the loss does not
    use, say); the message names the parameters whose gradients were, where it can.

    Raised before the optimizer update, as :class:`NonFiniteLossError` (which catches it too).
    """


def non_finite_gradient_report(value, modules=None, parameters=()):
    """A NonFiniteGradientError for a step whose loss is ``value``; with ``modules`` (the model's networks), naming
    those of ``parameters`` whose gradients are not finite."""
    parts = [f"the loss is {value} but its gradient is not finite"]
    if modules is not None:
        bad = {id(p) for p in parameters if p.grad is not None and not bool(torch.isfinite(p.grad).all())}
        named = []
        for module in modules:
            names = [n for n, p in module.named_parameters() if id(p) in bad]
            if names:
                who = getattr(module, "prob_text", type(module).__name__)
                named.append(f"{who} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
        if named:
            parts.append("non-finite gradients of " + ", ".join(named))
    message = "; ".join(parts) + (" (a function whose derivative is infinite where the loss reads it: sqrt or log "
                                  "at 0, say). The optimizer step was skipped, so the parameters are those from "
                                  "before it.")
    return NonFiniteGradientError(message, loss=value)


def _reference(distribution):
    """A floating parameter or buffer of ``distribution``, whose device and dtype inputs must match."""
    for t in itertools.chain(distribution.parameters(), distribution.buffers()):
        if t.is_floating_point():
            return t
    return None


def _dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def flat_inputs(inputs, dataset=None):
    """(name, data set or None, tensor) for every tensor of ``inputs``, into named data sets' dicts."""
    if not isinstance(inputs, dict):
        return
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            yield name, dataset, value
        elif isinstance(value, dict):
            yield from flat_inputs(value, name)


def _named(name, dataset):
    return f"`{name}`" if dataset is None else f"`{name}` of data set `{dataset}`"


def check_inputs(inputs, distributions):
    """Raise a ValueError naming the first input whose device (or floating dtype) differs from the
    parameters of a distribution that takes it."""
    for name, dataset, value in flat_inputs(inputs):
        users = [d for d in distributions if name in d.cond_var] + [d for d in distributions if name in d.var]
        for d in users:
            ref = _reference(d)
            if ref is None:
                continue
            if value.device != ref.device:
                raise ValueError(
                    f"input {_named(name, dataset)} is on {value.device} but {d.prob_text}'s parameters are on {ref.device}; "
                    f"move it with {name}.to('{ref.device}')."
                )
            if value.is_floating_point() and value.dtype != ref.dtype:
                raise ValueError(
                    f"input {_named(name, dataset)} is {_dtype_name(value.dtype)} but {d.prob_text}'s parameters are "
                    f"{_dtype_name(ref.dtype)}; convert it with {name}.to(torch.{_dtype_name(ref.dtype)})."
                )


def top_terms(loss, inputs=None):
    """(term, its inputs) for the terms of the sums in ``loss`` (see :meth:`pgm.losses.Loss.terms`)."""
    return loss.terms(inputs)


def _non_finite_count(value):
    if isinstance(value, torch.Tensor):
        bad = ~torch.isfinite(value.detach())
        return int(bad.sum()), value.numel()
    if isinstance(value, numbers.Real):
        return int(not math.isfinite(value)), 1
    return 0, 1


def _describe(count, total, what="values"):
    return f"{count} of {total} {what}" if total > 1 else "its value"


def _evaluate_terms(loss, inputs, params, terms, details):
    with torch.no_grad():
        for term, term_inputs in top_terms(loss, inputs):
            try:
                result = term.eval(term_inputs, **params)
            except Exception as error:  # a term alone may lack context; say so rather than fail here
                details.append(f"{term} (could not be evaluated alone: {type(error).__name__})")
                continue
            count, total = _non_finite_count(result)
            if count:
                terms.append(str(term))
                details.append(f"{term} ({_describe(count, total)} non-finite)")


def non_finite_report(loss, inputs, params, distributions, value):
    """A NonFiniteLossError naming the non-finite terms, inputs, Parameter values and network parameters.

    The terms are re-evaluated one by one (without gradient) on the same inputs and parameters; their
    samples are fresh draws, so a term that failed only for an unlucky sample may show as finite.
    """
    empty = [(name, dataset, tensor) for name, dataset, tensor in flat_inputs(inputs)
             if tensor.dim() >= 1 and tensor.shape[0] == 0]
    if empty:  # a mean over no examples is nan: nothing else to look for
        name, dataset, tensor = empty[0]
        return NonFiniteLossError(f"the loss is {value}: the batch holds no examples ({_named(name, dataset)} has "
                                  f"shape {tuple(tensor.shape)}), and a mean over none is nan; leave empty batches "
                                  f"out. The optimizer step was skipped, so the parameters are those from before it.",
                                  loss=value, terms=[])
    terms, details = [], []
    with validation(False):  # a NaN parameter must show up as a NaN term, not as a failed parameter check
        _evaluate_terms(loss, inputs, params, terms, details)
    parts = [f"the loss is {value}"]
    if details:
        parts.append("non-finite terms: " + "; ".join(details))
    else:
        parts.append("every term was finite when evaluated again with fresh samples, so a sample drawn in this "
                     "step made it non-finite (e.g. a scale that underflowed to 0)")
    bad_inputs = []
    for name, dataset, tensor in flat_inputs(inputs):
        if tensor.is_floating_point():
            count = int((~torch.isfinite(tensor)).sum())
            if count:
                bad_inputs.append(f"{_named(name, dataset)} ({count} of {tensor.numel()} values)")
    if bad_inputs:
        parts.append("non-finite inputs: " + ", ".join(bad_inputs))
    bad_params = [f"{k}={v}" for k, v in params.items() if _non_finite_count(v)[0]]
    if bad_params:
        parts.append("non-finite Parameter values: " + ", ".join(bad_params))
    bad_weights = []
    for d in distributions:
        names = [n for n, p in d.named_parameters() if not bool(torch.isfinite(p).all())]
        if names:
            bad_weights.append(f"{d.prob_text} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    if bad_weights:
        parts.append("non-finite network parameters in " + ", ".join(bad_weights))
    message = "; ".join(parts) + ". The optimizer step was skipped, so the parameters are those from before it."
    return NonFiniteLossError(message, loss=value, terms=terms)
