"""Sum: a loss repeated over the steps of sequences. Its value and gradient equal those of the same model unrolled
by hand in plain torch (same weights, same noise), masks and initial states do what they say, draws of step t are
what step t+1 sees as carried, it prints as a sum over t, it trains compiled, and bad input is named."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pgm.distributions import Bernoulli, Categorical, Deterministic, Normal
from pgm.losses import E, KL, Input, LogProb, Sum, Term
from pgm.models import Model

from loss_nets import Gaussian, Logits

DX, DZ, DH = 5, 3, 4


class Cell(nn.Module):
    """h = GRUCell([x, z], h_prev), as a Deterministic's network."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(DX + DZ, DH)

    def forward(self, x, z, h_prev):
        return {"loc": self.cell(torch.cat([x, z], -1), h_prev)}


def dmm(dtype=torch.float64):
    """A small deep Markov model: q(z|x,z_prev), p(z|z_prev), p(x|z)."""
    torch.manual_seed(0)
    q = Normal("q(z|x,z_prev)", net=Gaussian(DX + DZ, DZ)).to(dtype)
    prior = Normal("p(z|z_prev)", net=Gaussian(DZ, DZ)).to(dtype)
    p = Bernoulli("p(x|z)", net=Logits(DZ, DX)).to(dtype)
    return q, prior, p


def gaussian(net, *inputs):
    params = net(*inputs)
    return params["loc"], params["scale"]


def normal_kl(loc_q, scale_q, loc_p, scale_p):
    return (torch.log(scale_p / scale_q) + (scale_q ** 2 + (loc_q - loc_p) ** 2) / (2 * scale_p ** 2) - 0.5).sum(-1)


def dmm_by_hand(q, prior, p, x, z0, mask=None):
    """-ELBO per sequence: sum_t KL(q(z_t|x_t,z_{t-1}) || p(z_t|z_{t-1})) - log p(x_t|z_t), one draw of z_t."""
    total, z_prev = 0, z0
    for t in range(x.shape[1]):
        loc, scale = gaussian(q.net, x[:, t], z_prev)
        z = loc + scale * torch.randn_like(loc)
        log_px = -F.binary_cross_entropy_with_logits(p.net(z)["logits"], x[:, t], reduction="none").sum(-1)
        value = normal_kl(loc, scale, *gaussian(prior.net, z_prev)) - log_px
        total = total + (value if mask is None else value * mask[:, t])
        z_prev = z
    return total


def parameters(*modules):
    return [p for m in modules for p in m.parameters()]


def sequences(n=4, steps=6, dtype=torch.float64, seed=1):
    return torch.rand(n, steps, DX, generator=torch.Generator().manual_seed(seed)).round().to(dtype)


def test_value_and_gradient_equal_the_model_unrolled_by_hand():
    q, prior, p = dmm()
    loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"},
               initial={"z_prev": torch.zeros(DZ, dtype=torch.float64)}).mean()
    x = sequences()
    torch.manual_seed(5)
    ours = loss.eval({"x": x})
    torch.manual_seed(5)
    by_hand = dmm_by_hand(q, prior, p, x, torch.zeros(4, DZ, dtype=torch.float64)).mean()
    torch.testing.assert_close(ours, by_hand)
    weights = parameters(q, prior, p)
    for a, b in zip(torch.autograd.grad(ours, weights), torch.autograd.grad(by_hand, weights)):
        torch.testing.assert_close(a, b)
    # the draws are shared and fresh per step: another seed gives another value; a loss with one step less differs
    torch.manual_seed(6)
    assert abs(loss.eval({"x": x}).item() - ours.item()) > 1e-3
    torch.manual_seed(5)
    assert abs(loss.eval({"x": x[:, :-1]}).item() - ours.item()) > 1e-3


