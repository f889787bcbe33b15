"""Flow layers: each log-determinant against log|det J| from autograd (float64, per example), inverse(forward(x))
== x, the invertibility constraints, data-dependent and running statistics, masks and their errors."""
import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian
from torch.distributions.transforms import AffineTransform, TanhTransform

from pgm.distributions.flows import (ActNorm, AffineCoupling, BatchNormFlow, Flatten, InvertibleConv1x1, Logit,
                                     Permutation, Planar, Radial, Reverse, Shuffle, Squeeze, TransformLayer,
                                     Unsqueeze, bits_per_dim, make_mask)

F64, N = torch.float64, 3


def randomize(layer, scale=0.5):
    """Random parameters everywhere (the couplings' zero-initialized last layers included)."""
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return layer


class Amortized(nn.Module):
    """A network of x (4,) returning a layer's parameters by name."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes
        self.linear = nn.Linear(4, sum(sizes.values()), dtype=F64)

    def forward(self, x):
        return dict(zip(self.sizes, self.linear(x).split(list(self.sizes.values()), -1)))


class CondNet(nn.Module):
    """The network of a conditional coupling on vectors of 4: (m * x, c) -> (s, t)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4 + 4, 8, dtype=F64)

    def forward(self, x, c):
        return self.linear(torch.cat([x, c], -1)).tanh().chunk(2, -1)


def _batchnorm(features):
    layer = randomize(BatchNormFlow(features)).double().eval()
    layer.running_mean.normal_()
    layer.running_var.uniform_(0.5, 2.0)
    return layer


def _actnorm(features, shape):
    layer = ActNorm(features).double()
    layer(torch.randn(8, *shape, dtype=F64) * 3 + 1)  # the data-dependent initialization
    return randomize(layer, 0.3)


# name -> (a function building the layer in float64, the event shape, the conditions' shapes)
LAYERS = {
    "planar": (lambda: randomize(Planar(3), 1.0).double(), (3,), []),
    "planar_amortized": (lambda: Planar(3, cond_var="x", net=Amortized({"u": 3, "w": 3, "b": 1})), (3,), [(4,)]),
    "radial": (lambda: randomize(Radial(3), 1.0).double(), (3,), []),
    "radial_amortized": (lambda: Radial(3, cond_var="x", net=Amortized({"z0": 3, "alpha": 1, "beta": 1})), (3,),
                         [(4,)]),
    "coupling_half": (lambda: randomize(AffineCoupling(4, "half", hidden=8)).double(), (4,), []),
    "coupling_alternating": (lambda: randomize(AffineCoupling(4, "alternating", parity=1, hidden=8)).double(),
                             (4,), []),
    "coupling_unclamped": (lambda: randomize(AffineCoupling(4, "half", hidden=8, clamp=None)).double(), (4,), []),
    "coupling_conditional": (lambda: randomize(AffineCoupling(4, cond_var="x", cond_features=4, hidden=8)).double(),
                             (4,), [(4,)]),
    "coupling_own_net": (lambda: AffineCoupling(4, "half", cond_var="x", net=CondNet()).double(), (4,), [(4,)]),
    "coupling_checkerboard": (lambda: randomize(AffineCoupling((2, 4, 4), "checkerboard", hidden=4)).double(),
                              (2, 4, 4), []),
    "coupling_channel": (lambda: randomize(AffineCoupling((4, 2, 2), "channel", parity=1, hidden=4)).double(),
                         (4, 2, 2), []),
    "coupling_image_conditional": (lambda: randomize(AffineCoupling((2, 2, 2), "checkerboard", cond_var="x",
                                                                    cond_features=4, hidden=4)).double(),
                                   (2, 2, 2), [(4,)]),
    "permutation": (lambda: Permutation([2, 0, 1]), (3,), []),
    "reverse_image": (lambda: Reverse(), (3, 2, 2), []),
    "shuffle": (lambda: Shuffle(5), (5,), []),
    "conv1x1_lu": (lambda: randomize(InvertibleConv1x1(3), 0.7).double(), (3, 2, 2), []),
    "conv1x1_plain": (lambda: InvertibleConv1x1(3, lu=False).double(), (3, 2, 2), []),
    "conv1x1_vector": (lambda: randomize(InvertibleConv1x1(3), 0.7).double(), (3,), []),
    "batchnorm_vector": (lambda: _batchnorm(3), (3,), []),
    "batchnorm_image": (lambda: _batchnorm(2), (2, 2, 2), []),
    "actnorm_vector": (lambda: _actnorm(3, (3,)), (3,), []),
    "actnorm_image": (lambda: _actnorm(2, (2, 2, 2)), (2, 2, 2), []),
    "squeeze": (lambda: Squeeze(), (2, 4, 4), []),
    "unsqueeze": (lambda: Unsqueeze(), (8, 2, 2), []),
    "flatten": (lambda: Flatten((2, 3, 3)), (2, 3, 3), []),
    "logit": (lambda: Logit(dequantize=False), (1, 3, 3), []),
    "tanh": (lambda: TransformLayer(TanhTransform()), (3,), []),
    "affine_transform": (lambda: TransformLayer(AffineTransform(0.5, torch.tensor([2.0, -0.5, 1.5], dtype=F64))),
                         (3,), []),
}


