"""What a loss evaluates to, checked against torch.distributions and closed forms."""
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.losses import E, IWAE, KL, CrossEntropy, Entropy, LogProb, Parameter

from loss_nets import Gaussian, Logits


class Recorder(nn.Module):
    """Logits from a linear layer; remembers every input it saw."""

    def __init__(self, i, o):
        super().__init__()
        self.linear, self.seen = nn.Linear(i, o), []

    def forward(self, z):
        self.seen.append(z)
        return {"logits": self.linear(z)}


def test_elbo_equals_a_hand_written_one():
    enc, dec = Gaussian(4, 2), Logits(2, 4)
    q, p = Normal("q(z|x)", net=enc), Bernoulli("p(x|z)", net=dec)
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    x = torch.rand(8, 4).round()
    torch.manual_seed(1)
    value = (KL(q, prior) - E(q, LogProb(p))).mean().eval({"x": x})
    torch.manual_seed(1)
    params = enc(x)
    qz = td.Normal(params["loc"], params["scale"])
    z = qz.rsample()
    kl = td.kl_divergence(qz, td.Normal(0.0, 1.0)).sum(-1)
    rec = td.Bernoulli(logits=dec(z)["logits"]).log_prob(x).sum(-1)
    torch.testing.assert_close(value, (kl - rec).mean())


def test_a_variable_is_drawn_once_per_evaluation_and_shared():
    q = Normal("q(z|x,w)", net=Gaussian(7, 2))
    p_x, p_w = Bernoulli("p(x|z)", net=Recorder(2, 4)), Bernoulli("p(w|z)", net=Recorder(2, 3))
    loss = (E(q, LogProb(p_x)) + E(q, LogProb(p_w))).mean()
    inputs = {"x": torch.rand(5, 4), "w": torch.rand(5, 3)}
    loss.eval(inputs)
    assert p_x.net.seen[0] is p_w.net.seen[0]
    loss.eval(inputs)  # a new evaluation draws anew: nothing is cached across evaluations
    assert not torch.equal(p_x.net.seen[0], p_x.net.seen[1])


def test_a_network_runs_once_per_evaluation_and_inputs():
    """KL(q, prior) and E(q, ...) share one run of q's network, as a hand-written step does; a BatchNorm in it
    updates its running statistics once per step."""
    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.net, self.calls = nn.BatchNorm1d(4), Gaussian(4, 2), 0

        def forward(self, x):
            self.calls += 1
            return self.net(self.norm(x))

    q, p = Normal("q(z|x)", net=Counted()), Bernoulli("p(x|z)", net=Logits(2, 4))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    loss = (KL(q, prior) - E(q, LogProb(p)) + Entropy(q)).mean()
    x = torch.rand(8, 4)
    loss.eval({"x": x})
    assert q.net.calls == 1 and q.net.norm.num_batches_tracked.item() == 1
    loss.eval({"x": x})  # a new evaluation runs it anew
    assert q.net.calls == 2
    loss.eval({"x": x[:4]})
    (KL(q, prior).mean() + KL(q, prior).mean("other")).eval({"x": x, "other": {"x": x[:3]}})
    assert q.net.calls == 5  # other inputs (another data set) run it again


def test_several_samples_are_one_batched_call():
    q, p = Normal("q(z|x)", net=Gaussian(4, 2)), Bernoulli("p(x|z)", net=Recorder(2, 4))
    x = torch.rand(6, 4)
    torch.manual_seed(3)
    value = E(q, LogProb(p), sample_shape=5).eval({"x": x})
    assert len(p.net.seen) == 1 and p.net.seen[0].shape == (30, 2)
    torch.manual_seed(3)
    z = q.torch_distribution({"x": x}).rsample((5,))
    manual = td.Bernoulli(logits=p.net.linear(z), validate_args=False).log_prob(x).sum(-1).mean(0)
    torch.testing.assert_close(value, manual)


def test_nested_expectations_and_a_prior_inside_them():
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    prior_w = Normal("p(w)", loc=0.0, scale=1.0, features_shape=[3])
    p = Normal("p(x|z,w)", net=Gaussian(5, 4))
    x = torch.randn(7, 4)
    torch.manual_seed(5)
    value = E(q, E(prior_w, LogProb(p), sample_shape=2), sample_shape=3).eval({"x": x})
    assert value.shape == (7,)
    torch.manual_seed(5)
    z = q.torch_distribution({"x": x}).rsample((3,))              # (3, 7, 2)
    w = td.Normal(torch.zeros(3), torch.ones(3)).rsample((2, 3, 7))  # (2, 3, 7, 3)
    params = p.net(z.expand(2, 3, 7, 2).reshape(-1, 2), w.reshape(-1, 3))
    log_p = td.Normal(params["loc"], params["scale"]).log_prob(x.repeat(6, 1)).sum(-1).view(2, 3, 7)
    torch.testing.assert_close(value, log_p.mean((0, 1)))