def test_carried_draws_are_the_step_before():
    """What step t+1 sees as z_prev is the z step t drew (and its terms shared), from the given initial value on."""
    q, prior, p = dmm()
    seen = []

    def record(z, z_prev):
        seen.append((z.detach().clone(), z_prev.detach().clone()))
        return z.new_zeros(z.shape[:-1])

    step = E(q, LogProb(p) + Term(record, "r"))
    loss = Sum(step, series=["x"], carry={"z_prev": "z"}, initial={"z_prev": "z0"})
    x, z0 = sequences(steps=5), torch.randn(4, DZ, dtype=torch.float64)
    torch.manual_seed(2)
    draws = loss.draws({"x": x, "z0": z0})
    assert draws["z"].shape == draws["z_prev"].shape == (4, 5, DZ) and len(seen) == 5
    torch.testing.assert_close(draws["z_prev"][:, 1:], draws["z"][:, :-1])
    torch.testing.assert_close(draws["z_prev"][:, 0], z0)
    torch.testing.assert_close(seen[0][1], z0)
    for t in range(5):
        torch.testing.assert_close(seen[t][0], draws["z"][:, t])       # the Term saw the step's one draw
        if t:
            torch.testing.assert_close(seen[t][1], draws["z"][:, t - 1])  # carried from the step before
    assert not torch.allclose(draws["z"][:, 1], draws["z"][:, 2])


def test_mask_and_length_leave_padded_steps_out():
    q, prior, p = dmm()
    lengths = torch.tensor([6, 2, 4, 1])
    mask = torch.arange(6) < lengths[:, None]
    x = sequences()
    step = KL(q, prior) - E(q, LogProb(p))
    common = dict(series=["x"], carry={"z_prev": "z"}, initial={"z_prev": torch.zeros(DZ, dtype=torch.float64)})
    by_mask, by_length = Sum(step, mask="mask", **common), Sum(step, length="n", **common)
    torch.manual_seed(3)
    ours = by_mask.eval({"x": x, "mask": mask.double()})  # a 0/1 float mask as well as a boolean one
    torch.manual_seed(3)
    by_hand = dmm_by_hand(q, prior, p, x, torch.zeros(4, DZ, dtype=torch.float64), mask.double())
    torch.testing.assert_close(ours, by_hand)
    padded = torch.where(mask[..., None], x, 1 - x)  # other values at the padded steps: nothing changes
    torch.manual_seed(3)
    torch.testing.assert_close(by_length.eval({"x": padded, "n": lengths}), by_hand)
    # without the mask every step counts: the sequences cut short score otherwise, the full one alike
    torch.manual_seed(3)
    unmasked = Sum(step, **common).eval({"x": x})
    assert unmasked[0].item() == pytest.approx(ours[0].item()) and (unmasked[1:] - ours[1:]).abs().min() > 1e-3


def test_a_masked_step_leaves_the_carried_state_as_it_was():
    """Left padding: an AR(1) model p(x_t|x_{t-1}) = N(x_{t-1}, 1) from x_0 = 5; the first real step must see x_0,
    not the padding before it."""
    p = Normal("p(x|x_prev)", net=lambda prev: {"loc": prev, "scale": torch.ones_like(prev)})
    start = torch.full((2,), 5.0, dtype=torch.float64)
    loss = Sum(LogProb(p), series=["x"], carry={"x_prev": "x"}, initial={"x_prev": start}, mask="m")
    real = torch.randn(2, 2, dtype=torch.float64)
    x = torch.cat([torch.zeros(2, 2, dtype=torch.float64), real, torch.zeros(1, 2, dtype=torch.float64)])[None]
    m = torch.tensor([[False, False, True, True, False]])
    expected = (torch.distributions.Normal(start, 1.0).log_prob(real[0]).sum()
                + torch.distributions.Normal(real[0], 1.0).log_prob(real[1]).sum())
    torch.testing.assert_close(loss.eval({"x": x, "m": m}), expected.reshape(1))


