"""The pieces of Sum's unrolled steps that make the eager step cheap: the series sliced once (unbind), the carried
state held through padded steps only where padding may come before a real step; each against the plain computation
it stands for."""
import torch
import torch.distributions as td

from pgm._scope import Context
from pgm.distributions import Normal
from pgm.losses import E, KL, LogProb, Sum
from pgm.losses import _steps

from loss_nets import Gaussian


def sum_over(mask=None, length=None):
    p = Normal("p(x|x_prev)", net=lambda prev: {"loc": prev, "scale": torch.ones_like(prev)})
    return Sum(LogProb(p), series=["x"], carry={"x_prev": "x"}, initial={"x_prev": torch.zeros(2)}, mask=mask,
               length=length)


def test_padding_may_lead_only_where_a_padded_step_comes_before_a_real_one():
    prefix = torch.tensor([[True, True, False], [True, False, False]])
    left = torch.tensor([[False, True, True], [True, True, True]])
    assert not _steps.padding_may_lead(sum_over(mask="m"), prefix)
    assert _steps.padding_may_lead(sum_over(mask="m"), left)
    assert not _steps.padding_may_lead(sum_over(length="n"), prefix)  # lengths: the real steps come first
    assert not _steps.padding_may_lead(sum_over(), None)


def test_padding_is_assumed_to_lead_where_the_mask_cannot_be_read(monkeypatch):
    """While a CUDA graph is captured (or Dynamo traces) the mask is not read back: the state is held."""
    prefix = torch.tensor([[True, True, False], [True, False, False]])
    monkeypatch.setattr(_steps, "capturing", lambda: True)
    assert _steps.padding_may_lead(sum_over(mask="m"), prefix)


def test_the_state_is_held_only_where_it_changes_a_value(monkeypatch):
    """With the real steps first, holding the state through the padding changes nothing later: it is skipped (no
    torch.where per step), and the value equals the one computed holding it."""
    loss = sum_over(mask="m")
    x = torch.randn(2, 3, 2)
    prefix = torch.tensor([[True, True, False], [True, False, False]])
    held = []
    monkeypatch.setattr("pgm.losses._unroll.hold", lambda *a: held.append(1) or _steps.hold(*a))
    value = loss.eval({"x": x, "m": prefix})
    assert not held
    monkeypatch.setattr("pgm.losses._unroll.padding_may_lead", lambda loss, mask: True)
    torch.testing.assert_close(loss.eval({"x": x, "m": prefix}), value)
    assert held
    expected = torch.stack([td.Normal(torch.cat([torch.zeros(1, 2), x[i, :n - 1]]), 1.0).log_prob(x[i, :n]).sum()
                            for i, n in enumerate([2, 1])])
    torch.testing.assert_close(value, expected)


def test_series_slices_are_the_steps_and_pass_gradients_back():
    h = torch.randn(3, 4, 2, requires_grad=True)
    context = Context.from_inputs({"h": h})
    loss = Sum(LogProb(Normal("p(h)", loc=0.0, scale=1.0, features_shape=[2])), series=["h"])
    slices = _steps.series_slices(loss, context)["h"]
    assert len(slices) == 4 and all(torch.equal(s, h[:, t]) for t, s in enumerate(slices))
    (grad,) = torch.autograd.grad(sum((s * (t + 1)).sum() for t, s in enumerate(slices)), [h])
    torch.testing.assert_close(grad, torch.arange(1.0, 5.0)[None, :, None].expand(3, 4, 2))


def test_a_dmm_step_over_a_series_computed_before_the_loop_matches_torch_values_and_gradients():
    """The series h (computed, requiring grad) read step by step: value and gradient of h as sliced by hand."""
    torch.manual_seed(0)
    q = Normal("q(z|h,z_prev)", net=Gaussian(4 + 3, 3)).double()
    prior = Normal("p(z|z_prev)", net=Gaussian(3, 3)).double()
    loss = Sum(E(q, -KL(q, prior)), series=["h"], carry={"z_prev": "z"}, initial={"z_prev": torch.zeros(3).double()},
               mask="m")
    h = torch.randn(5, 6, 4, dtype=torch.float64, requires_grad=True)
    m = torch.arange(6) < torch.tensor([6, 3, 1, 4, 5])[:, None]
    torch.manual_seed(1)
    ours = loss.eval({"h": h, "m": m})
    torch.manual_seed(1)
    z_prev, total = torch.zeros(5, 3, dtype=torch.float64), 0
    for t in range(6):
        qp, pp = q.net(h[:, t], z_prev), prior.net(z_prev)
        z = qp["loc"] + qp["scale"] * torch.randn_like(qp["loc"])
        kl = td.kl_divergence(td.Normal(qp["loc"], qp["scale"]), td.Normal(pp["loc"], pp["scale"])).sum(-1)
        total = total + torch.where(m[:, t], -kl, 0.0)
        z_prev = z
    torch.testing.assert_close(ours, total)
    for a, b in zip(torch.autograd.grad(ours.sum(), [h] + list(q.parameters())),
                    torch.autograd.grad(total.sum(), [h] + list(q.parameters()))):
        torch.testing.assert_close(a, b)