def _inputs(name, shape, conds):
    x = torch.randn(N, *shape, dtype=F64)
    if name == "logit":
        x = torch.rand(N, *shape, dtype=F64) * 255
    return x, [torch.randn(N, *c, dtype=F64) for c in conds]


@pytest.mark.parametrize("name", list(LAYERS))
def test_log_det_is_log_abs_det_of_the_jacobian(name):
    build, shape, cond_shapes = LAYERS[name]
    layer = build()
    x, cond = _inputs(name, shape, cond_shapes)
    y, log_det = layer(x, *cond)
    assert log_det.shape == (N,) and y.shape[0] == N
    for i in range(N):
        one = [c[i:i + 1] for c in cond]
        jac = jacobian(lambda v: layer(v.reshape(1, *shape), *one)[0].reshape(-1), x[i].reshape(-1))
        assert jac.shape[0] == jac.shape[1]  # every layer keeps the dimension
        torch.testing.assert_close(log_det[i], torch.linalg.slogdet(jac)[1], rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", list(LAYERS))
def test_inverse_undoes_forward(name):
    build, shape, cond_shapes = LAYERS[name]
    layer = build()
    x, cond = _inputs(name, shape, cond_shapes)
    y, log_det = layer(x, *cond)
    if not layer.has_inverse:
        assert name.startswith("planar")
        return
    x_back, log_det_back = layer.inverse(y, *cond)
    torch.testing.assert_close(x_back, x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(log_det_back, -log_det)
    assert tuple(layer.out_shape(shape)) == tuple(y.shape[1:]) and tuple(layer.in_shape(y.shape[1:])) == shape


def test_planar_keeps_its_invertibility_constraint():
    layer = Planar(2).double()
    with torch.no_grad():  # w.u = -4 < -1: the reparametrized u_hat has w.u_hat >= -1
        layer.w.copy_(torch.tensor([2.0, 0.0]))
        layer.u.copy_(torch.tensor([-2.0, 1.0]))
        layer.b.fill_(0.0)
    z = torch.zeros(1, 2, dtype=F64)  # where tanh' = 1, the determinant 1 + w.u_hat is smallest
    _, log_det = layer(z)
    assert torch.isfinite(log_det).all()
    wu = -4.0
    u_hat_w = wu + (math.log1p(math.exp(wu)) - 1 - wu) * 4.0 / 4.0
    torch.testing.assert_close(log_det, torch.tensor([math.log(1 + u_hat_w)], dtype=F64))
    assert u_hat_w > -1


def test_radial_keeps_beta_above_minus_alpha():
    layer = Radial(2).double()
    with torch.no_grad():
        layer.beta.fill_(-30.0)  # unconstrained beta far below -alpha
    z = torch.randn(5, 2, dtype=F64)
    y, log_det = layer(z)
    assert torch.isfinite(log_det).all()
    torch.testing.assert_close(layer.inverse(y)[0], z)


def test_actnorm_initializes_on_the_first_batch_only():
    layer = ActNorm(2)
    x = torch.randn(64, 2, 3, 3) * torch.tensor([3.0, 0.5])[:, None, None] + 2.0
    y, _ = layer(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    before = layer.state_dict()
    layer(torch.randn(8, 2, 3, 3))
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    loaded = ActNorm(2)
    loaded.load_state_dict(before)  # a loaded layer keeps its parameters
    torch.testing.assert_close(loaded(x)[0], y)


def test_batchnorm_uses_batch_statistics_in_training_and_running_ones_in_eval():
    layer = BatchNormFlow(2, momentum=0.5)
    x = torch.randn(256, 2) * 2 + 3
    y, log_det = layer(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(log_det, (-0.5 * torch.log(x.var(0, unbiased=False) + 1e-5)).sum().expand(256))
    torch.testing.assert_close(layer.running_mean, 0.5 * x.mean(0))
    layer.eval()
    y_eval, _ = layer(x)
    torch.testing.assert_close(layer.inverse(y_eval)[0], x, rtol=1e-5, atol=1e-5)


def test_logit_dequantizes_and_counts_its_log_determinant():
    layer = Logit()
    pixels = torch.randint(0, 256, (4, 1, 2, 2)).double()
    torch.manual_seed(1)
    y, log_det = layer(pixels)
    torch.manual_seed(1)
    v = (pixels + torch.rand_like(pixels)) / 256
    p = 0.05 + 0.9 * v
    torch.testing.assert_close(y, torch.log(p / (1 - p)))
    expected = (math.log(0.9 / 256) - torch.log(p) - torch.log1p(-p)).sum((1, 2, 3))
    torch.testing.assert_close(log_det, expected)
    assert (layer.inverse(y)[0] - pixels).abs().max() < 1  # back to the pixel's [x, x + 1) cell
    assert bits_per_dim(torch.tensor(-4 * math.log(256.0)), (1, 2, 2)).item() == pytest.approx(8.0)


@pytest.mark.parametrize("alpha,levels,dequantize", [(0.05, 256, True), (0.05, 256, False), (0.1, 1, False),
                                                      (0.0, 1, False), (0.01, 16, True)])
def test_logit_inverse_is_exact_in_range_and_clamped_to_the_data_range(alpha, levels, dequantize):
    layer = Logit(alpha=alpha, levels=levels, dequantize=dequantize)
    top = levels if not dequantize else levels * (1 - 1e-12)
    ends = [0.0, 1e-9, top / 2, top] if alpha > 0 else [1e-9, top / 2, top / 3, top * (1 - 1e-9)]  # logit(0) = -inf
    x = torch.cat([torch.rand(200, dtype=F64) * top, torch.tensor(ends, dtype=F64)])
    x = x.reshape(-1, 1, 2, 2)
    y = layer.transform(x)  # the forward map without the noise
    p = alpha + (1 - 2 * alpha) * x / levels  # by hand
    torch.testing.assert_close(y, torch.log(p) - torch.log1p(-p))
    x_back, log_det_back = layer.inverse(y)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9 * levels)
    # the inverse's log-determinant against autograd's Jacobian of the inverse, at values in the range
    for i in range(3):
        jac = jacobian(lambda v: layer.inverse(v.reshape(1, 1, 2, 2))[0].reshape(-1), y[i].reshape(-1))
        torch.testing.assert_close(log_det_back[i], torch.linalg.slogdet(jac)[1], rtol=1e-7, atol=1e-8)
    # any real (beyond logit(alpha), logit(1 - alpha) included, and the infinities) lands inside the data range
    for dtype in (torch.float32, F64):
        reals = torch.cat([torch.randn(5000, dtype=dtype) * 20,
                           torch.tensor([float("inf"), -float("inf"), 1e30, -1e30, 0.0], dtype=dtype)])
        back, log_det = layer.inverse(reals.reshape(-1, 1))
        assert back.dtype == dtype and not back.isnan().any() and (back >= 0).all()
        assert (back < levels).all() if dequantize else (back <= levels).all()
        if dequantize:
            assert (back.floor() <= levels - 1).all()  # a valid pixel value


def test_masks():
    torch.testing.assert_close(make_mask("half", (4,)), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(make_mask("alternating", (4,), parity=1), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    board = make_mask("checkerboard", (2, 2, 2))
    torch.testing.assert_close(board[1], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(make_mask("channel", (2, 1, 1)).flatten(), torch.tensor([1.0, 0.0]))


def test_mask_errors_name_the_layer_and_the_fix():
    with pytest.raises(ValueError, match=r"^AffineCoupling\(4\): its mask has shape \(3,\), but the layer transforms "
                                         r"events of shape \(4,\); give a 0/1 mask of shape \(4,\), or one of "
                                         r"\['half', 'alternating'\]"):
        AffineCoupling(4, mask=torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^AffineCoupling\(4\): mask 'checkerboard' is not one for vectors of 4 "
                                         r"features; use one of \['half', 'alternating'\]"):
        AffineCoupling(4, mask="checkerboard")
    with pytest.raises(ValueError, match=r"its mask must be 0/1 with both values"):
        AffineCoupling(4, mask=torch.ones(4))
    with pytest.raises(ValueError, match=r"cond_var=\['x'\] needs net="):
        Planar(2, cond_var="x")
    with pytest.raises(ValueError, match=r"not a permutation of range\(3\)"):
        Permutation([0, 0, 2])


def test_squeeze_moves_pixels_to_channels():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y, _ = Squeeze()(x)
    assert y.shape == (1, 4, 2, 2)
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([0.0, 1.0, 4.0, 5.0]))  # the top-left 2x2 block
    torch.testing.assert_close(Unsqueeze()(y)[0], x)
