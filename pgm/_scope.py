"""The context of one evaluation of a loss: the variables known so far, and the caches of the evaluation.

A context lives for one call of ``Loss.eval`` (or one public ``sample``/``log_prob`` call given a dict)
and is then dropped, so no sample, network output or autograd graph outlives the evaluation that made it.

Shapes. Every value in a context has ``batch_shape`` in front of its event shape: the sample dims of the
enclosing expectations (innermost first) followed by the data batch dim. A value that does not vary along some
of those dimensions may leave them out on the left (right-aligned broadcasting).

The caches. What an evaluation computes once and shares lives in its context, under a key of one of the types
below, read and written only through the context's methods (:meth:`Context.cached`, :meth:`Context.lookup`,
:meth:`Context.store`; :meth:`Context.drawn` and :meth:`Context.draws_of` for draws):

- :class:`Draw`: the draw of a distribution's variables, keyed by the distribution, the sample shape, whether it
  is reparameterized, the context's batch shape and the condition tensors it was drawn given. Every term that
  samples the same distribution on the same inputs with the same shape shares that one draw (``KL(q, p)`` and
  ``E(q, ...)`` see the same ``z``);
- :class:`NetworkOutput`: a family's parameters, keyed by the family and its input tensors (with their numbers
  of leading dims): its network runs once per evaluation and inputs (a BatchNorm inside updates once), and the
  torch distribution of them is built once;
- :class:`MixtureWeights`: the log-weights of a mixture whose weights come from a network, keyed likewise;
- :class:`FlowLogDensity`: a flow's log-density of a value it drew, from the pass that drew it, keyed by the
  flow, the value and the condition tensors (scoring the draw later needs no inverse);
- :class:`SharedOutput`: the output of a :class:`pgm.Shared` network, keyed by the network and its input tensors:
  a network two distributions call on the same tensors runs once (while a loss is evaluated, :func:`active_caches`
  is that evaluation's context).

A key holds its tensors themselves, not their ``id`` (which TorchDynamo cannot trace for a tensor made inside
a compiled step before torch 2.12), and finds its entry by their identity: a tensor hashes by its ``id``, and a
dict compares the fields of two keys of equal hash with ``is`` first, so a key finds the entry made from the very
same tensors, never one made from equal values; as the key keeps them alive for the evaluation, no tensor made
later can take the ``id`` of one of them. (Keys are for dicts: ``==`` between two keys of different tensors
compares the tensors' values.) A distribution (an ``nn.Module``) in a key matches by identity too: a copied loss
has copied distributions, with entries of their own.

How long an entry lives: one evaluation. The cache is made empty with the context of a ``Loss.eval`` (or of a
public call given a dict) and shared by every context derived from it with :meth:`Context.child` (the insides of
expectations, the values of an enumerated variable) and by the context of a named data set (``Loss.mean(name)``),
so every term of the evaluation shares it. The one exception is a step of a :class:`~pgm.losses.Sum`: each step's
context is made with :meth:`Context.afresh`, with a cache of its own, so each step draws its variables afresh and
the step's terms share the step's draws; :meth:`Context.draws_of` then tells the Sum what the step drew.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ._values import broadcast_shapes


# ------------------------------------------------------------------ the keys of the caches
# Frozen dataclasses: each hashes and compares as the tuple of its fields, and equals only a key of its own type;
# a distribution and a tensor match by identity there (see above), shapes and flags by value.

@dataclass(frozen=True, slots=True)
class Draw:
    """The draw of ``distribution``'s variables with ``sample_shape`` in front, reparameterized or not, in a context
    of batch shape ``lead_shape``, given the condition tensors ``conditions`` (in ``cond_var`` order, ``None`` for
    one not known). Its entry is ``(values by variable name, number of leading dims of each value)``."""

    distribution: Any
    sample_shape: tuple
    reparameterized: bool
    lead_shape: torch.Size
    conditions: tuple


@dataclass(frozen=True, slots=True)
class NetworkOutput:
    """A family's parameters given the input tensors ``inputs`` with ``leads`` leading dims each. Its entry is a
    ``Given`` (``pgm.distributions._family``): the parameters by name, their leading shape, and their torch
    distribution once built."""

    distribution: Any
    inputs: tuple
    leads: tuple


@dataclass(frozen=True, slots=True)
class MixtureWeights:
    """A mixture's log-weights from its weights network, given ``inputs`` with ``leads`` leading dims each. Its
    entry is the tensor of log-weights, ``(*lead, K)``."""

    mixture: Any
    inputs: tuple
    leads: tuple


@dataclass(frozen=True, slots=True)
class FlowLogDensity:
    """A flow's log-density of ``value``, one of its own draws, given the condition tensors ``conditions``, from
    the pass that drew it. Its entry is the tensor of log-densities."""

    flow: Any
    value: torch.Tensor
    conditions: tuple


@dataclass(frozen=True, slots=True)
class SharedOutput:
    """The output of a :class:`pgm.Shared` network given the positional ``inputs``. Its entry is that output."""

    network: Any
    inputs: tuple


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
    """What a term sees while a loss is evaluated: the named values, and the caches shared by every term.

    A term written with :class:`pgm.losses.Term` never needs it; a distribution's public methods accept one
    in place of an inputs dict (``q.sample(context)`` returns the context extended with ``q``'s draw, shared
    with every other term that samples ``q`` on the same inputs in this evaluation).

    Its caches (draws, networks' outputs, mixture weights, flows' log-densities) are read and written only through
    :meth:`cached`, :meth:`lookup`, :meth:`store`, :meth:`drawn` and :meth:`draws_of`, each under a typed key;
    what a key holds and how long an entry lives is written in the docstring of the module ``pgm._scope``.

    Attributes:
        params: the values of the :class:`~pgm.losses.Parameter` symbols, by name.
    """

    __slots__ = ("values", "lead", "lead_shape", "params", "samples", "datasets", "data_shape", "data_names")

    def __init__(self, values, lead, lead_shape, params, samples, datasets=None, data_shape=None, data_names=()):
        self.values = values          # name -> tensor
        self.lead = lead              # name -> number of leading (sample + batch) dims of that tensor
        self.lead_shape = lead_shape  # torch.Size of the sample dims and the batch dim in this context
        self.params = params          # Parameter name -> value
        self.samples = samples        # the caches of the evaluation, key -> entry (see the module's docstring)
        self.datasets = datasets or {}  # name -> inputs dict of a named data set (see Loss.mean)
        # outside every data-set average (see global_level): the batch shape of the data, which lead_shape holds
        # as a 1 there, and the names of the data; None and () inside one (the values are per example)
        self.data_shape = data_shape
        self.data_names = data_names

    # ------------------------------------------------------------ the caches
    def cached(self, key, make: Callable[[], Any]):
        """The entry under ``key`` (a :class:`Draw`, :class:`NetworkOutput`, :class:`MixtureWeights` or
        :class:`FlowLogDensity`) in this evaluation, made by ``make()`` and kept the first time it is asked."""
        hit = self.samples.get(key)
        if hit is None:
            hit = self.samples[key] = make()
        return hit

    def lookup(self, key):
        """The entry under ``key`` in this evaluation, or ``None`` if none was kept."""
        return self.samples.get(key)

    def store(self, key, entry):
        """Keep ``entry`` under ``key`` for the rest of this evaluation."""
        self.samples[key] = entry

    def conditions(self, distribution) -> tuple:
        """The tensors of ``distribution``'s conditioning variables in this context (``None`` for one not known):
        what its draws are keyed by."""
        return tuple([self.values.get(c) for c in distribution.cond_var])

    def draw_key(self, distribution, sample_shape, reparameterized) -> Draw:
        """The key of ``distribution``'s draw here: ``sample_shape`` in front, ``reparameterized`` or not."""
        return Draw(distribution, tuple(sample_shape), reparameterized, self.lead_shape, self.conditions(distribution))

    def drawn(self, distribution, sample_shape, reparameterized, draw: Callable[[], Any]):
        """``distribution``'s draw in this evaluation, ``(values by name, leading dims)``, made by ``draw()`` the
        first time: every term that samples it on the same inputs and shape shares it."""
        return self.cached(self.draw_key(distribution, sample_shape, reparameterized), draw)

    def draws_of(self, distributions):
        """The draws made in this context's cache by any of ``distributions``, in the order they were made: a list
        of ``(key, values by name, leading dims)`` with ``key`` the :class:`Draw` (its ``sample_shape`` and
        ``lead_shape`` say whether it is one draw per example of this context)."""
        wanted = {id(d) for d in distributions}
        return [(key, *entry) for key, entry in self.samples.items()
                if type(key) is Draw and id(key.distribution) in wanted]

    def drawer_of(self, var, value):
        """``(distribution, leading dims)`` of the draw in this context's cache that gave ``value`` (the very tensor)
        for ``var``; None if no draw did (an input)."""
        for key, entry in self.samples.items():
            if type(key) is Draw and entry[0].get(var) is value:
                return key.distribution, entry[1]
        return None

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
    def from_inputs(cls, inputs, params=None, samples=None, global_level=False):
        """A new context over the dict ``inputs`` (tensors, batch first; ``None`` values are left out; a dict
        value is a named data set), with :class:`~pgm.losses.Parameter` values ``params``; with
        ``global_level``, outside every data-set average (see :meth:`over_data`)."""
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
                lead_shape = broadcast_shapes(lead_shape, value.shape[:known[name]])
                continue
            lead[name] = min(value.dim(), 1)
            if value.dim() >= 1 and not lead_shape:
                lead_shape = value.shape[:1]
        samples = {} if samples is None else samples
        if global_level:  # the batch dim held as a 1: what is drawn here is shared by every example
            return cls(values, lead, torch.Size((1,)), dict(params or {}), samples, datasets,
                       lead_shape or torch.Size((1,)), frozenset(values))
        return cls(values, lead, lead_shape, dict(params or {}), samples, datasets)

    @property
    def global_level(self) -> bool:
        """Whether this context is outside every data-set average of the formula: a variable drawn here (a
        Bayesian network's weights ``w``) is drawn once for the whole batch and shared by its examples. Its batch
        dim is then a 1 in :attr:`batch_shape`, and :meth:`over_data` gives the context of the examples."""
        return self.data_shape is not None

    def over_data(self, name=None):
        """The context of a data-set average (``.mean()``, ``.sum()``) evaluated in this one: its batch dim the
        data's (of the named data set ``name``), the variables drawn so far (global ones, shared by every
        example) broadcast over it, and the caches shared. Inside an average already, the context itself (or
        for a named data set, that data set's)."""
        if name is None:
            if self.data_shape is None:
                return self
            return Context(self.values, self.lead, self.lead_shape[:-1] + self.data_shape, self.params, self.samples,
                           self.datasets)
        inner = Context.from_inputs(self.datasets[name], self.params, self.samples)
        if self.data_shape is None:
            return inner
        drawn = [n for n in self.values if n not in self.data_names and n not in inner.values]
        values = {**{n: self.values[n] for n in drawn}, **inner.values}
        lead = {**{n: self.lead[n] for n in drawn}, **inner.lead}
        return Context(values, lead, self.lead_shape[:-1] + (inner.lead_shape or torch.Size((1,))), self.params,
                       self.samples, inner.datasets)

    def flat(self, names):
        """The values of ``names`` broadcast over their leading dims and flattened to ``(n, *event)`` each, as a
        network takes them, and the leading shape ``n`` unflattens to."""
        args = [self.values[n] for n in names]
        leads = [self.lead[n] for n in names]
        shapes = [a.shape[:k] for a, k in zip(args, leads)]
        # most networks take inputs of one leading shape: torch.broadcast_shapes costs a step's worth of small ops
        same = all(s == shapes[0] for s in shapes[1:])
        lead_shape = shapes[0] if same else broadcast_shapes(*shapes)
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
        return Context(values, lead, lead_shape, self.params, self.samples, self.datasets, self.data_shape,
                       self.data_names)

    def afresh(self, new_values, new_lead):
        """A context of the same batch shape with ``new_values`` added or replaced (each with its number of leading
        dims in ``new_lead``) and an empty cache of its own: nothing drawn or computed in this one is shared with
        it, and nothing drawn in it is shared back (a step of a ``Sum``, which draws afresh)."""
        values = dict(self.values)
        values.update(new_values)
        lead = dict(self.lead)
        lead.update(new_lead)
        return Context(values, lead, self.lead_shape, self.params, {}, self.datasets, self.data_shape, self.data_names)


def one_per_value(values, lead):
    """``values`` ``(N, *batch, *event)`` whose ``lead`` leading dims hold the same N values for every example (a
    discrete variable's support), kept ``(N, 1, ..., 1, *event)``: a network of the variable alone then runs on the
    N values once, not once per value and example."""
    return values[(slice(None),) + (slice(0, 1),) * (lead - 1)]


# the contexts of the evaluations in progress, innermost last (Loss.eval appends and removes its own): how a network
# called inside a distribution's own network (a pgm.Shared) finds the evaluation's caches without being handed them
ACTIVE: list = []


def active_caches():
    """The context of the evaluation in progress (its caches are the evaluation's), or None outside one."""
    return ACTIVE[-1] if ACTIVE else None
