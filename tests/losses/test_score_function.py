"""E over a discrete latent: the score-function estimator (with and without baselines) and exact enumeration.
Gradients are compared with the exact gradient of the expectation computed in plain torch by summing over every
value of the latent (itertools.product), the values with the same computation on the same samples."""
import itertools
import math

import pytest
import torch
import torch.distributions as td
from torch import nn

from pgm.distributions import Bernoulli, Categorical, Deterministic, Normal
from pgm.losses import E, IWAE, KL, LogProb, MovingAverageBaseline, Parameter, Term
from pgm.models import Model, NonFiniteLossError

from loss_nets import Gaussian, Logits

B, D, DX = 4, 3, 2


@pytest.fixture
def model():
    torch.set_default_dtype(torch.float64)
    try:
        q = Bernoulli("q(z|x)", net=Logits(DX, D))
        p = Normal("p(x|z)", net=Gaussian(D, DX))
        yield q, p, torch.randn(B, DX)
    finally:
        torch.set_default_dtype(torch.float32)


def exact_objective(q, p, x):
    """sum_z q(z|x) log p(x|z) over the 2^D codes, in plain torch: the reference value and gradient."""
    logits = q.net(x)["logits"]
    total = 0
    for bits in itertools.product([0.0, 1.0], repeat=D):
        z = torch.tensor(bits).expand(B, D)
        weight = td.Bernoulli(logits=logits).log_prob(z).sum(-1).exp()
        params = p.net(z)
        total = total + weight * td.Normal(params["loc"], params["scale"]).log_prob(x).sum(-1)
    return total.mean()


def gradients(value, *modules):
    params = [w for m in modules for w in m.parameters()]
    return torch.cat([g.flatten() for g in torch.autograd.grad(value, params)])


@pytest.mark.parametrize("baseline", [None, "moving_average", "network"])
def test_score_function_gradient_equals_the_exact_gradient_in_expectation(model, baseline):
    q, p, x = model
    if baseline == "network":
        baseline = nn.Sequential(nn.Linear(DX, 1))
    estimate = E(q, LogProb(p), sample_shape=200_000, estimator="score_function", baseline=baseline).mean()
    if baseline == "moving_average":
        for _ in range(3):  # the moving average learns f's mean first (it is 0 on the first step)
            estimate.eval({"x": x})
        assert estimate.modules[0].value.abs() > 0
    exact = gradients(exact_objective(q, p, x), q, p)
    got = gradients(estimate.eval({"x": x}), q, p)
    # 200k samples: the Monte Carlo error of each coordinate is about 1% of the gradient's scale
    torch.testing.assert_close(got, exact, atol=0.03 * exact.abs().max().item(), rtol=0)


def test_the_value_is_the_expectation_not_the_surrogate(model):
    q, p, x = model
    loss = E(q, LogProb(p), sample_shape=5, baseline="moving_average")
    assert loss.latex() == r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]"  # the estimator does not show
    torch.manual_seed(2)
    value = loss.eval({"x": x})
    torch.manual_seed(2)
    z = td.Bernoulli(logits=q.net(x)["logits"]).sample((5,))
    params = p.net(z)
    torch.testing.assert_close(value, td.Normal(params["loc"], params["scale"]).log_prob(x).sum(-1).mean(0))


def test_baselines_lower_the_variance(model):
    q, p, x = model

    def variance(loss, repeats=200):
        grads = torch.stack([gradients(loss.eval({"x": x}).mean(), q) for _ in range(repeats)])
        return grads.var(0).sum()

    plain = variance(E(q, LogProb(p), estimator="score_function"))
    averaged = E(q, LogProb(p), estimator="score_function", baseline="moving_average")
    for _ in range(20):
        averaged.eval({"x": x})
    assert variance(averaged) < 0.5 * plain
    exact = variance(E(q, LogProb(p), enumerate=True), repeats=3)
    assert exact < 1e-20


