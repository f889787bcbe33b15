"""Sum's final term and a presence drawn at each step, as Attend-Infer-Repeat (Eslami et al. 2016) needs them: a
small AIR of 1-D images against the loss written by hand in plain torch on the same weights and draws (values and
gradients), the score-function gradient of the presence against the exact one (every path of presences summed),
the printed LaTeX, and the errors."""
import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm._errors import MissingInputError
from pgm.distributions import Bernoulli, Deterministic, Normal
from pgm.losses import E, KL, LogProb, Sum, Term

WIDTH, WHAT, STEPS, PRIOR_PRESENT = 6, 2, 3, 0.6


class Encoder(nn.Module):
    """q(.|x, c_prev): a linear map of the residual x - c_prev to the family's parameters."""

    def __init__(self, out, names):
        super().__init__()
        self.linear, self.names = nn.Linear(WIDTH, out), names

    def forward(self, x, c_prev):
        h = self.linear(x - c_prev)
        if self.names == ("logits",):
            return {"logits": h}
        loc, scale = h.chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 0.1}


class Canvas(nn.Module):
    """c = c_prev + z_pres * decode(z_what): an object is drawn on the canvas only where it is present."""

    def __init__(self):
        super().__init__()
        self.decode = nn.Linear(WHAT, WIDTH)

    def forward(self, c_prev, z_pres, z_what):
        return {"loc": c_prev + z_pres * self.decode(z_what)}


def air():
    """The distributions of a 1-D AIR: presence and what of each object, the canvas, the image given it."""
    torch.manual_seed(0)
    q_pres = Bernoulli("q(z_pres|x,c_prev)", net=Encoder(1, ("logits",))).double()
    q_what = Normal("q(z_what|x,c_prev)", net=Encoder(2 * WHAT, ("loc", "scale"))).double()
    p_pres = Bernoulli("p(z_pres)", probs=PRIOR_PRESENT, features_shape=[1]).double()
    p_what = Normal("p(z_what)", loc=0.0, scale=1.0, features_shape=[WHAT]).double()
    canvas = Deterministic("f(c|c_prev,z_pres,z_what)", net=Canvas()).double()
    p_x = Normal("p(x|c)", net=lambda c: {"loc": c, "scale": torch.full_like(c, 0.5)}).double()
    return q_pres, q_what, p_pres, p_what, canvas, p_x


def air_elbo(q_pres, q_what, p_pres, p_what, canvas, p_x):
    """AIR's ELBO: at each step the presence's terms, the object's terms where it is present; log p(x|c_T)."""
    present = Term(lambda z_pres: z_pres.squeeze(-1), r"z_{pres}")
    step = E(q_pres, LogProb(p_pres) - LogProb(q_pres) + E(q_what, present * (LogProb(p_what) - LogProb(q_what))))
    return Sum(step, steps=STEPS, carry={"c_prev": canvas}, initial={"c_prev": torch.zeros(WIDTH).double()},
               present="z_pres", final=LogProb(p_x))


def air_by_hand(q_pres, q_what, canvas, x):
    """The same ELBO and its score-function surrogate in plain torch: z_pres_t drawn by torch.bernoulli, z_what_t
    reparameterized; step t counts while every earlier presence was 1, and the canvas stops there. The presence's
    score is weighted by its own step (the E over it) and by every later step and the final term (they depend on
    it through the mask and the canvas)."""
    n = x.shape[0]
    c, alive = torch.zeros(n, WIDTH, dtype=x.dtype), torch.ones(n, dtype=torch.bool)
    values, masks, log_qs = [], [], []
    for _ in range(STEPS):
        logits = q_pres.net(x, c)["logits"]
        z_pres = torch.bernoulli(torch.sigmoid(logits).detach())
        log_q_pres = td.Bernoulli(logits=logits).log_prob(z_pres).sum(-1)
        log_p_pres = td.Bernoulli(probs=torch.tensor(PRIOR_PRESENT, dtype=x.dtype)).log_prob(z_pres).sum(-1)
        params = q_what.net(x, c)
        z_what = params["loc"] + params["scale"] * torch.randn_like(params["loc"])
        log_q_what = td.Normal(params["loc"], params["scale"]).log_prob(z_what).sum(-1)
        log_p_what = td.Normal(0.0, 1.0).log_prob(z_what).sum(-1)
        f = log_p_pres - log_q_pres + z_pres.squeeze(-1) * (log_p_what - log_q_what)
        values.append(f + f.detach() * (log_q_pres - log_q_pres.detach()))  # the E over z_pres: its own score
        masks.append(alive)
        log_qs.append(log_q_pres)
        c = torch.where(alive[:, None], c + z_pres * canvas.net.decode(z_what), c)
        alive = alive & (z_pres.squeeze(-1) != 0)
    final = td.Normal(c, 0.5).log_prob(x).sum(-1)
    counted = [torch.where(m, v, 0.0) for v, m in zip(values, masks)]
    total = sum(counted) + final
    for t in range(STEPS):
        later = (sum(counted[t + 1:], torch.zeros(n, dtype=x.dtype)) + final).detach()
        total = total + torch.where(masks[t], later, 0.0) * (log_qs[t] - log_qs[t].detach())
    return total


