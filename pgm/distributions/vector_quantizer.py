r"""The nearest vector of a learned codebook, with the straight-through gradient: VQ-VAE's quantizer."""
from __future__ import annotations

import torch
from torch import nn

from .._errors import EventShapeError, MissingInputError
from ._base import Distribution


class VectorQuantizer(Distribution):
    r"""``q(z_q,e|z_e)``: the codebook vector :math:`e` nearest to :math:`z_e`, and :math:`z_q` with the
    straight-through gradient (van den Oord, Vinyals & Kavukcuoglu, "Neural Discrete Representation Learning",
    2017). A point mass: deterministic, no density.

    .. math::

        k = \arg\min_j \left\|z_e - c_j\right\|_{2},\qquad e = c_k,\qquad
        z_q = z_e + \mathrm{sg}\left[e - z_e\right]

    so :math:`z_q` equals :math:`e` in value while its gradient passes to :math:`z_e` unchanged (the decoder's
    gradient reaches the encoder); :math:`e` carries the gradient to the codebook rows it picked (the codebook
    term :math:`\left\|\mathrm{sg}\left[z_{e}\right] - e\right\|_{2}^{2}` trains them, see
    :func:`~pgm.losses.squared_norm`).

    Layout: the codebook dim ``D`` is the **last** dim of ``z_e``; every dim before it is quantized separately.
    ``z_e`` of shape ``(batch, D)`` is one code per example, ``(batch, N, D)`` is ``N`` codes (``(batch, H, W, D)``
    a map of them). A convolutional encoder's ``(batch, D, H, W)`` output is moved to ``(batch, H, W, D)``
    first (``.permute(0, 2, 3, 1)``) inside its network. ``z_q`` and ``e`` have ``z_e``'s shape.

    >>> import torch
    >>> quantizer = VectorQuantizer("q(z_q,e|z_e)", codebook=torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    >>> quantizer.sample({"z_e": torch.tensor([[0.2, 0.1], [0.9, 0.7]])})["e"]
    tensor([[0., 0.],
            [1., 1.]])

    Args:
        signature: two variables given one: the straight-through value and the codebook vector, in that order,
            conditioned on the encoder's output, e.g. ``"q(z_q,e|z_e)"``.
        codebook: the ``K`` vectors of ``D`` dims: an ``nn.Embedding(K, D)`` or an ``nn.Parameter`` of shape
            ``(K, D)`` (learned, by the codebook term), or a tensor (fixed, kept as a buffer).
    """

    has_log_prob = False
    has_entropy = False
    no_log_prob_reason = ("a vector quantizer is deterministic (a point mass at the nearest codebook vector) and "
                          "has no density; use it inside E(...) only")

    def __init__(self, signature, codebook):
        super().__init__()
        self._init_names(signature)
        if len(self.var) != 2 or len(self.cond_var) != 1:
            raise ValueError(
                f"{self.prob_text}: a VectorQuantizer gives two variables, the straight-through value and the "
                f"codebook vector, given one, the encoder's output: write its signature as 'q(z_q,e|z_e)'."
            )
        weight = codebook.weight if isinstance(codebook, nn.Embedding) else codebook
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not weight.is_floating_point():
            shown = (f"a tensor of shape {tuple(weight.shape)} and dtype {weight.dtype}"
                     if isinstance(weight, torch.Tensor) else type(codebook).__name__)
            raise ValueError(f"{self.prob_text}: the codebook must be K vectors of D dims, an nn.Embedding(K, D) or "
                             f"a floating-point (K, D) nn.Parameter or tensor; got {shown}.")
        if isinstance(codebook, nn.Embedding):
            self.codebook = codebook
        elif isinstance(codebook, nn.Parameter):
            self.codebook_vectors = codebook
        else:
            self.register_buffer("codebook_vectors", codebook)

    @property
    def vectors(self) -> torch.Tensor:
        """The codebook, ``(K, D)``."""
        return self.codebook.weight if "codebook" in self._modules else self.codebook_vectors

    @property
    def codebook_size(self) -> int:
        """K, the number of codebook vectors."""
        return self.vectors.shape[0]

    def extra_repr(self) -> str:
        k, d = self.vectors.shape
        return f"{self.prob_text}: VectorQuantizer(codebook {k}x{d})"

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        r"""The index of the nearest codebook vector, :math:`\arg\min_j \|z_e - c_j\|_2`, for each vector of
        ``z_e`` ``(..., D)``: a long tensor ``(...)`` (e.g. to count the codes used)."""
        self._check_width(z_e)
        vectors = self.vectors.detach()
        flat = z_e.detach().reshape(-1, z_e.shape[-1])
        # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2: one matrix product, no (n, K, D) tensor of differences
        distances = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ vectors.T + vectors.pow(2).sum(-1)
        return distances.argmin(-1).reshape(z_e.shape[:-1])

    def _check_width(self, z_e):
        k, d = self.vectors.shape
        if z_e.dim() == 0 or z_e.shape[-1] != d:
            name = self.cond_var[0]
            raise EventShapeError(
                f"{self.prob_text} needs `{name}` with the codebook's dim D={d} last (codebook (K, D) = ({k}, {d})); "
                f"got a tensor of shape {tuple(z_e.shape)}. A (batch, D, H, W) feature map goes to "
                f"(batch, H, W, D) first: {name}.permute(0, 2, 3, 1)."
            )

    def _quantized(self, z_e):
        e = nn.functional.embedding(self.nearest(z_e), self.vectors)
        return {self.var[0]: z_e + (e - z_e).detach(), self.var[1]: e}

    def _sample(self, context, sample_shape=torch.Size(), reparam=True):
        name = self.cond_var[0]
        if name not in context:
            raise MissingInputError(f"{self.prob_text} needs input `{name}`; got {sorted(context.values) or 'nothing'}."
                                    f" Pass it in the inputs dict, or draw it first (E(q_e * quantizer, ...)).")

        def draw():
            z_e, lead = context[name], context.lead[name]
            values = self._quantized(z_e)
            # a point mass: every draw is the same value, broadcast over the sample dims asked for and over the
            # leading dims of the context that z_e lacks
            missing = context.lead_shape[: max(len(context.lead_shape) - lead, 0)]
            shape = torch.Size(sample_shape) + missing
            return {k: v.expand(shape + v.shape) for k, v in values.items()}, len(shape) + lead
        return context.drawn(self, sample_shape, reparam, draw)

    def _mean(self, context):
        values, _ = self._sample(context)
        return values