def test_a_learned_baseline_is_trained_by_the_model(model):
    q, p, x = model
    net = nn.Linear(DX, 1)
    loss = -E(q, LogProb(p), estimator="score_function", baseline=net).mean()
    model_ = Model(loss, distributions=[q, p])
    trained = [w for g in model_.optimizer.param_groups for w in g["params"]]
    assert any(w is net.weight for w in trained)
    before = net.weight.detach().clone()
    model_.train({"x": x})
    assert not torch.equal(before, net.weight)
    assert "weight" in str(list(model_.state_dict()["distributions"]))


def test_moving_average_is_saved_and_not_updated_by_test(model):
    q, p, x = model
    loss = -E(q, LogProb(p), estimator="score_function", baseline=MovingAverageBaseline(0.5)).mean()
    model_ = Model(loss, distributions=[q, p])
    model_.train({"x": x})
    average = loss.modules[0]
    value = average.value.clone()
    model_.test({"x": x})
    assert torch.equal(average.value, value) and int(average.steps) == 1
    assert any(k.endswith("value") for k in model_.state_dict()["distributions"])


def test_enumeration_of_bernoulli_codes_is_exact(model):
    q, p, x = model
    value = E(q, LogProb(p), enumerate=True).eval({"x": x}).mean()
    exact = exact_objective(q, p, x)
    torch.testing.assert_close(value, exact)
    torch.testing.assert_close(gradients(value, q, p), gradients(exact, q, p))


def test_categorical_score_function_against_enumeration():
    q = Categorical("q(y|x)", net=Logits(2, 4))
    p = Normal("p(x|y)", net=Gaussian(4, 2))
    x = torch.randn(3, 2)
    exact = gradients(E(q, LogProb(p), enumerate=True).mean().eval({"x": x}), q, p)
    got = gradients(E(q, LogProb(p), sample_shape=200_000).mean().eval({"x": x}), q, p)
    torch.testing.assert_close(got, exact, atol=0.03 * exact.abs().max().item(), rtol=0)


def test_a_mixed_objective_trains_a_discrete_vae(model):
    q, p, x = model
    prior = Bernoulli("p(z)", probs=0.5, features_shape=[D])
    loss = -(E(q, LogProb(p), sample_shape=4, baseline="moving_average") - KL(q, prior)).mean()
    model_ = Model(loss, distributions=[q, p], optimizer_params={"lr": 0.05})
    exact = -(E(q, LogProb(p), enumerate=True) - KL(q, prior)).mean()
    start = exact.eval({"x": x}).item()
    for _ in range(60):
        model_.train({"x": x})
    assert exact.eval({"x": x}).item() < start - 0.5


def test_estimator_errors(model):
    q, p, x = model
    d = Deterministic("q(z|x)", net=lambda x: {"loc": x})
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): the score-function estimator needs log q\(z\|x\), but "
                                         r"Deterministic has no density"):
        E(d, LogProb(p), estimator="score_function")
    n = Normal("q(z|x)", net=Gaussian(DX, D))
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): a baseline reduces the variance of the score-function "
                                         r"estimator only; this expectation uses estimator='reparameterized'"):
        E(n, LogProb(p), baseline="moving_average")
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): estimator must be one of"):
        E(q, LogProb(p), estimator="reinforce")
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): enumerate=True and estimator='score_function' disagree"):
        E(q, LogProb(p), enumerate=True, estimator="score_function")
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): baseline must be 'moving_average', a "
                                         r"MovingAverageBaseline\(decay\) or a network"):
        E(q, LogProb(p), baseline="mean")
    with pytest.raises(ValueError, match=r"^MovingAverageBaseline: decay must be in \[0, 1\); got 1"):
        MovingAverageBaseline(1)
    prior = Bernoulli("p(z)", probs=0.5, features_shape=[D])
    with pytest.raises(ValueError, match=r"^E over p\(z\): a network baseline takes q's conditioning variables"):
        E(prior, LogProb(p), baseline=nn.Linear(1, 1))
    wrong = E(q, LogProb(p), baseline=nn.Linear(DX, 3))
    with pytest.raises(ValueError, match=r"^the baseline of E over q\(z\|x\) must return one value per example, "
                                         r"shape \(4,\) \(or \(4, 1\)\); got \(4, 3\)"):
        wrong.eval({"x": x})
    big = Bernoulli("q(z|x)", net=Logits(DX, 20))
    with pytest.raises(ValueError, match=r"^q\(z\|x\): enumerating its 20 elements of 2 values each is 1048576 "
                                         r"configurations \(more than 65536\); use the score-function estimator"):
        E(big, LogProb(p), enumerate=True).eval({"x": x})


