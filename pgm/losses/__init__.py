"""Symbolic losses: ``(KL(q, prior) - E(q, LogProb(p))).mean()`` evaluates, differentiates and prints as LaTeX.

Terms: :class:`LogProb`, :class:`E`, :class:`KL`, :class:`Entropy`, :class:`CrossEntropy`, :class:`IWAE`,
:class:`LogMeanExp`, :func:`ELBO`; your own with :class:`Term` and :class:`Input`; functions of losses:
:func:`detach`, :func:`log`, :func:`exp`, :func:`sqrt`, :func:`logsumexp`, :func:`minimum`, :func:`maximum`;
what a term can take from the evaluation: :class:`ParametersOf`, :class:`TorchDistributionOf`;
variables inside formulas: :class:`Var` and its reductions :func:`squared_norm`, :func:`norm`, :func:`dot`.
"""
from ._adversarial import AdversarialDivergence, AdversarialKL, JensenShannon, Wasserstein
from ._base import Constant, Loss, Parameter
from ._baselines import MovingAverageBaseline
from ._estimators import Estimator, register_estimator, score_term
from ._functions import Input, LogMeanExp, Term, detach, exp, log, logsumexp, maximum, minimum, sqrt
from ._kl import register_kl
from ._sequential import Sum
from ._sources import ParametersOf, TorchDistributionOf
from ._terms import E, ELBO, IWAE, KL, CrossEntropy, Entropy, LogProb
from ._variables import Var, dot, norm, squared_norm

__all__ = ["Loss", "Parameter", "Constant", "Input", "Term", "LogProb", "E", "KL", "Entropy", "CrossEntropy",
           "IWAE", "LogMeanExp", "ELBO", "Sum", "MovingAverageBaseline", "Estimator", "register_estimator",
           "score_term", "register_kl",
           "detach", "log", "exp", "sqrt", "logsumexp", "minimum", "maximum",
           "Var", "squared_norm", "norm", "dot", "ParametersOf", "TorchDistributionOf",
           "JensenShannon", "Wasserstein", "AdversarialKL", "AdversarialDivergence"]
