r"""pgm: deep generative models written the way they are written on paper.

Three packages, used in this order:

- ``pgm.distributions``: named conditional distributions such as ``Normal("q(z|x)", net=encoder)``, whose
  network returns the parameters by name (``{"loc": ..., "scale": ...}``); ``p_x * prior`` is a joint.
- ``pgm.losses``: symbolic terms (``LogProb``, ``E``, ``KL``, ``Entropy``, ``IWAE``, ``ELBO``, ``Term``, ...)
  combined with ``+ - * /``; a loss evaluates on a dict of inputs, differentiates and prints as LaTeX.
- ``pgm.models``: ``Model(loss, distributions)`` turns a loss into an optimizer step: ``train``, ``test``,
  ``fit`` (checkpoints, resume), compiled or data-parallel.

``pgm.visualize`` draws the graphical model from the distributions; ``pgm.Context`` is what a term sees;
``pgm.Shared`` wraps a network several distributions call, so that it runs once per evaluation.

>>> import torch
>>> from pgm.distributions import Bernoulli, Normal
>>> from pgm.losses import E, KL, LogProb
>>> q = Normal("q(z|x)", net=lambda x: {"loc": x[:, :2], "scale": x[:, 2:].exp()})
>>> p = Bernoulli("p(x|z)", net=lambda z: {"logits": z.repeat(1, 2)})
>>> prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
>>> loss = (KL(q, prior) - E(q, LogProb(p))).mean()
>>> print(loss.latex())
\mathbb{E}_{p_{data}(x)}\left[D_{KL}\left[q(z|x)\|p(z)\right] - \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]\right]
>>> loss.eval({"x": torch.rand(8, 4).round()}).shape
torch.Size([])

Documentation: the ``docs/`` folder of the repository (``python -m sphinx -b html docs docs/_build/html``).
"""
from . import distributions, losses, models, visualize
from ._scope import Context
from ._shared import Shared

__version__ = "0.1.0"
__all__ = ["distributions", "losses", "models", "visualize", "Context", "Shared", "__version__"]
