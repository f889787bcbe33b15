"""The context of one evaluation of a loss: the variables known so far and the samples drawn.

A context lives for one call of ``Loss.eval`` (or one public ``sample``/``log_prob`` call given a dict)
and is then dropped, so no sample, network output or autograd graph outlives the evaluation that made it.

Shapes. Every value in a context has ``batch_shape`` in front of its event shape: the sample dimensions
of the enclosing expectations (innermost first) followed by the data batch dimension. A value that does
not vary along some of those dimensions may leave them out on the left (right-aligned broadcasting).
"""
from __future__ import annotations

import torch


class Draws(dict):
    """What ``sample`` returns given a dict: the inputs and the draws, a plain dict that also remembers how many
    leading (sample and batch) dims each value has, so that it can be scored or sampled from again:
    ``q.sample({"x": x}, sample_shape=5)`` gives ``z`` of shape ``(5, batch, *event)`` and ``x`` of shape
    ``(batch, *event)``, and ``p.log_prob(that)`` is ``(5, batch)``."""

    __slots__ = ("lead",)

    def __init__(self, values, lead):
        super().__init__(values)
        self.lead = lead  # name -> number of leading dims of that value


class Context:
    """What a term sees while a loss is evaluated: the named values and the draws shared by every term.

    A term written with :class:`pgm.losses.Term` never needs it; a distribution's public methods accept one
    in place of an inputs dict (``q.sample(context)`` returns the context extended with ``q``'s draw, shared
    with every other term that samples ``q`` on the same inputs in this evaluation).

    Attributes:
        params: the values of the :class:`~pgm.losses.Parameter` symbols, by name.
    """

    __slots__ = ("values", "lead", "lead_shape", "params", "samples", "datasets")

    def __init__(self, values, lead, lead_shape, params, samples, datasets=None):
        self.values = values          # name -> tensor
        self.lead = lead              # name -> number of leading (sample + batch) dims of that tensor
        self.lead_shape = lead_shape  # torch.Size of the sample dims and the batch dim in this context
        self.params = params          # Parameter name -> value
        self.samples = samples        # shared cache: one draw per (distribution, inputs, sample shape)
        self.datasets = datasets or {}  # name -> inputs dict of a named data set (see Loss.mean)

    @property
    def batch_shape(self) -> torch.Size:
        """The leading dims every value carries: the sample dims of the enclosing expectations, innermost
        first, then the data batch dim."""
        return self.lead_shape

    def __getitem__(self, name) -> torch.Tensor:
        return self.values[name]

    def __contains__(self, name) -> bool:
        return name in self.values

    def get(self, name, default=None):
        """The value of variable ``name``, or ``default`` if it is neither given nor drawn yet."""
        return self.values.get(name, default)

    def __repr__(self):
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.values.items())
        return f"Context({shapes}; batch_shape={tuple(self.lead_shape)})"

    @classmethod
    def of(cls, inputs, params=None):
        """``inputs`` itself if it is a context, else a new context over the dict ``inputs``."""
        return inputs if isinstance(inputs, Context) else cls.from_inputs(inputs, params)

    @classmethod
    def from_inputs(cls, inputs, params=None, samples=None):
        """A new context over the dict ``inputs`` (tensors, batch first; ``None`` values are left out; a dict
        value is a named data set), with :class:`~pgm.losses.Parameter` values ``params``."""
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise TypeError(
                f"inputs must be a dict that maps variable names to tensors, e.g. {{'x': x}}; "
                f"got {type(inputs).__name__}."
            )
        values, lead, datasets = {}, {}, {}
        lead_shape = torch.Size()
        known = inputs.lead if isinstance(inputs, Draws) else {}
        for name, value in inputs.items():
            if value is None:  # an absent modality: left out, as if not given
                continue
            if isinstance(value, dict):  # a named data set, averaged over by loss.mean(name)
                datasets[name] = value
                continue
            if not isinstance(value, torch.Tensor):
                if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
                    raise TypeError(
                        f"input `{name}` is a {type(value).__name__} of {len(value)} tensors; it must be one "
                        f"torch.Tensor. For sequences of different lengths, pad them into one (batch, T, ...) "
                        f"tensor with torch.nn.utils.rnn.pad_sequence({name}, batch_first=True) and pass a "
                        f"(batch, T) mask or (batch,) lengths as another input, named by Sum(..., mask=...) "
                        f"or Sum(..., length=...); for equal shapes, torch.stack({name})."
                    )
                raise TypeError(
                    f"input `{name}` must be a torch.Tensor; got {type(value).__name__}. "
                    f"Convert it first, e.g. torch.as_tensor(...)."
                )
            values[name] = value
            if name in known:  # a draw's sample dims in front of the batch dim
                lead[name] = known[name]
                lead_shape = torch.broadcast_shapes(lead_shape, value.shape[:known[name]])
                continue
            lead[name] = min(value.dim(), 1)
            if value.dim() >= 1 and not lead_shape:
                lead_shape = value.shape[:1]
        return cls(values, lead, lead_shape, dict(params or {}), {} if samples is None else samples, datasets)

    def flat(self, names):
        """The values of ``names`` broadcast over their leading dims and flattened to ``(n, *event)`` each, as a
        network takes them, and the leading shape ``n`` unflattens to."""
        args = [self.values[n] for n in names]
        leads = [self.lead[n] for n in names]
        shapes = [a.shape[:k] for a, k in zip(args, leads)]
        # most networks take inputs of one leading shape: torch.broadcast_shapes costs a step's worth of small ops
        same = all(s == shapes[0] for s in shapes[1:])
        lead_shape = shapes[0] if same else torch.broadcast_shapes(*shapes)
        return [a.expand(lead_shape + a.shape[k:]).reshape((-1,) + a.shape[k:]) for a, k in zip(args, leads)], lead_shape

    def enumerating(self, var, values):
        """A child context in which ``var`` takes each of its N values, ``values`` as ``enumerate_support`` gives
        them, ``(N, *lead, *event)``: its batch shape is ``(N, *lead)``."""
        lead = 1 + len(self.lead_shape)
        return self.child({var: one_per_value(values, lead)}, {var: lead}, values.shape[:lead])

    def child(self, new_values, new_lead, lead_shape):
        """A context with ``new_values`` added (each with its number of leading dims in ``new_lead``) and
        ``lead_shape`` as its batch shape, sharing this one's draws: what an expectation evaluates ``f`` in."""
        values = dict(self.values)
        values.update(new_values)
        lead = dict(self.lead)
        lead.update(new_lead)
        return Context(values, lead, lead_shape, self.params, self.samples, self.datasets)


Scope = Context  # the name the implementation uses


def one_per_value(values, lead):
    """``values`` ``(N, *batch, *event)`` whose ``lead`` leading dims hold the same N values for every example (a
    discrete variable's support), kept ``(N, 1, ..., 1, *event)``: a network of the variable alone then runs on the
    N values once, not once per value and example."""
    return values[(slice(None),) + (slice(0, 1),) * (lead - 1)]
