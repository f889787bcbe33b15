"""Symbolic losses: ``(KL(q, prior) - E(q, LogProb(p))).mean()`` evaluates, differentiates and prints as LaTeX."""
from ._base import Constant, Loss, Parameter
from ._kl import register_kl
from ._terms import E, IWAE, KL, CrossEntropy, Entropy, LogProb

__all__ = ["Loss", "Parameter", "Constant", "LogProb", "E", "KL", "Entropy", "CrossEntropy", "IWAE", "register_kl"]