def test_closed_form_kl_matches_torch_and_monte_carlo():
    q, q2 = Normal("q(z|x)", net=Gaussian(4, 3)), Normal("r(z|x)", net=Gaussian(4, 3))
    x = torch.randn(4, 4)
    exact = KL(q, q2).eval({"x": x})
    reference = td.kl_divergence(q.torch_distribution({"x": x}), q2.torch_distribution({"x": x})).sum(-1)
    torch.testing.assert_close(exact, reference)
    estimate = KL(q, q2, analytic=False, sample_shape=20000).eval({"x": x})
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0.05)


def test_entropy_and_cross_entropy():
    q = Normal("q(z|x)", net=Gaussian(4, 3))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[3])
    x = torch.randn(4, 4)
    torch.testing.assert_close(Entropy(q).eval({"x": x}), q.torch_distribution({"x": x}).entropy().sum(-1))
    closed = CrossEntropy(q, prior).eval({"x": x})
    estimate = E(q, -LogProb(prior), sample_shape=20000).eval({"x": x})
    torch.testing.assert_close(closed, estimate, atol=0.05, rtol=0.02)
    torch.testing.assert_close(Entropy(q, analytic=False, sample_shape=20000).eval({"x": x}),
                               Entropy(q).eval({"x": x}), atol=0.05, rtol=0.02)


def test_cross_entropy_of_a_q_without_a_closed_form_entropy_is_estimated():
    """Poisson has a closed-form KL but no closed-form entropy: the cross-entropy is the Monte Carlo estimate."""
    from pgm.distributions import Poisson
    rate = torch.tensor([[0.5, 2.0], [4.0, 1.0]])
    q = Poisson("q(n|x)", net=lambda x: {"rate": x})
    p = Poisson("p(n)", rate=3.0, features_shape=[2])
    got = CrossEntropy(q, p, sample_shape=100_000).eval({"x": rate})
    draws = td.Poisson(rate).sample((100_000,))
    expected = -td.Poisson(3.0).log_prob(draws).sum(-1).mean(0)
    torch.testing.assert_close(got, expected, atol=0.03, rtol=0)


def test_relaxed_categorical_kl_is_the_categorical_one():
    q = RelaxedCategorical("q(y|x)", net=Logits(4, 3), temperature=0.7)
    prior = Categorical("p(y)", probs=torch.tensor([0.2, 0.3, 0.5]))
    x = torch.randn(5, 4)
    logits = q.net(x)["logits"]
    reference = td.kl_divergence(td.Categorical(logits=logits), td.Categorical(probs=prior.probs))
    torch.testing.assert_close(KL(q, prior).eval({"x": x}), reference)
    torch.testing.assert_close(Entropy(q).eval({"x": x}), td.Categorical(logits=logits).entropy())


def test_enumeration_sums_over_the_classes():
    q_y = Categorical("q(y|x)", net=Logits(4, 3))
    p = Normal("p(x|y)", net=Gaussian(3, 4))
    x = torch.randn(5, 4)
    value = E(q_y, LogProb(p), enumerate=True).eval({"x": x})
    probs = q_y.net(x)["logits"].softmax(-1)
    manual = 0
    for k in range(3):
        y = nn.functional.one_hot(torch.full((5,), k), 3).float()
        manual = manual + probs[:, k] * p.log_prob({"x": x, "y": y})
    torch.testing.assert_close(value, manual)


def test_an_enumerated_variable_reaches_its_own_network_once_per_value():
    """E(q, f, enumerate=True): a network of the variable alone (a decoder p(x|y)) runs on the K values, not on K
    per example, and the sum is the same as over the values expanded per example."""
    q_y = Categorical("q(y|x)", net=Logits(4, 3))
    decoder = Recorder(3, 4)
    p = Bernoulli("p(x|y)", net=decoder)
    x = torch.rand(5, 4).round()
    value = E(q_y, LogProb(p), enumerate=True).eval({"x": x})
    assert [tuple(seen.shape) for seen in decoder.seen] == [(3, 3)]
    probs = q_y.net(x)["logits"].softmax(-1)
    classes = torch.eye(3)
    per_class = td.Bernoulli(logits=decoder.linear(classes)[:, None]).log_prob(x).sum(-1)  # (K, B)
    torch.testing.assert_close(value, (probs.T * per_class).sum(0))