def test_a_joint_of_continuous_and_discrete_factors_gets_both_gradients():
    """q(a|x) Normal (reparameterized) times q(y|a) Categorical (score function): against the same expectation with
    y summed out exactly, both estimated with many samples of a."""
    q_a = Normal("q(a|x)", net=Gaussian(2, 2))
    q_y = Categorical("q(y|a)", net=Logits(2, 3))
    p = Normal("p(x|a,y)", net=Gaussian(5, 2))
    x = torch.randn(3, 2)
    mixed = E(q_a * q_y, LogProb(p), sample_shape=400_000)
    assert mixed.estimator == "score_function"
    reference = E(q_a, E(q_y, LogProb(p), enumerate=True), sample_shape=400_000)
    got = gradients(mixed.mean().eval({"x": x}), q_a, q_y, p)
    exact = gradients(reference.mean().eval({"x": x}), q_a, q_y, p)
    torch.testing.assert_close(got, exact, atol=0.03 * exact.abs().max().item(), rtol=0)


@pytest.mark.parametrize("sign", [1, -1])
def test_a_learned_baseline_is_fitted_to_f_whatever_the_sign_of_the_expectation(sign):
    """Minimizing -E (the usual -ELBO) must fit the baseline to f as minimizing +E does, not push it away."""
    q = Bernoulli("q(z|x)", net=lambda x: {"logits": x})
    p = Normal("p(y|z)", net=lambda z: {"loc": z, "scale": torch.ones_like(z)})
    inputs = {"x": torch.zeros(64, 1), "y": torch.zeros(64, 1)}
    b = nn.Linear(1, 1)
    nn.init.zeros_(b.weight), nn.init.zeros_(b.bias)
    expectation = E(q, LogProb(p), estimator="score_function", baseline=b)
    model_ = Model((sign * expectation).mean(), [q, p], optimizer=torch.optim.SGD, optimizer_params={"lr": 0.1})
    for _ in range(100):
        model_.train(inputs)
    exact = E(q, LogProb(p), enumerate=True).eval(inputs).mean()  # log N(0; z, 1) averaged over z ~ Bernoulli(1/2)
    torch.testing.assert_close(b.bias.detach(), exact.reshape(1), atol=0.05, rtol=0)


def test_stratified_needs_a_mixture(model):
    q, p, _ = model
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): estimator='stratified' draws once per component of a "
                                         r"Mixture; Bernoulli is not one\.$"):
        E(q, LogProb(p), estimator="stratified")


def test_a_discrete_variable_is_drawn_once_and_shared_by_every_term():
    """The score-function E asks for a draw without gradient, a Term or a joint with one: a Categorical has no
    reparameterized draw, so all of them must get the same draw of y."""
    q_y = Categorical("q(y|x)", net=Logits(3, 50))
    q_z = Normal("q(z|x,y)", net=Gaussian(53, 2))
    seen = {}

    def recorder(tag):
        def record(y):
            seen[tag] = y
            return y.sum(-1) * 0
        return record

    loss = (E(q_y, Term(recorder("E"), "a")) + Term(recorder("Term"), "b", inputs={"y": q_y})
            + E(q_y * q_z, Term(recorder("joint"), "c")))
    loss.eval({"x": torch.randn(200, 3)})
    assert seen["E"] is seen["Term"] is seen["joint"]


