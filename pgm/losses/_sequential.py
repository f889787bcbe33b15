"""A loss repeated over the steps of a sequence: ``Sum(step, over="t", series=["x"], carry={"z_prev": "z"})``.

The step is an ordinary loss over ordinary distributions (``q(z|x,z_prev)``, ``p(x|z)``...). At step t the
series inputs give their slice ``x[:, t]``, each carried variable the value its source took at step t-1 (its
initial value at the first step), and the step's terms draw their variables afresh; the per-step values are
summed over t (steps a mask leaves out add 0). It prints as :math:`\\sum_{t=1}^{T}` with subscripted variables.

Here: the class, its arguments and their checks. Its LaTeX: ``_sum_printing``. Its evaluation: ``_steps`` (what
the steps read from the inputs), ``_unroll`` (the steps drawn one after the other), ``_forward_algorithm``
(``marginalize``: the state summed out, and decoded).
"""
from __future__ import annotations

import torch
from torch import nn

from .._scope import Context
from ..distributions import Distribution, JointDistribution
from . import _forward_algorithm, _sum_printing, _unroll
from ._base import Loss


def _identifier(where, name):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{where}: names must be identifiers such as 'x' or 'z_prev'; got {name!r}.")
    return name


def _names(where, value):
    names = [value] if isinstance(value, str) else list(value or ())
    for n in names:
        _identifier(where, n)
    if len(set(names)) != len(names):
        raise ValueError(f"{where} repeats a name: {names}.")
    return names


def _flat(distributions):
    """The distributions and, for a product, its factors (each factor caches its own draw)."""
    out = []
    for d in distributions:
        for f in [d] + (list(d.factors) if isinstance(d, JointDistribution) else []):
            if all(f is not o for o in out):
                out.append(f)
    return out


