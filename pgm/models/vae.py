"""The variational autoencoder (Kingma & Welling 2013) as a ready-made Model."""
import torch

from ..losses import KL, E, LogProb
from .model import Model


class VAE(Model):
    r"""Maximizes the ELBO :math:`-D_{KL}[q(z|x)\|p(z)] + \mathbb{E}_{q(z|x)}[\log p(x|z)]` (minimizes its negative).

    Args:
        encoder: q(z|x). decoder: p(x|z).
        regularizer: the loss added to the negative reconstruction term, e.g. ``KL(encoder, prior)``;
            or give ``prior`` and the analytic KL is used.
        other_distributions: further distributions to train.
    """

    def __init__(self, encoder, decoder, regularizer=None, prior=None, other_distributions=(),
                 optimizer=torch.optim.Adam, optimizer_params=None, **kwargs):
        if (regularizer is None) == (prior is None):
            raise ValueError("VAE: give exactly one of regularizer=KL(encoder, prior) or prior=prior.")
        if regularizer is None:
            regularizer = KL(encoder, prior)
        loss = (regularizer - E(encoder, LogProb(decoder))).mean()
        distributions = [encoder, decoder, *other_distributions]
        distributions += [d for d in regularizer.distributions if all(d is not o for o in distributions)]
        super().__init__(loss, distributions, optimizer=optimizer, optimizer_params=optimizer_params, **kwargs)