def test_a_learned_baseline_is_fitted_to_the_mean_of_f_over_the_samples(model):
    """The baseline's gradient is that of 1/2 (b - f)^2 averaged over the K draws, b - mean_k f: with many draws,
    b minus the exact expectation (summed by enumeration), whatever K is."""
    q, p, x = model
    net = nn.Linear(DX, 1)
    exact = E(q, LogProb(p), enumerate=True).eval({"x": x}).detach()
    for k in (5_000, 20_000):
        net.zero_grad()
        E(q, LogProb(p), sample_shape=k, baseline=net).eval({"x": x}).mean().backward()
        b = net(x).squeeze(-1).detach()
        torch.testing.assert_close(net.bias.grad, ((b - exact) / B).sum().reshape(1), atol=0.05, rtol=0)


def test_a_learned_baseline_takes_conditions_drawn_by_an_enclosing_expectation():
    """q(y|x,z) under E over q(z|x) with 3 draws: x is (B, .), z is (3, B, .); the baseline network takes them
    broadcast, as q's network does, and leaves the value unchanged."""
    q_z = Normal("q(z|x)", net=Gaussian(3, 2))
    q_y = Categorical("q(y|x,z)", net=Logits(5, 4))
    p = Normal("p(x|y)", net=Gaussian(4, 3))
    x = torch.randn(6, 3)
    values = []
    class Baseline(nn.Linear):
        def forward(self, x, z):
            return super().forward(torch.cat([x, z], -1))

    for baseline in (None, Baseline(5, 1)):
        torch.manual_seed(0)
        values.append(E(q_z, E(q_y, LogProb(p), baseline=baseline), sample_shape=3).eval({"x": x}))
    assert values[1].shape == (6,)
    torch.testing.assert_close(values[1], values[0])


def test_vimco_leave_one_out_is_the_bound_with_one_log_weight_replaced():
    from pgm.losses._estimators import _leave_one_out
    log_w = torch.randn(5, 3) * 4
    for k in range(5):
        replaced = log_w.clone()
        replaced[k] = torch.cat([log_w[:k], log_w[k + 1:]]).mean(0)
        expected = torch.logsumexp(replaced, 0) - math.log(5)
        torch.testing.assert_close(_leave_one_out(log_w)[k], expected)


@pytest.mark.parametrize("count", [1, 3])
def test_iwae_over_a_categorical_gets_the_exact_gradient_in_expectation(count):
    """IWAE with a discrete proposal (VIMCO's score term, or plain REINFORCE for K=1) against the exact
    expectation of the bound over every tuple of K classes, value and gradient."""
    q = Categorical("q(y|x)", net=Logits(DX, 3))
    prior = Categorical("p(y)", logits=torch.tensor([0.3, -0.2, 0.1]))
    p = Normal("p(x|y)", net=Gaussian(3, DX))
    x = torch.randn(1, DX)
    modules = (q, p)

    def exact_bound():
        log_q = torch.log_softmax(q.net(x)["logits"], -1)[0]
        total = 0
        for ys in itertools.product(range(3), repeat=count):
            weights = []
            for y in ys:
                onehot = nn.functional.one_hot(torch.tensor([y]), 3).to(x.dtype)
                params = p.net(onehot)
                log_p = td.Normal(params["loc"], params["scale"]).log_prob(x).sum() + prior.logits.log_softmax(-1)[y]
                weights.append(log_p - log_q[y])
            prob = torch.stack([log_q[y] for y in ys]).sum().exp()
            total = total + prob * (torch.logsumexp(torch.stack(weights), 0) - math.log(count))
        return total

    exact = exact_bound()
    torch.manual_seed(0)
    many = x.expand(200_000, DX)
    bound = IWAE(p * prior, q, sample_shape=count)
    estimate = bound.eval({"x": many}).mean()
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)
    got, want = gradients(estimate, *modules), gradients(exact, *modules)
    torch.testing.assert_close(got, want, atol=0.04 * want.abs().max().item(), rtol=0)