def test_a_carried_discrete_draw_gets_the_score_of_every_later_step():
    """y_t ~ q(y|x,y_prev), Categorical, drawn by the score-function E and carried: the later steps depend on it,
    so its score term must weigh them too. Against the exact expectation over (y_1, y_2), many sequences."""
    class Emission(nn.Linear):
        def forward(self, y):
            return {"loc": super().forward(y), "scale": torch.ones(y.shape[:-1] + (1,), dtype=y.dtype)}

    q = Categorical("q(y|x,y_prev)", net=Logits(3, 2).double())
    p = Normal("p(x|y)", net=Emission(2, 1).double())
    with torch.no_grad():
        p.net.weight.copy_(torch.tensor([[3.0, -3.0]]))
    x = torch.tensor([[[0.5], [2.0]]], dtype=torch.float64)
    start = torch.tensor([1.0, 0.0], dtype=torch.float64)
    loss = Sum(E(q, LogProb(p)), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": start})
    eye, exact = torch.eye(2, dtype=torch.float64), 0
    for a in range(2):
        for b in range(2):
            y1, y2 = eye[a][None], eye[b][None]
            log_q = (q.log_prob({"x": x[:, 0], "y_prev": start[None], "y": y1})
                     + q.log_prob({"x": x[:, 1], "y_prev": y1, "y": y2}))
            f = p.log_prob({"y": y1, "x": x[:, 0]}) + p.log_prob({"y": y2, "x": x[:, 1]})
            exact = exact + log_q.exp() * f
    want = torch.autograd.grad(exact.sum(), list(q.parameters()))
    torch.manual_seed(1)
    estimate = loss.eval({"x": x.expand(200_000, 2, 1)}).mean()
    torch.testing.assert_close(estimate, exact.sum(), atol=0.02, rtol=0)
    got = torch.autograd.grad(estimate, list(q.parameters()))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=0.03 * w.abs().max().item(), rtol=0)


def test_initial_values_input_tensor_parameter_and_own_name():
    q, prior, p = dmm()
    step = KL(q, prior) - E(q, LogProb(p))
    x, z0 = sequences(steps=3), torch.randn(4, DZ, dtype=torch.float64)
    event = torch.randn(DZ, dtype=torch.float64)
    results = []
    for initial, inputs in [({"z_prev": "start"}, {"start": z0}), (None, {"z_prev": z0}),
                            ({"z_prev": event}, {}), ({"z_prev": nn.Parameter(event.clone())}, {})]:
        loss = Sum(step, series=["x"], carry={"z_prev": "z"}, initial=initial)
        torch.manual_seed(4)
        results.append(loss.eval({"x": x, **inputs}))
    torch.manual_seed(4)
    expected = dmm_by_hand(q, prior, p, x, z0)
    torch.testing.assert_close(results[0], expected)
    torch.testing.assert_close(results[1], expected)
    torch.manual_seed(4)
    torch.testing.assert_close(results[2], dmm_by_hand(q, prior, p, x, event.expand(4, DZ)))
    torch.testing.assert_close(results[3], results[2])
    # a learned initial state is a module of the loss, so Model trains it
    start = nn.Parameter(torch.zeros(DZ, dtype=torch.float64))
    loss = Sum(step, series=["x"], carry={"z_prev": "z"}, initial={"z_prev": start}).mean()
    assert any(m is not None and any(t is start for t in m.parameters()) for m in loss.modules)
    (gradient,) = torch.autograd.grad(loss.eval({"x": x}), [start])
    assert gradient.abs().sum() > 0
    model = Model(loss, [q, prior, p], optimizer_params={"lr": 0.1})
    model.train({"x": x})
    assert start.abs().sum() > 0


def test_carried_distribution_is_drawn_after_the_step_as_a_vrnn_writes_it():
    """VRNN: h_t = f(x_t, z_t, h_{t-1}) carried; q(z|x,h_prev), p(z|h_prev), p(x|z,h_prev)."""
    torch.manual_seed(0)
    q = Normal("q(z|x,h_prev)", net=Gaussian(DX + DH, DZ)).double()
    prior = Normal("p(z|h_prev)", net=Gaussian(DH, DZ)).double()
    p = Bernoulli("p(x|z,h_prev)", net=Logits(DZ + DH, DX)).double()
    f = Deterministic("f(h|x,z,h_prev)", net=Cell()).double()
    loss = Sum(E(q, LogProb(p)) - KL(q, prior), series=["x"], carry={"h_prev": f},
               initial={"h_prev": torch.zeros(DH, dtype=torch.float64)})
    x = sequences(steps=5)
    torch.manual_seed(8)
    ours = loss.eval({"x": x}).mean()

    torch.manual_seed(8)
    h, total = torch.zeros(4, DH, dtype=torch.float64), 0
    for t in range(5):
        loc, scale = gaussian(q.net, x[:, t], h)
        z = loc + scale * torch.randn_like(loc)
        log_px = -F.binary_cross_entropy_with_logits(p.net(z, h)["logits"], x[:, t], reduction="none").sum(-1)
        total = total + log_px - normal_kl(loc, scale, *gaussian(prior.net, h))
        h = f.net(x[:, t], z, h)["loc"]
    by_hand = total.mean()
    torch.testing.assert_close(ours, by_hand)
    weights = parameters(q, prior, p, f)
    grads = torch.autograd.grad(ours, weights)
    assert grads[-1].abs().sum() > 0  # the cell is trained through the carried state
    for a, b in zip(grads, torch.autograd.grad(by_hand, weights)):
        torch.testing.assert_close(a, b)
    # the same model with the cell sampled inside the step (E over q * f) and h carried by name
    same = Sum(E(q * f, LogProb(p)) - KL(q, prior), series=["x"], carry={"h_prev": "h"},
               initial={"h_prev": torch.zeros(DH, dtype=torch.float64)})
    torch.manual_seed(8)
    torch.testing.assert_close(same.eval({"x": x}).mean(), by_hand)