def images(n=64, seed=3):
    """1-D images of 0 to 3 bumps of width 2 at random places."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, WIDTH, dtype=torch.float64)
    for i in range(n):
        for _ in range(int(torch.randint(4, (1,), generator=g))):
            at = int(torch.randint(WIDTH - 1, (1,), generator=g))
            x[i, at:at + 2] += 1.0
    return x


def parameters(*modules):
    return [p for m in modules for p in m.parameters()]


def test_air_equals_the_loss_written_by_hand_values_and_gradients():
    distributions = air()
    loss = air_elbo(*distributions)
    q_pres, q_what, _, _, canvas, _ = distributions
    x = images()
    torch.manual_seed(7)
    ours = loss.eval({"x": x})
    torch.manual_seed(7)
    by_hand = air_by_hand(q_pres, q_what, canvas, x)
    torch.testing.assert_close(ours, by_hand)
    weights = parameters(q_pres, q_what, canvas)
    for a, b in zip(torch.autograd.grad(ours.mean(), weights), torch.autograd.grad(by_hand.mean(), weights)):
        torch.testing.assert_close(a, b)
    # some sequences stop early, some run every step: both cases are exercised
    torch.manual_seed(7)
    presences = loss.draws({"x": x})["z_pres"].squeeze(-1)
    stopped = (presences.cumprod(-1) == 0).any(-1)
    assert stopped.any() and (~stopped).any()


def test_steps_after_the_first_absence_add_nothing_and_keep_the_canvas():
    """Presences forced to 1, 0, 1: the third step's terms and its object are left out."""
    _, q_what, p_pres, _, canvas, p_x = air()
    pattern = iter([1.0, 0.0, 1.0])
    forced = Bernoulli("q(z_pres|x,c_prev)",
                       net=lambda x, c_prev: {"probs": torch.full((len(x), 1), next(pattern), dtype=x.dtype)})
    seen = []
    record = Term(lambda z_what: seen.append(z_what) or z_what.new_zeros(z_what.shape[:-1]), "r")
    loss = Sum(E(forced, LogProb(p_pres) + E(q_what, record)), steps=STEPS, carry={"c_prev": canvas},
               initial={"c_prev": torch.zeros(WIDTH).double()}, present="z_pres", final=LogProb(p_x))
    x = images(n=4)
    value = loss.eval({"x": x})
    prior = td.Bernoulli(probs=torch.tensor(PRIOR_PRESENT, dtype=x.dtype))
    c_1 = canvas.net.decode(seen[0])  # the first object alone is drawn
    expected = (prior.log_prob(torch.tensor(1.0)) + prior.log_prob(torch.tensor(0.0))
                + td.Normal(c_1, 0.5).log_prob(x).sum(-1))
    assert len(seen) == STEPS  # the third step ran, and counted for nothing
    torch.testing.assert_close(value, expected)


