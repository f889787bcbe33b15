"""The state of one evaluation of a loss: the variables known so far and the samples drawn.

A scope lives for one call of ``Loss.eval`` (or one public ``sample``/``log_prob`` call) and is then
dropped, so no sample, network output or autograd graph outlives the evaluation that made it.

Shapes. Every value in a scope has ``lead_shape`` in front of its event shape: the sample dimensions
of the enclosing expectations (innermost first) followed by the data batch dimension. A value that does
not vary along some of those dimensions may leave them out on the left (right-aligned broadcasting).
"""
from __future__ import annotations

import torch


class Scope:
    __slots__ = ("values", "lead", "lead_shape", "params", "samples", "datasets")

    def __init__(self, values, lead, lead_shape, params, samples, datasets=None):
        self.values = values          # name -> tensor
        self.lead = lead              # name -> number of leading (sample + batch) dims of that tensor
        self.lead_shape = lead_shape  # torch.Size of the sample dims and the batch dim in this scope
        self.params = params          # Parameter name -> value
        self.samples = samples        # shared cache: one draw per (distribution, inputs, sample shape)
        self.datasets = datasets or {}  # name -> inputs dict of a named data set (see Loss.mean)

    @classmethod
    def from_inputs(cls, inputs, params=None, samples=None):
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise TypeError(
                f"inputs must be a dict that maps variable names to tensors, e.g. {{'x': x}}; "
                f"got {type(inputs).__name__}."
            )
        values, lead, datasets = {}, {}, {}
        lead_shape = torch.Size()
        for name, value in inputs.items():
            if value is None:  # an absent modality: left out, as if not given
                continue
            if isinstance(value, dict):  # a named data set, averaged over by loss.mean(name)
                datasets[name] = value
                continue
            if not isinstance(value, torch.Tensor):
                raise TypeError(
                    f"input `{name}` must be a torch.Tensor; got {type(value).__name__}. "
                    f"Convert it first, e.g. torch.as_tensor(...)."
                )
            values[name] = value
            lead[name] = min(value.dim(), 1)
            if value.dim() >= 1 and not lead_shape:
                lead_shape = value.shape[:1]
        return cls(values, lead, lead_shape, dict(params or {}), {} if samples is None else samples, datasets)

    def child(self, new_values, new_lead, lead_shape):
        values = dict(self.values)
        values.update(new_values)
        lead = dict(self.lead)
        lead.update(new_lead)
        return Scope(values, lead, lead_shape, self.params, self.samples, self.datasets)