def test_a_series_computed_before_the_loop_and_a_carried_series():
    """A DMM's backward RNN over x gives h (batch, T, H) once, read step by step; x_prev carries x itself."""
    torch.manual_seed(0)
    rnn = nn.GRU(DX, DH, batch_first=True).double()
    backward = Deterministic("f(h|x)", net=lambda x: {"loc": rnn(x.flip(1))[0].flip(1)})
    q = Normal("q(z|h)", net=Gaussian(DH, DZ)).double()
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[DZ]).double()
    p = Bernoulli("p(x|z,x_prev)", net=Logits(DZ + DX, DX)).double()
    loss = E(backward, Sum(E(q, LogProb(p)) - KL(q, prior), series=["x", "h"], carry={"x_prev": "x"},
                           initial={"x_prev": torch.zeros(DX, dtype=torch.float64)}))
    assert loss.input_var == ["x"]
    x = sequences(steps=4)
    torch.manual_seed(1)
    ours = loss.eval({"x": x})
    torch.manual_seed(1)
    h, x_prev, total = rnn(x.flip(1))[0].flip(1), torch.zeros(4, DX, dtype=torch.float64), 0
    for t in range(4):
        loc, scale = gaussian(q.net, h[:, t])
        z = loc + scale * torch.randn_like(loc)
        log_px = -F.binary_cross_entropy_with_logits(p.net(z, x_prev)["logits"], x[:, t], reduction="none").sum(-1)
        total = total + log_px - normal_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale))
        x_prev = x[:, t]
    torch.testing.assert_close(ours, total)
    assert r"\mathbb{E}_{f(h|x)}\left[\sum_{t=1}^{T} \left[\mathbb{E}_{q(z_t|h_t)}\left[\log p(x_t|z_t,x_{t-1})" \
           in loss.latex()


def test_a_copied_loss_runs_on_the_copied_distributions():
    """copy.deepcopy (as a benchmark or an ensemble does) gives a loss over copies of the distributions."""
    import copy
    q, prior, p = dmm()
    loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"},
               initial={"z_prev": nn.Parameter(torch.zeros(DZ, dtype=torch.float64))}).mean()
    copied, (q2, prior2, p2) = copy.deepcopy((loss, (q, prior, p)))
    x = sequences()
    torch.manual_seed(5)
    before = copied.eval({"x": x})
    with torch.no_grad():
        for weight in q2.parameters():
            weight.add_(0.5)
    torch.manual_seed(5)
    after, original = copied.eval({"x": x}), None
    torch.manual_seed(5)
    original = loss.eval({"x": x})
    torch.testing.assert_close(before, original)
    assert abs(after.item() - before.item()) > 1e-3
    assert all(a is not b for a, b in zip(copied.modules, loss.modules))


