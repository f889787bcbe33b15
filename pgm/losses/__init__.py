"""Symbolic losses: ``(KL(q, prior) - E(q, LogProb(p))).mean()`` evaluates, differentiates and prints as LaTeX.

Terms: :class:`LogProb`, :class:`E`, :class:`KL`, :class:`Entropy`, :class:`CrossEntropy`, :class:`IWAE`,
:class:`LogMeanExp`, :func:`ELBO`; your own with :class:`Term` and :class:`Input`; functions of losses:
:func:`detach`, :func:`log`, :func:`exp`, :func:`sqrt`, :func:`logsumexp`, :func:`minimum`, :func:`maximum`.
"""
from ._adversarial import AdversarialDivergence, AdversarialKL, JensenShannon, Wasserstein
from ._base import Constant, Loss, Parameter
from ._baselines import MovingAverageBaseline
from ._estimators import Estimator, register_estimator, score_term
from ._functions import Input, LogMeanExp, Term, detach, exp, log, logsumexp, maximum, minimum, sqrt
from ._kl import register_kl
from ._sequential import Sum
from ._terms import E, ELBO, IWAE, KL, CrossEntropy, Entropy, LogProb

__all__ = ["Loss", "Parameter", "Constant", "Input", "Term", "LogProb", "E", "KL", "Entropy", "CrossEntropy",
           "IWAE", "LogMeanExp", "ELBO", "Sum", "MovingAverageBaseline", "Estimator", "register_estimator",
           "score_term", "register_kl",
           "detach", "log", "exp", "sqrt", "logsumexp", "minimum", "maximum",
           "JensenShannon", "Wasserstein", "AdversarialKL", "AdversarialDivergence"]