def test_the_presence_gradient_is_that_of_the_exact_expectation():
    """No z_what: the canvas is a learned template added per present object. E over every path of presences
    (2^3) gives the exact ELBO and gradient; pgm's one-draw estimate over many copies of one image matches them.
    Without the later steps' and the final term's weight on the presence's score it would not."""
    torch.manual_seed(0)
    q_pres = Bernoulli("q(z_pres|x,c_prev)", net=Encoder(1, ("logits",))).double()
    p_pres = Bernoulli("p(z_pres)", probs=PRIOR_PRESENT, features_shape=[1]).double()
    template = nn.Parameter(torch.linspace(-1.0, 1.0, WIDTH, dtype=torch.float64))
    canvas = Deterministic("f(c|c_prev,z_pres)", net=lambda c_prev, z_pres: {"loc": c_prev + z_pres * template})
    p_x = Normal("p(x|c)", net=lambda c: {"loc": c, "scale": torch.full_like(c, 0.5)}).double()
    loss = Sum(E(q_pres, LogProb(p_pres) - LogProb(q_pres)), steps=STEPS, carry={"c_prev": canvas},
               initial={"c_prev": torch.zeros(WIDTH).double()}, present="z_pres", final=LogProb(p_x))
    x = images(n=1)
    weights = list(q_pres.parameters()) + [template]

    exact = 0
    for present in range(STEPS + 1):  # the paths that matter: `present` objects, then an absence (if a step is left)
        path = [1.0] * present + [0.0] * (present < STEPS)
        c, log_path, value = torch.zeros(1, WIDTH, dtype=x.dtype), 0, 0
        for z in path:
            z_pres = torch.full((1, 1), z, dtype=x.dtype)
            log_q = q_pres.log_prob({"x": x, "c_prev": c, "z_pres": z_pres})
            value = value + p_pres.log_prob({"z_pres": z_pres}) - log_q
            log_path = log_path + log_q
            c = c + z * template
        exact = exact + log_path.exp() * (value + td.Normal(c, 0.5).log_prob(x).sum(-1))
    want = torch.autograd.grad(exact.sum(), weights)

    torch.manual_seed(2)
    estimate = loss.eval({"x": x.expand(200_000, WIDTH)}).mean()
    torch.testing.assert_close(estimate, exact.sum(), atol=0.03, rtol=0)
    got = torch.autograd.grad(estimate, weights)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=0.04 * w.abs().max().item(), rtol=0)


def test_final_term_prints_on_the_last_state():
    loss = air_elbo(*air())
    assert loss.latex() == (
        r"\sum_{t=1}^{T} \left[\mathbb{E}_{q(z_{pres,t}|x,c_{t-1})}\left[\log p(z_{pres,t}) - \log "
        r"q(z_{pres,t}|x,c_{t-1}) + \mathbb{E}_{q(z_{what,t}|x,c_{t-1})}\left[z_{pres} \left(\log p(z_{what,t}) - "
        r"\log q(z_{what,t}|x,c_{t-1})\right)\right]\right]\right] + \log p(x|c_T)")
    assert str(loss).endswith("+ log p(x|c_T)")