class Sum(Loss):
    r"""A loss summed over the steps of sequences, :math:`\sum_{t=1}^{T} \mathcal{L}_t`, per example.

    ``step`` is written with ordinary distributions, one step's variables plain (``x``, ``z``) and the previous
    step's under names of their own (``z_prev``). At each step t:

    - every ``series`` input, given as ``(batch, T, ...)`` (the time axis right after the batch dim), is its
      slice at t, ``x[:, t]``;
    - every carried variable takes the value its source took at step t-1: ``carry={"z_prev": "z"}`` carries the
      draw of ``z`` made in step t-1 (by ``E(q, ...)``, the one draw every term of that step shares);
      ``carry={"h_prev": f}`` carries the variable of the distribution ``f`` (e.g. a
      :class:`~pgm.distributions.Deterministic` RNN cell ``f(h|x,z,h_prev)``), drawn after the step's terms
      from the step's inputs and draws where the step itself did not draw it;
    - at the first step, a carried variable takes its initial value: ``initial={"z_prev": ...}`` gives an input's
      name (one value per sequence), or a tensor of the variable's event shape (the same for every sequence;
      an ``nn.Parameter`` is learned); without one, the input of the carried variable's own name;
    - the step's terms draw their variables afresh (each once per step, shared by the step's terms).

    The per-step values are summed; with ``mask`` (an input ``(batch, T)``, true at the real steps) or
    ``length`` (an input ``(batch,)`` of sequence lengths) the other steps add 0, so sequences of unequal
    lengths are padded to a common T (with finite values, e.g. zeros) and masked. With ``present="z_pres"``
    (Attend-Infer-Repeat's presence, a Bernoulli variable the step draws) a sequence ends at its first draw of 0:
    step t counts only where :math:`\prod_{s<t} z_{pres,s} = 1` (the step that draws the 0 still counts; the
    ones after it add 0 and leave the carried state as it was, as padded steps do). ``final`` is a loss of the
    state after the last step, evaluated once on the carried values as the step after the last would see them,
    under both the carried name and its source's (``c_prev`` and ``c`` both hold :math:`c_T`, the last real
    step's), e.g. AIR's :math:`\log p(x|c_T)`. A discrete draw the later steps depend on (carried, read by a
    carried distribution such as a canvas, or the presence) has its score weighted by the later steps and the
    final term too. A carried variable must be one draw per sequence (no ``sample_shape`` on its expectation); for
    K trajectories per sequence, repeat the batch K times. Compiled (``Model(compile=...)``), the T steps are unrolled into one graph: compiling takes
    longer as T grows, and a new T compiles once more.

    It prints as :math:`\sum_{t=1}^{T}\left[\dots\right]` with the step's variables subscripted: series and
    the step's draws :math:`x_t, z_t`, carried ones by their source, :math:`z_{t-1}`.

    >>> import torch
    >>> from pgm.distributions import Bernoulli, Normal
    >>> from pgm.losses import E, KL, LogProb
    >>> gaussian = lambda *v: {"loc": torch.cat(v, -1)[..., :2], "scale": torch.ones(2)}
    >>> q = Normal("q(z|x,z_prev)", net=gaussian)
    >>> prior = Normal("p(z|z_prev)", net=gaussian)
    >>> p = Bernoulli("p(x|z)", net=lambda z: {"logits": z.repeat(1, 2)})
    >>> loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"},
    ...            initial={"z_prev": torch.zeros(2)})
    >>> print(loss.latex())
    \sum_{t=1}^{T} \left[D_{KL}\left[q(z_t|x_t,z_{t-1})\|p(z_t|z_{t-1})\right] - \mathbb{E}_{q(z_t|x_t,z_{t-1})}\left[\log p(x_t|z_t)\right]\right]
    >>> loss.eval({"x": torch.rand(3, 5, 4).round()}).shape       # 3 sequences of 5 steps
    torch.Size([3])

    Args:
        step: the loss of one step, per example.
        over: the name of the step index, printed in the sum (``"t"``; the number of steps prints in capitals).
        series: the names of the inputs read step by step along dim 1.
        carry: ``{carried name: source}``; a source is a variable's name (drawn in the step, or a series, e.g.
            ``{"x_prev": "x"}``) or a distribution generating one variable.
        initial: ``{carried name: input name, tensor or nn.Parameter}``, the values at the first step.
        mask: the name of a ``(batch, T)`` input, true (or 1) at the steps that count.
        length: the name of a ``(batch,)`` input of integer sequence lengths (instead of ``mask``).
        steps: the number of steps, where there is no series to read it from.
        marginalize: the name of a discrete variable of the step (a Categorical's, a Bernoulli's) to sum out of
            the whole sequence exactly, by the forward algorithm; see below.
        final: a loss added once after the last step, on the final carried values; prints after the sum with
            their subscript T: :math:`\sum_{t=1}^{T} [\dots] + \log p(x|c_T)`.
        present: the name of a 0/1 variable the step draws (event shape () or (1,)): a sequence goes on while it
            is 1.

    **Summing a discrete state out.** With ``marginalize="y"``, the step is a log-density
    :math:`\log p(x_t, y_t|y_{t-1})` given ``y`` (e.g. ``LogProb(p_x * p_y)`` with ``p_y`` the transition
    ``p(y|y_prev)``), and the loss is :math:`\log \sum_{y_{1:T}} \prod_{t=1}^{T} p(x_t,y_t|y_{t-1})`: the exact
    :math:`\log p(x_{1:T})` of a hidden Markov model, its value and gradient, with no draw. It is computed by the
    forward recursion :math:`\alpha_t(j) = \log \sum_k \exp(\alpha_{t-1}(k) + f_t(k, j))` over the K values
    of ``y``, the step evaluated on all :math:`K \times K` pairs :math:`(y_{t-1}, y_t)` of every step at once
    (the series enter with their time axis; what does not depend on t, such as the transition, is evaluated
    once): cost :math:`T K^2` values of the step instead of :math:`K^T` paths. Only the series and the
    carried state may change from step to step. ``y`` may be carried (once, as
    ``carry={"y_prev": "y"}`` with its initial value) or not (then each step sums over ``y_t`` on its own); the
    other carried variables may only be series (``{"x_prev": "x"}``). Padded steps (``mask``, ``length``) leave
    the sum as it was, wherever they are. For any other step loss the value is
    :math:`\log \sum_{y_{1:T}} \exp \sum_t \mathcal{L}_t`, which prints so. :meth:`posterior` and
    :meth:`most_probable` decode the state: its smoothed posterior at each step, its most probable path.

    >>> from pgm.distributions import Categorical
    >>> p_y = Categorical("p(y|y_prev)", net=lambda y_prev: {"logits": y_prev @ torch.eye(3)})
    >>> p_x = Categorical("p(x|y)", net=lambda y: {"logits": y @ torch.ones(3, 5)})
    >>> log_px = Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(3)},
    ...              marginalize="y")
    >>> print(log_px.latex())
    \log \sum_{y_{1:T}} \prod_{t=1}^{T} p(x_t,y_t|y_{t-1})

    Attributes:
        initial: an ``nn.Module`` holding the initial values given as tensors, by carried name
            (``loss.initial.z_prev``); move it with the distributions (``loss.initial.to(device)``).
    """

    def __init__(self, step, over="t", *, series=(), carry=None, initial=None, mask=None, length=None, steps=None,
                 marginalize=None, final=None, present=None):
        if not isinstance(step, Loss):
            raise TypeError(f"Sum takes the loss of one step, e.g. Sum(KL(q, prior) - E(q, LogProb(p)), ...); "
                            f"got {type(step).__name__}.")
        self.over = _identifier("Sum(over=...)", over)
        where = f"Sum over {over}"
        if final is not None and not isinstance(final, Loss):
            raise TypeError(f"{where}: final is the loss of the state after the last step, e.g. final=LogProb(p_x) "
                            f"with p(x|c) and carry={{'c_prev': 'c'}}; got {type(final).__name__}.")
        self.step, self.final = step, final
        self.children = (step,) if final is None else (step, final)
        self.series = _names(f"{where}: series", series)
        if not isinstance(carry or {}, dict):
            raise TypeError(f"{where}: carry must be a dict {{carried name: source}}, e.g. {{'z_prev': 'z'}}; got "
                            f"{type(carry).__name__}.")
        self.carry = dict(carry or {})
        for name in (mask, length):
            if name is not None:
                _identifier(f"{where}: mask/length", name)
        if mask is not None and length is not None:
            raise ValueError(f"{where}: give mask= or length=, not both.")
        self.mask, self.length = mask, length
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"{where}: steps must be a positive integer; got {steps!r}.")
        if not self.series and steps is None:
            raise ValueError(f"{where}: the number of steps comes from the series inputs; name them "
                             f"(series=['x'] for an input x of shape (batch, T, ...)) or give steps=T.")
        self.steps = steps
        self.marginalize = None if marginalize is None else _identifier(f"{where}: marginalize", marginalize)
        self.present = None if present is None else _identifier(f"{where}: present", present)
        self._check_carry(where)
        if self.present is not None and self.present not in self._step_drawn():
            drawn = list(dict.fromkeys(self._step_drawn())) or "nothing"
            raise ValueError(f"{where}: present={present!r}: no distribution of the step generates `{present}` (the "
                             f"step draws {drawn}); name the presence the step draws, e.g. present='z_pres' with "
                             f"E(q_pres, ...) over q(z_pres|...).")
        if self.marginalize is not None:
            self._check_marginalize(where)
        # the distributions whose draws a step may carry (asked of the step's context: Context.draws_of)
        self._drawers = _flat(self.step._distributions()) + self._carry_distributions
        self._may_score = self._draws_a_score()
        self._initial_names, self.initial = {}, nn.Module()
        self._check_initial(where, dict(initial or {}) if isinstance(initial, dict) or initial is None else initial)

    # ------------------------------------------------------------ checks
    def _step_drawn(self):
        """The variables the step's own distributions generate (drawn at each step)."""
        return [v for d in _flat(self.step._distributions()) for v in d.var]

    def _draws_a_score(self):
        """Whether a step may draw, without a reparameterized sampler, a variable the next steps depend on (a carried
        one, one a carried value is computed from, the presence): its score must then weigh them (``_unroll``)."""
        makers = _flat(self.step._distributions())
        wanted = {self._source(k) for k in self.carry} | ({self.present} if self.present else set())
        found = [d for d in makers if set(d.var) & wanted] + self._carry_distributions
        found += [d for c in {c for f in found for c in f.cond_var} for d in makers if c in d.var]
        return any(not d.has_reparam for d in found)

    def _check_carry(self, where):
        drawn = self._step_drawn()
        self._carry_distributions = []
        used = set(self.step._free()) | {v for d in _flat(self.step._distributions()) for v in d.cond_var}
        for name, source in self.carry.items():
            _identifier(f"{where}: carry", name)
            if name in self.series:
                raise ValueError(f"{where}: `{name}` is both a series and carried; a variable is read from the "
                                 f"inputs step by step or carried from the previous step, not both.")
            if isinstance(source, Distribution):
                if len(source.var) != 1:
                    raise ValueError(f"{where}: carry={{{name!r}: {source.prob_text}}}: a carried distribution must "
                                     f"generate one variable; it generates {source.var}.")
                if not source.has_sample:
                    raise ValueError(f"{where}: carry={{{name!r}: {source.prob_text}}}: {type(source).__name__} "
                                     f"cannot be sampled.")
                self._carry_distributions.append(source)
                used |= set(source.cond_var)
            elif isinstance(source, str):
                if source not in drawn and source not in self.series:
                    raise ValueError(
                        f"{where}: carry={{{name!r}: {source!r}}}: no distribution of the step generates `{source}` "
                        f"and it is not a series (the step draws {drawn or 'nothing'}; the series are "
                        f"{self.series or 'none'}). Carry a variable the step draws, a series, or a distribution: "
                        f"carry={{{name!r}: f}} with f generating it."
                    )
            else:
                raise TypeError(f"{where}: carry[{name!r}] must be a variable's name or a distribution; got "
                                f"{type(source).__name__}.")
        unused = [n for n in self.carry if n not in used]
        if unused:
            raise ValueError(f"{where}: the carried {unused} are not used by any distribution of the step; name "
                             f"them as a condition, e.g. q(z|x,{unused[0]}), or leave them out of carry.")

    def _check_marginalize(self, where):
        var = self.marginalize
        makers = [d for d in _flat(self.step._distributions()) if d.var == [var]]
        if not makers:
            raise ValueError(f"{where}: marginalize={var!r}: no distribution of the step generates `{var}` alone "
                             f"(it generates {self._step_drawn() or 'nothing'}); name the discrete variable to sum out, "
                             f"e.g. marginalize='y' with p(y|y_prev) in the step.")
        enumerable = [d for d in makers if d.has_enumerate_support]
        if not enumerable:
            raise ValueError(f"{where}: marginalize={var!r}: {type(makers[0]).__name__} {makers[0].prob_text} has no "
                             f"finite support to sum over; only a discrete variable (Categorical, Bernoulli) can be "
                             f"summed out exactly.")
        self._enumerator = enumerable[0]
        if self.final is not None or self.present is not None:
            raise ValueError(f"{where}: marginalize={var!r} sums over every path of `{var}` and draws nothing, so "
                             f"there is no final state nor presence draw; leave final= and present= out, or sample "
                             f"`{var}` (a Sum over E(q, ...)).")
        if var in self.series:
            raise ValueError(f"{where}: marginalize={var!r}: `{var}` is a series, read from the inputs; only a latent "
                             f"variable of the step is summed out.")
        if var not in self.step._free():
            raise ValueError(f"{where}: marginalize={var!r}: the step draws `{var}` itself (an expectation over it), "
                             f"while the sum runs over every value of it; write the step as a log-density given "
                             f"`{var}`, e.g. LogProb(p_x * p_y).")
        from_var = [name for name, source in self.carry.items() if source == var]
        if len(from_var) > 1:
            raise ValueError(f"{where}: marginalize={var!r}: {from_var} all carry `{var}`; the forward algorithm "
                             f"sums over a first-order chain, so carry it once (e.g. carry={{'{from_var[0]}': "
                             f"'{var}'}}).")
        other = [name for name, source in self.carry.items() if source != var and source not in self.series]
        if other:
            raise ValueError(f"{where}: marginalize={var!r}: the carried {other} come from draws or distributions, "
                             f"which a sum over every path of `{var}` cannot follow; carry only `{var}` and series "
                             f"(e.g. {{'x_prev': 'x'}}).")
        self._marginal_carry = from_var[0] if from_var else None

    def _check_initial(self, where, initial):
        if not isinstance(initial, dict):
            raise TypeError(f"{where}: initial must be a dict {{carried name: value}}, e.g. "
                            f"{{'z_prev': torch.zeros(8)}}; got {type(initial).__name__}.")
        for name, value in initial.items():
            if name not in self.carry:
                raise ValueError(f"{where}: initial names `{name}`, which is not carried; the carried variables are "
                                 f"{list(self.carry) or 'none'} (carry={{...}}).")
            if isinstance(value, str):
                self._initial_names[name] = _identifier(f"{where}: initial", value)
            elif isinstance(value, nn.Parameter):
                self.initial.register_parameter(name, value)
            elif isinstance(value, torch.Tensor):
                self.initial.register_buffer(name, value.detach().clone())
            else:
                raise TypeError(f"{where}: initial[{name!r}] must be an input's name, a tensor of the variable's "
                                f"event shape or an nn.Parameter; got {type(value).__name__}.")

    # ------------------------------------------------------------ formula
    def _source(self, name):
        source = self.carry[name]
        return source if isinstance(source, str) else source.var[0]

    def _has_initial(self, name):
        return name in self._initial_names or hasattr(self.initial, name)

    def _free(self):
        drawn = set(self._step_drawn())
        out = {}
        for k, v in self.step._free().items():
            if k == self.marginalize:
                continue
            if k in self.carry and not self._has_initial(k):
                out[k] = (f"Sum over {self.over}, as the initial value of the carried `{k}` (`{self._source(k)}` "
                          f"at step 0); pass it, or set initial={{'{k}': ...}}")
            elif k not in self.carry:
                out.setdefault(k, v)
        for d in self._carry_distributions:
            for c in d.required_var:
                if c not in self.carry and c not in drawn and c not in d.var:
                    out.setdefault(c, d.prob_text)
        for k, v in self._initial_names.items():
            out.setdefault(v, f"Sum over {self.over}, as the initial value of `{k}`")
        if self.final is not None:  # the final term reads the carried values, and the inputs for the rest
            carried = set(self.carry) | {self._source(k) for k in self.carry}
            for k, v in self.final._free().items():
                if k not in carried:
                    out.setdefault(k, v)
        return out

    def _distributions(self):
        out = Loss._distributions(self)
        return out + [d for d in self._carry_distributions if all(d is not o for o in out)]

    def _modules(self):
        own = [self.initial] if list(self.initial.parameters()) else []
        return own + Loss._modules(self)

    def _sym(self):
        return _sum_printing.sum_sym(self)

    def __repr__(self):
        carried = ", ".join(f"{k} <- {self._source(k)}" for k in self.carry)
        return f"<Sum over {self.over} (series {self.series}; carried {carried or 'none'}): {self}>"

    # ------------------------------------------------------------ evaluation
    def _eval(self, context):
        if self.marginalize is not None:
            return _forward_algorithm.log_likelihood(self, context)
        return _unroll.unroll(self, context)[0]

    def draws(self, inputs=None, **params):
        """Evaluate the steps on ``inputs`` and return every variable drawn in them and every carried one (its
        value as each step saw it), stacked along a time axis after the batch dim: ``{"z": (batch, T, ...),
        "z_prev": (batch, T, ...)}`` (e.g. the posterior trajectory of a state-space model)."""
        if self.marginalize is not None:
            raise ValueError(f"Sum over {self.over}: it sums `{self.marginalize}` out of every path (marginalize="
                             f"{self.marginalize!r}) and draws nothing; build the same Sum without marginalize, over "
                             f"E(q, ...), to draw trajectories.")
        context = Context.from_inputs(inputs, params)
        self.check_inputs(context.values, params, context.datasets)
        kept = _unroll.unroll(self, context, keep=True)[1]
        return {k: torch.stack(v, len(context.lead_shape)) for k, v in kept.items()}

    def posterior(self, inputs=None, **params):
        r"""The posterior of the summed-out state at every step given the whole sequence, :math:`p(y_t|x_{1:T})`
        (the forward-backward smoother), as its mean :math:`\mathbb{E}[y_t|x_{1:T}]` stacked along a time axis after
        the batch dim, ``(batch, T, *event)``: for a one-hot Categorical state, the probabilities of its K classes;
        for a Bernoulli state, the probability of each bit. Padded steps are 0. Only with ``marginalize``."""
        return _forward_algorithm.posterior(
            self, self._decoding_context("posterior() is the posterior", inputs, params))

    def most_probable(self, inputs=None, **params):
        r"""The most probable path of the summed-out state given the whole sequence,
        :math:`\arg\max_{y_{1:T}} \prod_t p(x_t,y_t|y_{t-1})` (the Viterbi algorithm), its values stacked along a
        time axis after the batch dim, ``(batch, T, *event)``: one-hot rows for a Categorical state, bits for a
        Bernoulli one. Padded steps are 0. Only with ``marginalize``."""
        return _forward_algorithm.most_probable(
            self, self._decoding_context("most_probable() is the best path", inputs, params))

    def _decoding_context(self, what, inputs, params):
        """The context of ``inputs`` for a method that decodes the summed-out state (``what`` it gives)."""
        if self.marginalize is None:
            raise ValueError(f"Sum over {self.over}: {what} of a state summed out of the sequence; build the Sum "
                             f"with marginalize='y' (y the discrete state).")
        context = Context.from_inputs(inputs, params)
        self.check_inputs(context.values, params, context.datasets)
        return context