def test_iwae_is_exact_with_the_true_posterior():
    # p(z) = N(0, 1), p(x|z) = N(z, 1): p(x) = N(0, 2) and q(z|x) = N(x/2, 1/2) is the exact posterior
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[1])
    p = Normal("p(x|z)", net=lambda z: {"loc": z, "scale": torch.ones_like(z)})
    q = Normal("q(z|x)", net=lambda x: {"loc": x / 2, "scale": torch.full_like(x, math.sqrt(0.5))})
    x = torch.randn(6, 1)
    exact = td.Normal(0.0, math.sqrt(2.0)).log_prob(x).sum(-1)
    for k in (1, 10):
        torch.testing.assert_close(IWAE(p * prior, q, sample_shape=k).eval({"x": x}), exact)


def test_iwae_tightens_towards_the_marginal():
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[1])
    p = Normal("p(x|z)", net=lambda z: {"loc": z, "scale": torch.ones_like(z)})
    q = Normal("q(z|x)", net=lambda x: {"loc": torch.zeros_like(x), "scale": torch.ones_like(x)})
    x = torch.full((2000, 1), 1.5)
    exact = td.Normal(0.0, math.sqrt(2.0)).log_prob(x[0]).sum()
    bounds = [IWAE(p * prior, q, sample_shape=k).eval({"x": x}).mean() for k in (1, 50)]
    assert bounds[0] < bounds[1] < exact + 0.01
    assert abs(bounds[1] - exact) < 0.05


def test_parameters_are_values_given_at_evaluation():
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    x = torch.randn(3, 4)
    loss = (Parameter("beta") * KL(q, prior)).mean()
    base = KL(q, prior).mean().eval({"x": x})
    torch.testing.assert_close(loss.eval({"x": x}, beta=0.25), 0.25 * base)
    torch.testing.assert_close(loss.eval({"x": x}, beta=torch.tensor(2.0)), 2 * base)


def test_arithmetic_evaluates_like_the_formula():
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    x = torch.randn(3, 4)
    kl, h = KL(q, prior).eval({"x": x}), Entropy(q).eval({"x": x})
    loss = (abs(1 - KL(q, prior)) * 2 - Entropy(q) / 4 + 0.5)
    torch.testing.assert_close(loss.eval({"x": x}), (1 - kl).abs() * 2 - h / 4 + 0.5)
    torch.testing.assert_close(loss.sum().eval({"x": x}), ((1 - kl).abs() * 2 - h / 4 + 0.5).sum())
    constant = (KL(prior, prior) + 1).sum()  # constant over the batch: summed once per example
    torch.testing.assert_close(constant.eval({"x": x}), torch.tensor(3.0))


def test_gradients_flow_through_relaxed_labels():
    q_y = RelaxedCategorical("q(y|x)", net=Logits(4, 3), temperature=0.5)
    p = Normal("p(x|y)", net=Gaussian(3, 4))
    loss = -E(q_y, LogProb(p)).mean()
    loss.eval({"x": torch.randn(5, 4)}).backward()
    assert q_y.net.linear.weight.grad is not None and q_y.net.linear.weight.grad.abs().sum() > 0


def test_joint_expectation_shares_draws_with_its_factor_terms(ss_hmvae):
    d = ss_hmvae
    seen = []
    d["q_z"].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    q = d["q_a"] * d["q_z"]
    p = d["p_x"] * d["p_w"] * d["p_a"] * d["p_z"] * d["p_y"]
    loss = E(q, LogProb(p) - LogProb(q)) + E(d["q_a"], E(d["q_z"], LogProb(d["p_z"])))
    y = nn.functional.one_hot(torch.arange(4) % 3, 3).float()
    value = loss.eval({"x": torch.rand(4, 6), "w": torch.rand(4, 5), "y": y})
    assert value.shape == (4,) and torch.isfinite(value).all()
    assert seen[0] is seen[-1]  # q(z|a,y) saw the same draw of a in both terms


