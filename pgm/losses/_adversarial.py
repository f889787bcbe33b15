r"""Adversarial divergences: a discriminator network estimates a divergence that has no closed form.

``gan = JensenShannon(p, discriminator=D)`` is the generator's loss and ``gan.discriminator_loss`` the
discriminator's; each prints the paper's objective. The two are trained in turn, each over its own parameters
(:class:`~pgm.models.Model` with one ``Objective`` each), and neither reaches the other's parameters: the
discriminator's loss sees the generator's draws through a stop-gradient, and the generator's loss runs the
discriminator with its parameters held fixed, so its backward leaves no gradient on them.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..distributions import Distribution
from .._signature import latex_variable
from . import _printing
from ._base import Loss, as_loss


def _names(names):
    return ",".join(names)


class _Discriminator:
    """The network of a divergence, the variables it takes, how it prints and the checks on what it returns."""

    def __init__(self, where, network, names, symbol):
        if isinstance(network, Distribution):
            raise TypeError(
                f"{where}: discriminator= takes the network itself (an nn.Module or function of "
                f"{', '.join(names)} returning one logit per example), not a distribution; got "
                f"{network.prob_text}. Pass the module that computes its logits, e.g. discriminator=net."
            )
        if not callable(network):
            raise TypeError(f"{where}: discriminator= must be a network (an nn.Module) taking "
                            f"{', '.join(names)}; got {type(network).__name__}.")
        self.where, self.network, self.names, self.symbol = where, network, list(names), symbol

    @property
    def label(self):
        network = self.network
        return type(network).__name__ if isinstance(network, nn.Module) else getattr(network, "__name__", "network")

    def latex(self, names=None):
        return f"{self.symbol}({_names(names or self.names)})"

    def __call__(self, values, lead_shape, frozen=False):
        """The network on ``values`` (name -> tensor, each ``(*lead_shape, *event)``): ``lead_shape`` values.

        ``frozen``: run it with its parameters detached, so a backward through the result reaches its inputs only.
        """
        flat = [values[n].reshape((-1,) + values[n].shape[len(lead_shape):]) for n in self.names]
        count = flat[0].shape[0]
        if frozen and isinstance(self.network, nn.Module):
            detached = {k: v.detach() for k, v in self.network.named_parameters()}
            out = torch.func.functional_call(self.network, detached, tuple(flat))
        else:
            out = self.network(*flat)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"{self.where}: the discriminator {self.label} must return a tensor, one logit per example; it "
                f"returned {type(out).__name__}. Return the last layer's output itself (e.g. from nn.Linear(hidden, "
                f"1)), not a dict of parameters."
            )
        if tuple(out.shape) not in ((count,), (count, 1)):
            shapes = ", ".join(f"`{n}` of shape {tuple(f.shape)}" for n, f in zip(self.names, flat))
            raise ValueError(
                f"{self.where}: the discriminator {self.label} must return one value per example, shape ({count},) "
                f"or ({count}, 1), given {shapes}; it returned shape {tuple(out.shape)}. End the network with a "
                f"layer of one output, e.g. nn.Linear(hidden, 1)."
            )
        return out.reshape(lead_shape)


def _lead_values(context, names, draw=None):
    """The values of ``names`` from ``context`` (and the ``draw`` context), expanded to one common lead shape."""
    sources = [draw if draw is not None and n in draw.values else context for n in names]
    lead_shape = draw.lead_shape if draw is not None else context.lead_shape
    values = {}
    for n, s in zip(names, sources):
        v = s[n]
        lead = s.lead.get(n, 1)
        same = tuple(v.shape[:lead]) == tuple(lead_shape)
        values[n] = v if same else v.expand(tuple(lead_shape) + tuple(v.shape[lead:]))
    return values, lead_shape


class _Critic(Loss):
    r"""``f(D(...))`` on the data (``source=None``) or on a draw of ``source``: one value per example, or with
    ``reduce`` their batch mean (the expectation itself). Prints :math:`\mathbb{E}_{source}\left[f(D(x))\right]`."""

    def __init__(self, critic, source, fn, latex, text, data_text, reduce, detach_draw=False, frozen=False):
        self.critic, self.source, self.fn = critic, source, fn
        self.printed, self.data_text = (latex, text), data_text
        self.reduce, self.detach_draw, self.frozen = reduce, detach_draw, frozen

    def _eval(self, context):
        if self.reduce:  # an expectation over the data, a data-set average itself: evaluated per example
            context = context.over_data()
        if self.source is None:
            values, lead_shape = _lead_values(context, self.critic.names)
        else:
            draw = self.source.sample(context)
            values, lead_shape = _lead_values(context, self.critic.names, draw)
            if self.detach_draw:
                values = {n: v.detach() if n in self.source.var else v for n, v in values.items()}
        value = self.fn(self.critic(values, lead_shape, self.frozen))
        return value.mean() if self.reduce else value

    def _sym(self):
        if self.source is None:  # the data: p_{data}(x) in LaTeX, p_data(x) in text, as a reduction prints it
            shown, where = self.data_text, f"p_data({_names(self.critic.names)})"
        else:
            shown, where = _printing.signature(self.source)
        latex, text = self.printed
        return _printing.Term(rf"\mathbb{{E}}_{{{shown}}}\left[{latex}\right]", f"E_{where}[{text}]")

    def _free(self):
        out = {}
        if self.source is not None:
            out.update({v: self.source.prob_text for v in self.source.required_var})
        for n in self.critic.names:
            if self.source is None or n not in self.source.var:
                out.setdefault(n, f"{self.critic.where} (its discriminator takes `{n}`)")
        return out

    def _distributions(self):
        return [] if self.source is None else [self.source]

    def _modules(self):
        return [] if self.frozen or not isinstance(self.critic.network, nn.Module) else [self.critic.network]


class _GradientPenalty(Loss):
    r""":math:`\mathbb{E}_{\hat{x}}\left[(\lVert\nabla_{\hat{x}} D(\hat{x})\rVert_2 - 1)^2\right]` at
    :math:`\hat{x} = \epsilon x + (1 - \epsilon)\tilde{x}`, :math:`\epsilon \sim U[0, 1]` per example, between
    the data (or a draw of ``target``) and a draw of ``p`` (Gulrajani et al. 2017)."""

    def __init__(self, critic, p, target, reduce):
        self.critic, self.p, self.target, self.reduce = critic, p, target, reduce

    def _eval(self, context):
        if self.reduce:  # as _Critic's: over the data's examples
            context = context.over_data()
        fake = self.p.sample(context)
        real = self.target.sample(context) if self.target is not None else context
        fake_values, lead_shape = _lead_values(context, self.critic.names, fake)
        real_values, _ = _lead_values(context, self.critic.names, real if self.target is not None else None)
        mixed = {}
        for n in self.critic.names:
            if n not in self.p.var:  # a condition: the same on both sides
                mixed[n] = fake_values[n]
                continue
            a, b = real_values[n].detach(), fake_values[n].detach()
            if a.shape != b.shape:
                a, b = torch.broadcast_tensors(a, b)
            eps = torch.rand(tuple(lead_shape) + (1,) * (a.dim() - len(lead_shape)), dtype=a.dtype, device=a.device)
            mixed[n] = (eps * a + (1 - eps) * b).requires_grad_(True)
        generated = [mixed[n] for n in self.critic.names if n in self.p.var]
        training = torch.is_grad_enabled()
        with torch.enable_grad():  # the penalty is a gradient: it needs the critic's graph under no_grad too
            out = self.critic(mixed, lead_shape)
            grads = torch.autograd.grad(out.sum(), generated, create_graph=training)
        squared = sum(g.reshape(tuple(lead_shape) + (-1,)).pow(2).sum(-1) for g in grads)
        value = (squared.sqrt() - 1).pow(2)  # sqrt(0) has an infinite derivative; a zero gradient norm is rare
        return value.mean() if self.reduce else value

    def _sym(self):
        hat = [rf"\hat{{{latex_variable(n)}}}" if n in self.p.var else latex_variable(n) for n in self.critic.names]
        grad = ",".join(h for h, n in zip(hat, self.critic.names) if n in self.p.var)
        norm = rf"\left\lVert \nabla_{{{grad}}} {self.critic.latex(hat)} \right\rVert_{{2}}"
        drawn = ",".join(f"hat{{{n}}}" for n in self.critic.names if n in self.p.var)
        return _printing.Term(rf"\mathbb{{E}}_{{{grad}}}\left[\left({norm} - 1\right)^{{2}}\right]",
                              f"E_{drawn}[(|grad D| - 1)^2]")

    def _free(self):
        out = {v: self.p.prob_text for v in self.p.required_var}
        if self.target is not None:
            out.update({v: self.target.prob_text for v in self.target.required_var})
        for n in self.critic.names:
            if self.target is None or n not in self.target.var:
                out.setdefault(n, f"{self.critic.where} (its discriminator takes `{n}`)")
        return out

    def _distributions(self):
        return [self.p] + ([self.target] if self.target is not None else [])

    def _modules(self):
        return [self.critic.network] if isinstance(self.critic.network, nn.Module) else []


class _Prefixed(Loss):
    """A loss printed with an operator in front, e.g. ``\\max_{D}``; evaluates to the loss itself."""

    def __init__(self, loss, latex, text):
        self.children, self.printed = (loss,), (latex, text)

    def _eval(self, context):
        return self.children[0]._eval(context)

    def _sym(self):
        return _printing.Wrapped(self.printed[0], "", self.printed[1], "", self.children[0]._sym())


class AdversarialDivergence(Loss):
    """The generator's side of an adversarial divergence between ``p`` and the data (or a distribution ``q``);
    ``discriminator_loss`` is the discriminator's side. See :class:`JensenShannon`, :class:`Wasserstein` and
    :class:`AdversarialKL`.

    Attributes:
        p: the distribution trained to match the data (the generator).
        q: the distribution it is compared with, or ``None`` for the data.
        discriminator: the network.
        discriminator_loss: the loss the discriminator minimizes (a :class:`~pgm.losses.Loss`).
        generator_loss: the loss ``p`` minimizes: this divergence itself.
    """

    def __init__(self, p, q, discriminator, symbol="D"):
        where = f"{type(self).__name__}({p.prob_text if isinstance(p, Distribution) else '?'})"
        for name, d in (("p", p), ("q", q)):
            if d is not None and not isinstance(d, Distribution):
                raise TypeError(f"{where}: {name} must be a pgm distribution (the generator, e.g. the marginal "
                                f"(p_x * prior).marginalize_var('z')); got {type(d).__name__}.")
        if q is not None and sorted(q.var) != sorted(p.var):
            raise ValueError(f"{where}: p and q must be distributions of the same variables; {p.prob_text} "
                             f"generates {p.var}, {q.prob_text} generates {q.var}. Rename one with replace_var.")
        if not p.has_sample or (q is not None and not q.has_sample):
            unsampled = p if not p.has_sample else q
            raise ValueError(f"{where}: {unsampled.prob_text} cannot be sampled, and an adversarial divergence "
                             f"compares draws; pass a distribution that can be sampled.")
        if not p.has_reparam:
            raise ValueError(
                f"{where}: {p.prob_text} ({type(p).__name__}) has no reparameterized sampler, so no gradient would "
                f"reach the generator through the discriminator; use a continuous generator (Normal, "
                f"Deterministic, a Flow) or a relaxed family (RelaxedBernoulli, RelaxedCategorical)."
            )
        conditions = []
        for d in (p, q):
            if d is not None:
                conditions.extend(c for c in d.required_var if c not in p.var and c not in conditions)
        self.p, self.q = p, q
        self.discriminator = discriminator
        self._critic = _Discriminator(where, discriminator, list(p.var) + conditions, symbol)
        self._data_text = f"p_{{data}}({_names(self._critic.names)})"
        self._reduce = q is None  # against the data: expectations over it, so one number for the batch
        self.generator_loss = self  # the divergence is the generator's loss
        self.discriminator_loss = self._build()

    def _build(self):
        raise NotImplementedError

    def _critic_term(self, source, fn, latex, text, **kwargs):
        return _Critic(self._critic, source, fn, latex, text, self._data_text, self._reduce, **kwargs)

    def _eval(self, context):
        return self.children[0]._eval(context)

    def _sym(self):
        return self.children[0]._sym()


def _log_d(t):
    return F.logsigmoid(t)


def _log_one_minus_d(t):
    return F.logsigmoid(-t)


class JensenShannon(AdversarialDivergence):
    r"""The GAN's divergence (Goodfellow et al. 2014): a discriminator :math:`D` tells the data from draws of the
    generator ``p``, and ``p`` is trained against it.

    The discriminator maximizes

    .. math:: V(D, p) = \mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + \mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right],

    whose maximum is :math:`2 D_{JS}[p_{data}\|p] - \log 4`; ``discriminator_loss`` is :math:`-V` (the binary
    cross-entropy of the labels data = 1, draws = 0) with the draws held fixed (a stop-gradient), so a
    discriminator step never reaches ``p``. The divergence itself is the generator's loss:
    :math:`\max_D V(D, p)`, estimated with the current :math:`D`; its gradient reaches ``p`` only (the
    discriminator runs with its parameters held fixed). With ``non_saturating=True`` the generator minimizes
    :math:`-\mathbb{E}_{p(x)}[\log D(x)]` instead, the paper's advice for early training, when
    :math:`\log(1 - D)` saturates.

    Against the data (``q=None``) each expectation is one number for the batch (the mean over its examples
    and over as many draws of ``p``); train on it directly, no ``.mean()``.

    >>> import torch
    >>> from torch import nn
    >>> from pgm.distributions import Deterministic, Normal
    >>> generator = Deterministic("p(x|z)", net=lambda z: {"loc": z})
    >>> prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    >>> p = (generator * prior).marginalize_var("z")
    >>> gan = JensenShannon(p, discriminator=nn.Linear(2, 1))
    >>> print(gan.latex())
    \max_{D} \mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + \mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right]
    >>> print(gan.discriminator_loss.latex())
    - (\mathbb{E}_{p_{data}(x)}\left[\log D(x)\right] + \mathbb{E}_{p(x)}\left[\log\left(1 - D(x)\right)\right])
    >>> gan.eval({"x": torch.randn(8, 2)}).shape
    torch.Size([])

    Args:
        p: the generator, a distribution of the data's variables that can be sampled with gradients (e.g. the
            marginal ``(p_x * prior).marginalize_var("z")`` of a :class:`~pgm.distributions.Deterministic` or
            :class:`~pgm.distributions.Normal` ``p(x|z)``).
        q: ``None`` (default) to compare ``p`` with the data given as inputs, or a distribution of the same
            variables (then each term is per example, and ``discriminator_loss`` its mean over the batch).
        discriminator: a network (an ``nn.Module``) taking ``p``'s variables, then the conditioning variables
            ``p`` and ``q`` are given (e.g. ``y`` for ``p(x|y)``), each ``(batch, *event)``, and returning one
            logit per example, ``(batch,)`` or ``(batch, 1)``: :math:`D(x) = \sigma(\text{logit})`.
        non_saturating: the generator's loss :math:`-\mathbb{E}_{p(x)}[\log D(x)]` instead of :math:`\max_D V`.
    """

    def __init__(self, p, q=None, *, discriminator, non_saturating=False):
        if non_saturating not in (True, False):
            raise ValueError(f"JensenShannon: non_saturating must be True or False; got {non_saturating!r}.")
        self.non_saturating = non_saturating
        super().__init__(p, q, discriminator)

    def _terms(self, frozen, detach_draw):
        d = self._critic.latex()
        real = self._critic_term(self.q, _log_d, rf"\log {d}", f"log {d}", frozen=frozen, detach_draw=detach_draw)
        fake = self._critic_term(self.p, _log_one_minus_d, rf"\log\left(1 - {d}\right)", f"log(1 - {d})",
                                 frozen=frozen, detach_draw=detach_draw)
        return real, fake

    def _build(self):
        if self.non_saturating:
            d = self._critic.latex()
            self.children = (-self._critic_term(self.p, _log_d, rf"\log {d}", f"log {d}", frozen=True),)
        else:
            real, fake = self._terms(frozen=True, detach_draw=False)
            self.children = (_Prefixed(real + fake, r"\max_{D} ", "max_D "),)
        real, fake = self._terms(frozen=False, detach_draw=True)
        return _reduced(-(real + fake), self._reduce)


class AdversarialKL(AdversarialDivergence):
    r"""The Kullback-Leibler divergence :math:`D_{KL}[p\|q]` estimated with a density-ratio discriminator (the
    adversarial KL of FactorVAE, Kim and Mnih 2018, and of adversarial variational Bayes, Mescheder et al. 2017).

    The discriminator :math:`D` tells draws of ``p`` (label 1) from draws of ``q`` or the data (label 0); at its
    optimum :math:`D^* = p / (p + q)`, so :math:`\log \frac{D^*}{1 - D^*} = \log \frac{p}{q}` and

    .. math:: D_{KL}[p\|q] \approx \mathbb{E}_{p}\left[\log \frac{D(x)}{1 - D(x)}\right],

    the generator's loss (the discriminator's logit, averaged over draws of ``p``; the discriminator runs with its
    parameters held fixed). ``discriminator_loss`` is
    :math:`-\left(\mathbb{E}_{p}[\log D] + \mathbb{E}_{q}[\log(1 - D)]\right)`, with the draws of ``p`` held fixed.

    For adversarial variational Bayes, ``AdversarialKL(q_z, prior, discriminator=T)`` with ``q_z`` the encoder
    ``q(z|x)`` is per example, :math:`\mathbb{E}_{q(z|x)}\left[\log \frac{D(z,x)}{1 - D(z,x)}\right]` with
    ``T(z, x)`` (the conditions follow the variables), and stands for ``KL(q_z, prior)`` in an ELBO.

    >>> import torch
    >>> from torch import nn
    >>> from pgm.distributions import Normal
    >>> q = Normal("q(z|x)", net=lambda x: {"loc": x, "scale": torch.ones_like(x)})
    >>> prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    >>> class T(nn.Linear):
    ...     def forward(self, z, x):
    ...         return super().forward(torch.cat([z, x], -1))
    >>> kl = AdversarialKL(q, prior, discriminator=T(4, 1))
    >>> print(kl.latex())
    \mathbb{E}_{q(z|x)}\left[\log \frac{D(z,x)}{1 - D(z,x)}\right]
    >>> kl.eval({"x": torch.randn(8, 2)}).shape
    torch.Size([8])

    Args:
        p: the distribution the divergence is taken from (sampled with gradients).
        q: the distribution of the same variables it is compared with, or ``None`` for the data.
        discriminator: a network taking ``p``'s variables then the conditioning variables of ``p`` and ``q``,
            returning one logit per example, ``(batch,)`` or ``(batch, 1)``.
    """

    def __init__(self, p, q=None, *, discriminator):
        super().__init__(p, q, discriminator)

    def _build(self):
        d = self._critic.latex()
        ratio = self._critic_term(self.p, lambda t: t, rf"\log \frac{{{d}}}{{1 - {d}}}", f"log({d}/(1 - {d}))",
                                  frozen=True)
        self.children = (ratio,)
        mine = self._critic_term(self.p, _log_d, rf"\log {d}", f"log {d}", detach_draw=True)
        other = self._critic_term(self.q, _log_one_minus_d, rf"\log\left(1 - {d}\right)", f"log(1 - {d})",
                                  detach_draw=True)
        return _reduced(-(mine + other), self._reduce)


class Wasserstein(AdversarialDivergence):
    r"""The Wasserstein-1 distance in its dual form (Arjovsky et al. 2017), the critic :math:`D` kept close to
    1-Lipschitz by a gradient penalty (WGAN-GP, Gulrajani et al. 2017).

    The generator's loss is the distance, estimated with the current critic:

    .. math:: \max_{\lVert D \rVert_{L} \leq 1} \mathbb{E}_{p_{data}(x)}\left[D(x)\right] - \mathbb{E}_{p(x)}\left[D(x)\right]

    (its gradient reaches ``p`` only; the critic runs with its parameters held fixed). ``discriminator_loss``
    is the critic's loss of Gulrajani et al.:

    .. math:: \mathbb{E}_{p(x)}\left[D(x)\right] - \mathbb{E}_{p_{data}(x)}\left[D(x)\right]
              + \lambda \mathbb{E}_{\hat{x}}\left[\left(\lVert \nabla_{\hat{x}} D(\hat{x}) \rVert_2 - 1\right)^2\right],

    :math:`\hat{x} = \epsilon x + (1 - \epsilon) \tilde{x}` between a data point :math:`x` and a draw
    :math:`\tilde{x}` of ``p`` (held fixed), :math:`\epsilon \sim U[0, 1]` per example. The critic takes no
    batch normalization (the penalty is per example).

    >>> import torch
    >>> from torch import nn
    >>> from pgm.distributions import Deterministic, Normal
    >>> generator = Deterministic("p(x|z)", net=lambda z: {"loc": z})
    >>> p = (generator * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])).marginalize_var("z")
    >>> wgan = Wasserstein(p, discriminator=nn.Linear(2, 1))
    >>> print(wgan.latex())
    \max_{\lVert D \rVert_{L} \leq 1} \mathbb{E}_{p_{data}(x)}\left[D(x)\right] - \mathbb{E}_{p(x)}\left[D(x)\right]
    >>> print(wgan.discriminator_loss.latex())
    \mathbb{E}_{p(x)}\left[D(x)\right] - \mathbb{E}_{p_{data}(x)}\left[D(x)\right] + 10 \mathbb{E}_{\hat{x}}\left[\left(\left\lVert \nabla_{\hat{x}} D(\hat{x}) \right\rVert_{2} - 1\right)^{2}\right]

    Args:
        p: the generator (sampled with gradients).
        q: ``None`` (default) for the data, or a distribution of the same variables.
        discriminator: the critic, a network taking ``p``'s variables then the conditioning variables of ``p``
            and ``q``, returning one real value per example, ``(batch,)`` or ``(batch, 1)``.
        gradient_penalty: :math:`\lambda`, a number (default 10, the paper's) or a
            :class:`~pgm.losses.Parameter`; 0 leaves the penalty out.
    """

    def __init__(self, p, q=None, *, discriminator, gradient_penalty=10.0):
        if not isinstance(gradient_penalty, Loss) and (
                isinstance(gradient_penalty, bool) or not isinstance(gradient_penalty, (int, float))
                or not math.isfinite(gradient_penalty) or gradient_penalty < 0):
            raise ValueError(f"Wasserstein: gradient_penalty must be a number >= 0 (the paper's is 10) or a "
                             f"Parameter; got {gradient_penalty!r}.")
        self.gradient_penalty = gradient_penalty
        super().__init__(p, q, discriminator)

    def _build(self):
        d = self._critic.latex()
        identity = lambda t: t  # noqa: E731

        def terms(frozen, detach_draw):
            real = self._critic_term(self.q, identity, d, d, frozen=frozen, detach_draw=detach_draw)
            fake = self._critic_term(self.p, identity, d, d, frozen=frozen, detach_draw=detach_draw)
            return real, fake

        real, fake = terms(frozen=True, detach_draw=False)
        self.children = (_Prefixed(real - fake, r"\max_{\lVert D \rVert_{L} \leq 1} ", "max_{|D|_L <= 1} "),)
        real, fake = terms(frozen=False, detach_draw=True)
        critic = fake - real
        if isinstance(self.gradient_penalty, Loss) or self.gradient_penalty != 0:
            penalty = _GradientPenalty(self._critic, self.p, self.q, self._reduce)
            critic = critic + as_loss(self.gradient_penalty) * penalty
        return _reduced(critic, self._reduce)


def _reduced(loss, reduced):
    """``loss`` as one number for the batch: itself if its terms are averaged already, else its mean."""
    return loss if reduced else loss.mean()


__all__ = ["AdversarialDivergence", "JensenShannon", "Wasserstein", "AdversarialKL"]