def test_a_final_term_on_a_masked_sequence_reads_the_state_of_its_last_real_step():
    """An AR(1) walk carried by name: with lengths, log p(y|x_T) scores the last real x, not the padding."""
    p = Normal("p(x|x_prev)", net=lambda prev: {"loc": prev, "scale": torch.ones_like(prev)})
    p_y = Normal("p(y|x)", net=lambda x: {"loc": x, "scale": torch.ones_like(x)})
    loss = Sum(LogProb(p), series=["x"], carry={"x_prev": "x"}, initial={"x_prev": torch.zeros(2).double()},
               length="n", final=LogProb(p_y))
    x, y = torch.randn(2, 4, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    n = torch.tensor([4, 2])
    value = loss.eval({"x": x, "n": n, "y": y})
    for i in range(2):
        walk = torch.cat([torch.zeros(1, 2, dtype=torch.float64), x[i, :n[i]]])
        expected = (td.Normal(walk[:-1], 1.0).log_prob(walk[1:]).sum()
                    + td.Normal(walk[-1], 1.0).log_prob(y[i]).sum())
        torch.testing.assert_close(value[i], expected)
    with pytest.raises(MissingInputError, match=r"the loss needs input `y` \(`y` is used by p\(y\|x\)\)"):
        loss.eval({"x": x, "n": n})


def test_bad_final_and_presence_are_named():
    q_pres, q_what, p_pres, p_what, canvas, p_x = air()
    step = air_elbo(q_pres, q_what, p_pres, p_what, canvas, p_x).step
    common = dict(steps=STEPS, carry={"c_prev": canvas}, initial={"c_prev": torch.zeros(WIDTH).double()})
    with pytest.raises(TypeError, match=r"Sum over t: final is the loss of the state after the last step, e\.g\. "
                                        r"final=LogProb\(p_x\).*; got Normal"):
        Sum(step, final=p_x, **common)
    with pytest.raises(ValueError, match=r"Sum over t: present='z_where': no distribution of the step generates "
                                         r"`z_where` \(the step draws \['z_pres', 'z_what'\]\); name the presence"):
        Sum(step, present="z_where", **common)
    with pytest.raises(ValueError, match=r"Sum over t: marginalize='z_pres' sums over every path of `z_pres` and "
                                         r"draws nothing, so there is no final state nor presence draw"):
        Sum(LogProb(p_pres), steps=2, marginalize="z_pres", final=LogProb(p_x))
    not_drawn = Sum(LogProb(p_pres), steps=2, present="z_pres")
    with pytest.raises(ValueError, match=r"Sum over t: present='z_pres' is the presence drawn at each step, but "
                                         r"step t did not draw it \(take an expectation over its distribution"):
        not_drawn.eval({"z_pres": torch.ones(2, 1, dtype=torch.float64)})
    smear = Deterministic("f(c|c_prev,z_what)", net=lambda c_prev, z_what: {"loc": c_prev + z_what.sum(-1, True)})
    wide = Sum(E(q_what, LogProb(p_what)), steps=2, carry={"c_prev": smear},
               initial={"c_prev": torch.zeros(WIDTH).double()}, present="z_what")
    with pytest.raises(ValueError, match=r"Sum over t: present='z_what' must be one 0/1 value per sequence \(a "
                                         r"Bernoulli of event shape \(\) or \(1,\)\); q\(z_what\|x,c_prev\) draws "
                                         r"event shape \(2,\)"):
        wide.eval({"x": images(n=2)})


def test_fixed_inputs_print_without_the_step_and_long_names_braced():
    """Only what changes with t is subscripted: series, the step's draws, carried values; a label y and an
    Input weight w are the same at every step. A name of several letters after its underscore is braced."""
    from pgm.losses import Input
    gaussian = lambda *v: {"loc": torch.cat(v, -1)[..., :2], "scale": torch.ones(2)}  # noqa: E731
    q = Normal("q(z_top|x_obs,y,z_top_prev)", net=gaussian)
    prior = Normal("p(z_top|z_top_prev,y)", net=gaussian)
    p = Bernoulli("p(x_obs|z_top,y)", net=gaussian)
    loss = Sum((E(q, LogProb(p)) - KL(q, prior)) * Input("w"), series=["x_obs"], carry={"z_top_prev": "z_top"},
               initial={"z_top_prev": torch.zeros(2)}, final=LogProb(Normal("p(y|z_top)", net=gaussian)))
    assert loss.latex() == (
        r"\sum_{t=1}^{T} \left[\left(\mathbb{E}_{q(z_{top,t}|x_{obs,t},y,z_{top,t-1})}\left[\log "
        r"p(x_{obs,t}|z_{top,t},y)\right] - D_{KL}\left[q(z_{top,t}|x_{obs,t},y,z_{top,t-1})\|"
        r"p(z_{top,t}|z_{top,t-1},y)\right]\right) w\right] + \log p(y|z_{top,T})")
    assert str(loss) == (
        "sum_{t=1}^{T} [(E_q(z_{top,t}|x_{obs,t},y,z_{top,t-1})[log p(x_{obs,t}|z_{top,t},y)] - "
        "KL[q(z_{top,t}|x_{obs,t},y,z_{top,t-1})||p(z_{top,t}|z_{top,t-1},y)])*w] + log p(y|z_{top,T})")