def ss_hmvae_kl_by_hand(d, seen, inputs, alpha, beta):
    """The SS-HMVAE-kl objective (docs/papers.md section 7c) per example, written out with torch.distributions at
    the draws the networks saw: a and y from q(z|a,y)'s inputs, z from p(a|z,y)'s; y is drawn where not given."""
    x, w = inputs["x"], inputs["w"]
    a, y = seen[d["q_z"].net]
    z, y_of_p_a = seen[d["p_a"].net]
    assert torch.equal(y_of_p_a, y)

    def normal(params, v):
        return td.Normal(params["loc"], params["scale"]).log_prob(v).sum(-1)

    def bernoulli(params, v):
        return td.Bernoulli(logits=params["logits"], validate_args=False).log_prob(v).sum(-1)

    def kl(q, p):
        return td.kl_divergence(td.Normal(q["loc"], q["scale"]), td.Normal(p["loc"], p["scale"])).sum(-1)

    k = d["sizes"]["y"]
    q_a = d["q_a"].net(x, w)
    log_q_y = (y * torch.log_softmax(d["q_y"].net(a)["logits"], -1)).sum(-1)
    log_p = (bernoulli(d["p_x"].net(a), x) + bernoulli(d["p_w"].net(a), w) + normal(d["p_a"].net(z, y), a)
             + td.Normal(0.0, 1.0).log_prob(z).sum(-1) + (y * math.log(1 / k)).sum(-1))
    log_q = normal(q_a, a) + normal(d["q_z"].net(a, y), z)
    divergence = kl(q_a, d["q_ax"].net(x)) + kl(q_a, d["q_aw"].net(w))
    if "y" in inputs:  # labelled: the bound, the classifier's log-likelihood of the given label, the KL terms
        assert torch.equal(y, inputs["y"])
        return log_p - log_q + alpha * log_q_y - beta * divergence
    return log_p - (log_q + log_q_y) - beta * divergence  # unlabelled: y is drawn from q(y|a) too


@pytest.mark.parametrize("labelled", [True, False])
def test_ss_hmvae_kl_objectives_are_the_papers_written_by_hand(ss_hmvae, labelled):
    """The value and the gradient of each SS-HMVAE-kl objective equal those of the same formula in plain torch on
    the same weights and draws (the gradients reach the weights through the draws as well)."""
    from test_loss_latex import ss_hmvae_kl_objectives
    objective = ss_hmvae_kl_objectives(ss_hmvae)[0 if labelled else 1]
    inputs = {"x": torch.rand(8, 6).round(), "w": torch.rand(8, 5).round()}
    if labelled:
        inputs["y"] = nn.functional.one_hot(torch.arange(8) % 3, 3).float()
    seen = {}
    for name in ("q_z", "p_a"):
        ss_hmvae[name].net.register_forward_pre_hook(lambda module, args: seen.setdefault(module, args))
    value = -objective.mean().eval(inputs, alpha=2.0, beta=0.5)
    assert set(seen) == {ss_hmvae["q_z"].net, ss_hmvae["p_a"].net}  # each ran once, on the draws
    by_hand = -ss_hmvae_kl_by_hand(ss_hmvae, seen, inputs, alpha=2.0, beta=0.5).mean()
    torch.testing.assert_close(value, by_hand)
    weights = [p for name in ("q_a", "q_z", "q_y", "q_ax", "q_aw", "p_x", "p_w", "p_a")
               for p in ss_hmvae[name].parameters()]
    gradients = torch.autograd.grad(value, weights, allow_unused=True, retain_graph=True)
    expected = torch.autograd.grad(by_hand, weights, allow_unused=True)
    for got, want in zip(gradients, expected):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want)
    assert gradients[0].abs().sum() > 0  # q(a|x,w)'s weights get a gradient


def test_means_over_named_data_sets_use_their_own_inputs():
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    a, b = torch.randn(3, 4), torch.randn(5, 4)
    loss = KL(q, prior).mean("labelled") + 2 * KL(q, prior).sum("unlabelled")
    value = loss.eval({"labelled": {"x": a}, "unlabelled": {"x": b}})
    torch.testing.assert_close(value, KL(q, prior).eval({"x": a}).mean() + 2 * KL(q, prior).eval({"x": b}).sum())
    with pytest.raises(KeyError, match=r"needs input `unlabelled` \(`unlabelled` is used by the data set"):
        loss.eval({"labelled": {"x": a}})
    with pytest.raises(KeyError, match=r"data set `labelled`: the loss needs input `x`"):
        loss.eval({"labelled": {"w": a}, "unlabelled": {"x": b}})
    with pytest.raises(ValueError, match="a data set's name must be an identifier"):
        KL(q, prior).mean("two words")


def test_cached_network_outputs_keep_their_inputs_alive():
    """The per-evaluation cache is keyed by the identity of the inputs; it keeps them alive, so a tensor made
    later in the same evaluation can never take a freed input's id and get that input's output."""
    from pgm._scope import Context
    q = Normal("q(z|x)", net=Gaussian(4, 2))
    context = Context.from_inputs({"x": torch.zeros(3, 4)})
    # Without the reference, CPython hands a freed tensor's id to the next one at once (reference counting frees
    # it when its name is rebound; no garbage collection is needed, which would take seconds in a long session).
    for i in range(20):
        context.values["x"] = torch.full((3, 4), float(i))
        params, _ = q.parameters_given(context)
        torch.testing.assert_close(params["loc"], q.net(context.values["x"])["loc"])