def test_latex_subscripts_and_text():
    q, prior, p = dmm()
    loss = -Sum(E(q, LogProb(p)) - KL(q, prior), series=["x"], carry={"z_prev": "z"}, initial={"z_prev": "z0"})
    assert loss.mean().latex() == (
        r"\mathbb{E}_{p_{data}(x,z0)}\left[- \sum_{t=1}^{T} \left[\mathbb{E}_{q(z_t|x_t,z_{t-1})}\left[\log "
        r"p(x_t|z_t)\right] - D_{KL}\left[q(z_t|x_t,z_{t-1})\|p(z_t|z_{t-1})\right]\right]\right]")
    assert str(loss) == "-sum_{t=1}^{T} [E_q(z_t|x_t,z_{t-1})[log p(x_t|z_t)] - KL[q(z_t|x_t,z_{t-1})||p(z_t|z_{t-1})]]"
    # another index, a name with an underscore, a series Input, and a static condition left as it is
    q_y = Normal("q(z|x_obs,z_prev,y)", net=Gaussian(DX + DZ + 2, DZ))
    other = Sum(Input("w") * E(q_y, LogProb(q_y)), over="s", series=["x_obs", "w"], carry={"z_prev": "z"},
                initial={"z_prev": torch.zeros(DZ)})
    assert other.latex() == (r"\sum_{s=1}^{S} \left[w_s \mathbb{E}_{q(z_s|x_{obs,s},z_{s-1},y)}\left[\log "
                             r"q(z_s|x_{obs,s},z_{s-1},y)\right]\right]")
    assert other.input_var == ["w", "x_obs", "y"]


def test_compiled_model_trains_it_as_the_eager_one(compiled_graphs):
    x = sequences(n=8, steps=4, dtype=torch.float32)
    mask = torch.arange(4) < torch.tensor([4, 3, 2, 4, 1, 4, 4, 2])[:, None]
    runs = []
    for compile in (False, "inductor"):
        q, prior, p = dmm(torch.float32)
        loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"}, mask="mask",
                   initial={"z_prev": nn.Parameter(torch.zeros(DZ))}).mean()
        model = Model(loss, [q, prior, p], optimizer_params={"lr": 0.05}, compile=compile)
        torch.manual_seed(9)
        runs.append([model.train({"x": x, "mask": mask}) for _ in range(4)])
    assert compiled_graphs, "the step was not compiled"
    assert runs[1] == pytest.approx(runs[0], rel=1e-4)
    assert runs[0][-1] < runs[0][0]


