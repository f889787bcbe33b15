"""VectorQuantizer: the nearest codebook vector by brute force, z_q with the straight-through gradient, the (B, D)
and (B, N, D) layouts, the draw shared inside an expectation, and its errors."""
import re

import pytest
import torch
from torch import nn

from pgm._errors import EventShapeError
from pgm.distributions import Deterministic, VectorQuantizer
from pgm.losses import E, LogProb, Var, detach, squared_norm

K, D = 6, 3


def brute_force_nearest(z_e, codebook):
    """argmin_j ||z_e - c_j|| for each vector of z_e (..., D), from every difference."""
    distances = (z_e.unsqueeze(-2) - codebook).pow(2).sum(-1)  # (..., K)
    return distances.argmin(-1)


@pytest.mark.parametrize("shape", [(7, D), (7, 4, D), (2, 5, 4, D)], ids=["(B, D)", "(B, N, D)", "(B, H, W, D)"])
def test_the_nearest_codebook_vector_and_the_straight_through_value(shape):
    torch.manual_seed(0)
    codebook = nn.Embedding(K, D)
    quantizer = VectorQuantizer("q(z_q,e|z_e)", codebook=codebook)
    z_e = torch.randn(shape, requires_grad=True)
    index = brute_force_nearest(z_e.detach(), codebook.weight.detach())
    assert torch.equal(quantizer.nearest(z_e), index)

    drawn = quantizer.sample({"z_e": z_e})
    assert drawn["e"].shape == drawn["z_q"].shape == shape
    torch.testing.assert_close(drawn["e"], codebook.weight[index])
    torch.testing.assert_close(drawn["z_q"], codebook.weight[index])  # z_q is e in value

    # straight through: d z_q / d z_e is the identity, and z_q does not reach the codebook
    upstream = torch.randn(shape)
    grad_z_e, grad_codebook = torch.autograd.grad((drawn["z_q"] * upstream).sum(), (z_e, codebook.weight),
                                                  allow_unused=True)
    torch.testing.assert_close(grad_z_e, upstream)
    assert grad_codebook is None
    # e reaches the codebook rows it picked, each summing the upstream gradients of the vectors that picked it
    grad_codebook = torch.autograd.grad((drawn["e"] * upstream).sum(), codebook.weight)[0]
    expected = torch.zeros(K, D).index_add_(0, index.flatten(), upstream.reshape(-1, D))
    torch.testing.assert_close(grad_codebook, expected)


def test_a_codebook_of_each_kind():
    vectors = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]])
    z_e = torch.tensor([[0.1, -0.2], [0.7, 0.9], [-1.5, 0.3]])
    for codebook in (vectors, nn.Parameter(vectors.clone()), nn.Embedding.from_pretrained(vectors, freeze=False)):
        quantizer = VectorQuantizer("q(z_q,e|z_e)", codebook=codebook)
        assert quantizer.nearest(z_e).tolist() == [0, 1, 2] and quantizer.codebook_size == 3
        learned = [p for p in quantizer.parameters()]
        assert len(learned) == (0 if codebook is vectors else 1)  # a plain tensor is a fixed buffer
    assert repr(quantizer).startswith("VectorQuantizer(\n  q(z_q,e|z_e): VectorQuantizer(codebook 3x2)")


def test_inside_an_expectation_the_draw_is_shared_and_carries_its_gradients():
    torch.manual_seed(1)
    net = nn.Linear(4, 2 * D)
    encoder = Deterministic("q(z_e|x)", net=lambda x: {"loc": net(x).reshape(-1, 2, D)})
    codebook = nn.Embedding(K, D)
    quantizer = VectorQuantizer("q(z_q,e|z_e)", codebook=codebook)
    z_q, z_e, e = Var("z_q"), Var("z_e"), Var("e")
    loss = E(encoder * quantizer, squared_norm(z_q - 2 * z_e) + squared_norm(detach(z_e) - e)
             + 0.3 * squared_norm(z_e - detach(e)), sample_shape=3)
    x = torch.randn(5, 4)
    value = loss.eval({"x": x})
    assert value.shape == (5,)

    # plain torch: the point mass repeats over the 3 draws, so their mean is the value at z_e(x)
    ze = net(x).reshape(-1, 2, D)
    ev = codebook.weight[brute_force_nearest(ze.detach(), codebook.weight.detach())]
    zq = ze + (ev - ze).detach()
    expected = ((zq - 2 * ze).pow(2).sum((-2, -1)) + (ze.detach() - ev).pow(2).sum((-2, -1))
                + 0.3 * (ze - ev.detach()).pow(2).sum((-2, -1)))
    torch.testing.assert_close(value, expected)
    parameters = [net.weight, net.bias, codebook.weight]
    torch.testing.assert_close(torch.autograd.grad(value.sum(), parameters),
                               torch.autograd.grad(expected.sum(), parameters))


def test_a_context_with_sample_dims_the_input_lacks():
    quantizer = VectorQuantizer("q(z_q,e|z_e)", codebook=torch.eye(D))
    z_e = torch.randn(5, D)
    drawn = quantizer.sample({"z_e": z_e}, sample_shape=4)
    assert drawn["z_q"].shape == drawn["e"].shape == (4, 5, D)
    assert torch.equal(drawn["e"][0], drawn["e"][3])
    assert quantizer.sample_mean({"z_e": z_e})["e"].shape == (5, D)


@pytest.mark.parametrize("make, error, message", [
    (lambda: VectorQuantizer("q(z_q|z_e)", codebook=torch.eye(D)), ValueError,
     "q(z_q|z_e): a VectorQuantizer gives two variables, the straight-through value and the codebook vector, given "
     "one, the encoder's output: write its signature as 'q(z_q,e|z_e)'."),
    (lambda: VectorQuantizer("q(z_q,e|z_e)", codebook=torch.ones(D)), ValueError,
     "q(z_q,e|z_e): the codebook must be K vectors of D dims, an nn.Embedding(K, D) or a floating-point (K, D) "
     "nn.Parameter or tensor; got a tensor of shape (3,) and dtype torch.float32."),
    (lambda: VectorQuantizer("q(z_q,e|z_e)", codebook=[[0.0, 1.0]]), ValueError,
     "the codebook must be K vectors of D dims, an nn.Embedding(K, D) or a floating-point (K, D) nn.Parameter or "
     "tensor; got list."),
    (lambda: VectorQuantizer("q(z_q,e|z_e)", codebook=torch.eye(D)).sample({"z_e": torch.randn(2, D, 4, 4)}),
     EventShapeError,
     "q(z_q,e|z_e) needs `z_e` with the codebook's dim D=3 last (codebook (K, D) = (3, 3)); got a tensor of shape "
     "(2, 3, 4, 4). A (batch, D, H, W) feature map goes to (batch, H, W, D) first: z_e.permute(0, 2, 3, 1)."),
    (lambda: VectorQuantizer("q(z_q,e|z_e)", codebook=torch.eye(D)).sample({"x": torch.randn(2, D)}),
     KeyError, "q(z_q,e|z_e) needs input `z_e`; got ['x']. Pass it in the inputs dict, or draw it first "
               "(E(q_e * quantizer, ...))."),
    (lambda: LogProb(VectorQuantizer("q(z_q,e|z_e)", codebook=torch.eye(D))), ValueError,
     "LogProb(q(z_q,e|z_e)): a vector quantizer is deterministic (a point mass at the nearest codebook vector) and "
     "has no density; use it inside E(...) only."),
])
def test_mistakes_are_named(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()