def test_a_batch_level_f_gets_the_score_of_every_draw_of_the_batch():
    """f(z_1..z_B) = the batch mean of sum_d z_id, one number for the batch: its gradient is
    E[f sum_i grad log q(z_i)], against the exact gradient of mean_i sum_d sigmoid(logit_id)."""
    q = Bernoulli("q(z|x)", net=Logits(DX, D))
    x = torch.randn(B, DX)
    exact = torch.sigmoid(q.net(x)["logits"]).sum(-1).mean()
    want = gradients(exact, q)
    loss = E(q, Term(lambda z: z.sum(-1).mean(), "f"), baseline="moving_average")
    total, n = 0, 8000
    torch.manual_seed(0)
    for _ in range(n):
        total = total + gradients(loss.eval({"x": x}).mean(), q)
    torch.testing.assert_close(total / n, want, atol=0.1 * want.abs().max().item(), rtol=0)


def test_a_refused_non_finite_step_leaves_the_moving_average_as_it_was(model):
    q, p, x = model
    expectation = E(q, Parameter("w") * LogProb(p), baseline="moving_average")
    model_ = Model(-expectation.mean(), [q, p])
    model_.train({"x": x}, w=1.0)
    before = (expectation.baseline.value.clone(), expectation.baseline.steps.clone())
    with pytest.raises(NonFiniteLossError):
        model_.train({"x": x}, w=float("inf"))
    assert torch.equal(expectation.baseline.value, before[0]) and torch.equal(expectation.baseline.steps, before[1])
    assert math.isfinite(model_.train({"x": x}, w=1.0))  # it trains on


def test_elbo_takes_the_estimator_of_its_expectation(model):
    """ELBO(p, q, enumerate=True) is the exact bound, value and gradient, against plain torch summing over the
    2^D codes; a baseline and an estimator reach the expectation; a wrong one is refused as E refuses it."""
    from pgm.losses import ELBO
    q, p, x = model
    prior = Bernoulli("p(z)", probs=torch.full((D,), 0.3))
    elbo = ELBO(p * prior, q, enumerate=True)
    assert elbo.latex() == r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - D_{KL}\left[q(z|x)\|p(z)\right]"
    value = elbo.eval({"x": x}).mean()
    q_z = td.Bernoulli(logits=q.net(x)["logits"])
    exact = exact_objective(q, p, x) - td.kl_divergence(q_z, td.Bernoulli(probs=torch.full((B, D), 0.3))).sum(-1).mean()
    torch.testing.assert_close(value, exact)
    want = gradients(exact, q, p)
    torch.testing.assert_close(gradients(value, q, p), want)
    sampled = ELBO(p * prior, q, sample_shape=200_000, baseline="moving_average")
    expectation = sampled.children[0]
    assert expectation.estimator == "score_function" and expectation.baseline is not None
    for _ in range(3):  # the moving average learns f's mean first
        sampled.eval({"x": x})
    got = gradients(sampled.eval({"x": x}).mean(), q, p)
    torch.testing.assert_close(got, want, atol=0.03 * want.abs().max().item(), rtol=0)
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): a baseline reduces the variance of the score-function "
                                         r"estimator only; this expectation uses estimator='enumerate'"):
        ELBO(p * prior, q, enumerate=True, baseline="moving_average")
    normal = Normal("q(z|x)", net=Gaussian(DX, D))
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): enumerate=True sums over every value of a discrete "
                                         r"variable; Normal has no finite support"):
        ELBO(p * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[D]), normal, enumerate=True)