def test_bad_input_names_the_variable_and_the_fix():
    q, prior, p = dmm()
    step = KL(q, prior) - E(q, LogProb(p))
    x = sequences(steps=3)
    # a carried variable with no initial value
    loss = Sum(step, series=["x"], carry={"z_prev": "z"})
    with pytest.raises(KeyError, match=r"`z_prev`.*initial value of the carried `z_prev` .*initial=\{'z_prev'"):
        loss.eval({"x": x})
    # series of unequal lengths, no mask
    q_u = Normal("q(z|x,u,z_prev)", net=Gaussian(DX + 1 + DZ, DZ)).double()
    loss = Sum(KL(q_u, prior) - E(q_u, LogProb(p)), series=["x", "u"], carry={"z_prev": "z"},
               initial={"z_prev": torch.zeros(DZ)})
    with pytest.raises(ValueError, match=r"unequal lengths \(`x` has 3, `u` has 2 steps.*pad_sequence.*mask="):
        loss.eval({"x": x, "u": torch.zeros(4, 2, 1, dtype=torch.float64)})
    good = Sum(step, series=["x"], carry={"z_prev": "z"}, initial={"z_prev": torch.zeros(DZ)}, mask="m")
    with pytest.raises(KeyError, match=r"pass the input `m`, its mask \(batch, T\)"):
        good.eval({"x": x})
    with pytest.raises(ValueError, match=r"mask `m` must be \(batch, T\) = \(batch, 3\).*got shape \(4, 5\)"):
        good.eval({"x": x, "m": torch.ones(4, 5, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"length `n` must lie in \[0, 3\]"):
        Sum(step, series=["x"], carry={"z_prev": "z"}, initial={"z_prev": torch.zeros(DZ)}, length="n").eval(
            {"x": x, "n": torch.tensor([1, 2, 3, 4])})
    with pytest.raises(ValueError, match=r"series `x` needs a time axis after the batch dim.*got shape \(4,\)"):
        good.eval({"x": x[:, 0, 0], "m": torch.ones(4, 3, dtype=torch.bool)})
    # mistakes in the construct itself, when it is written
    with pytest.raises(ValueError, match=r"carry=\{'z_prev': 'w'\}: no distribution of the step generates `w`"):
        Sum(step, series=["x"], carry={"z_prev": "w"})
    with pytest.raises(ValueError, match=r"initial names `z`, which is not carried; the carried variables are "
                                         r"\['z_prev'\]"):
        Sum(step, series=["x"], carry={"z_prev": "z"}, initial={"z": torch.zeros(DZ)})
    with pytest.raises(ValueError, match=r"the carried \['h_prev'\] are not used by any distribution"):
        Sum(step, series=["x"], carry={"z_prev": "z", "h_prev": "z"})
    with pytest.raises(ValueError, match=r"name them \(series=\['x'\].*or give steps=T"):
        Sum(step, carry={"z_prev": "z"})
    with pytest.raises(ValueError, match="give mask= or length=, not both"):
        Sum(step, series=["x"], mask="m", length="n")
    with pytest.raises(TypeError, match="Sum takes the loss of one step"):
        Sum(q, series=["x"])
    # a carried variable drawn several times per sequence
    many = Sum(KL(q, prior) - E(q, LogProb(p), sample_shape=3), series=["x"], carry={"z_prev": "z"},
               initial={"z_prev": torch.zeros(DZ, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"drew `z` only with a sample_shape; a carried variable is one draw"):
        many.eval({"x": x})


def test_a_list_of_sequences_is_refused_with_the_padding_fix(one_thread):
    """Sequences of different lengths given as a Python list: the error says to pad them and mask; doing so
    gives the DMM written by hand on the padded batch with its mask."""
    q, prior, p = dmm()
    x = sequences(n=3, steps=4)
    lengths = torch.tensor([4, 1, 3])
    videos = [x[i, :n] for i, n in enumerate(lengths.tolist())]
    loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"},
               initial={"z_prev": torch.zeros(DZ, dtype=torch.float64)}, length="n")
    for given in (videos, tuple(videos)):
        with pytest.raises(TypeError, match=rf"input `x` is a {type(given).__name__} of 3 tensors.*"
                                            r"pad_sequence\(x, batch_first=True\).*mask=.*length="):
            loss.eval({"x": given, "n": lengths})
    with pytest.raises(TypeError, match=r"input `x` must be a torch.Tensor; got list.*torch.as_tensor"):
        loss.eval({"x": [[0.0, 1.0]], "n": lengths})  # a list of numbers keeps the plain advice
    padded = torch.nn.utils.rnn.pad_sequence(videos, batch_first=True)  # the fix the message gives
    torch.manual_seed(5)
    ours = loss.eval({"x": padded, "n": lengths})
    torch.manual_seed(5)
    mask = (torch.arange(4) < lengths[:, None]).double()
    torch.testing.assert_close(ours, dmm_by_hand(q, prior, p, padded, torch.zeros(3, DZ, dtype=torch.float64), mask))


def test_the_number_of_steps_without_series():
    """steps=T: a loss over T steps of a prior alone (no data read), e.g. the log-density of a random walk."""
    prior = Normal("p(z|z_prev)", net=lambda z_prev: {"loc": z_prev, "scale": torch.ones_like(z_prev)})
    walk = Sum(E(prior, LogProb(prior)), steps=7, carry={"z_prev": "z"}, initial={"z_prev": "z0"})
    value = walk.eval({"z0": torch.zeros(5, 2)})
    torch.manual_seed(0)
    expected = -7 * (1 + math.log(2 * math.pi))  # E[log N(z; mu, 1)] over 2 dims, 7 steps (-(1 + log 2 pi)/2 each)
    averaged = sum(walk.eval({"z0": torch.zeros(2000, 2)}).mean() for _ in range(5)) / 5
    assert value.shape == (5,) and averaged.item() == pytest.approx(expected, abs=0.05)


def test_carrying_an_enumerated_variable_is_explained():
    class Emission(nn.Linear):
        def forward(self, y):
            return {"loc": super().forward(y), "scale": torch.ones(y.shape[:-1] + (1,))}

    q = Categorical("q(y|x,y_prev)", net=Logits(3, 2))
    p = Normal("p(x|y)", net=Emission(2, 1))
    loss = Sum(E(q, LogProb(p), enumerate=True), series=["x"], carry={"y_prev": "y"},
               initial={"y_prev": torch.tensor([1.0, 0.0])})
    with pytest.raises(ValueError, match=r"^Sum over t: carry=\{'y_prev': 'y'\}: step t sums over every value of `y` "
                                         r"\(E\(\.\.\., enumerate=True\)\), so there is no one draw of it to carry"):
        loss.eval({"x": torch.randn(4, 3, 1)})
