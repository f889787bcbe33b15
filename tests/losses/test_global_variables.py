"""Global variables: a variable drawn outside every data-set average is drawn once per evaluation and shared by the
examples; ``sum(size=N)`` is the data set's sum from a minibatch; ``Learned`` parameters stay in their domain."""
import pytest
import torch
from torch import nn

from pgm.distributions import Learned, Normal
from pgm.losses import E, KL, LogProb, Term
from pgm.models import Model

D, SIGMA = 3, 0.5


def regression(seen=None):
    """q(w) with learned parameters, the prior p(w) and the likelihood p(y|x,w) = N(y; x.w, SIGMA^2)."""
    q_w = Normal("q(w)", loc=Learned(torch.tensor([0.3, -0.2, 0.1])), scale=Learned(torch.tensor([0.5, 0.2, 0.8])))
    p_w = Normal("p(w)", loc=torch.zeros(D), scale=torch.ones(D))

    def likelihood(x, w):
        if seen is not None:
            seen.append(w)
        return {"loc": (x * w).sum(-1), "scale": torch.full_like(x[..., 0], SIGMA)}
    return q_w, p_w, Normal("p(y|x,w)", net=likelihood)


def by_hand(q_w, eps, x, y, size=None):
    """E_q(w)[sum_n log p(y_n|x_n,w)] - KL[q(w)||p(w)] with w = loc + scale eps, eps (K, D): torch.distributions."""
    params = q_w.get_params()
    w = params["loc"] + params["scale"] * eps  # (K, D)
    log_lik = torch.distributions.Normal(w @ x.T, SIGMA).log_prob(y)  # (K, n)
    data_sum = log_lik.sum(-1) if size is None else log_lik.mean(-1) * size
    prior = torch.distributions.Normal(torch.zeros(D), torch.ones(D))
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(params["loc"], params["scale"]), prior).sum()
    return data_sum.mean() - kl


@pytest.mark.parametrize("k", [1, 4])
def test_a_global_variable_is_drawn_once_per_batch_and_shared(k):
    seen = []
    q_w, p_w, p_y = regression(seen)
    x, y = torch.randn(7, D), torch.randn(7)
    objective = E(q_w, LogProb(p_y).sum(), sample_shape=k) - KL(q_w, p_w)
    torch.manual_seed(3)
    value = objective.eval({"x": x, "y": y})
    torch.manual_seed(3)
    eps = torch.randn(k, D)  # what q(w) draws: k weight vectors, not one per example
    assert value.shape == ()
    torch.testing.assert_close(value, by_hand(q_w, eps, x, y))
    (w,) = seen
    assert w.shape == (k * 7, D)  # the likelihood's network sees one w per draw, shared by the 7 examples
    assert torch.equal(w.reshape(k, 7, D), w.reshape(k, 7, D)[:, :1].expand(k, 7, D))


def test_a_local_variable_inside_the_average_is_drawn_per_example():
    # the same distribution under the average: one draw per example (a VAE's prior draws for a GAN, say)
    seen = []
    q_w, _, p_y = regression(seen)
    x, y = torch.randn(5, D), torch.randn(5)
    E(q_w, LogProb(p_y)).mean().eval({"x": x, "y": y})
    assert seen[0].shape == (5, D) and not torch.equal(seen[0][0], seen[0][1])


def test_the_minibatch_gradient_is_the_full_data_gradient_in_expectation():
    # with the same draw of w, the gradients of the N-scaled minibatch objective averaged over a partition of the
    # data into minibatches equal the full-data objective's gradient exactly: the estimate is unbiased
    torch.set_default_dtype(torch.float64)
    try:
        q_w, p_w, p_y = regression()
        n, batch = 12, 4
        x, y = torch.randn(n, D), torch.randn(n)
        objective = E(q_w, LogProb(p_y).sum(size=n), sample_shape=2) - KL(q_w, p_w)

        def gradient(index):
            q_w.zero_grad()
            torch.manual_seed(0)
            objective.eval({"x": x[index], "y": y[index]}).backward()
            return torch.cat([p.grad.flatten() for p in q_w.parameters()])
        full = gradient(torch.arange(n))
        minibatches = torch.stack([gradient(index) for index in torch.randperm(n).split(batch)])
        torch.testing.assert_close(minibatches.mean(0), full)
        assert not torch.allclose(minibatches[0], full)  # each minibatch alone is not the full gradient
        # and the full-data value is the hand-written one, the sum over all n examples
        torch.manual_seed(0)
        value = objective.eval({"x": x, "y": y})
        torch.manual_seed(0)
        torch.testing.assert_close(value, by_hand(q_w, torch.randn(2, D), x, y))
        # a minibatch's value is n times its mean
        torch.manual_seed(0)
        value = objective.eval({"x": x[:batch], "y": y[:batch]})
        torch.manual_seed(0)
        torch.testing.assert_close(value, by_hand(q_w, torch.randn(2, D), x[:batch], y[:batch], size=n))
    finally:
        torch.set_default_dtype(torch.float32)


def test_bayesian_linear_regression_converges_to_the_exact_posterior():
    # mean-field VI's optimum for a Gaussian linear model: the exact posterior mean, and variances 1/diag(precision)
    torch.manual_seed(0)
    n = 40
    x = torch.randn(n, D)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + SIGMA * torch.randn(n)
    q_w, p_w, p_y = regression()
    objective = E(q_w, LogProb(p_y).sum(size=n), sample_shape=32) - KL(q_w, p_w)
    model = Model(-objective, distributions=[q_w, p_y, p_w], optimizer=torch.optim.Adam, optimizer_params={"lr": 0.02})
    for step in range(1500):
        index = torch.randperm(n)[:20]  # minibatches of half the data
        model.train({"x": x[index], "y": y[index]})
    precision = torch.eye(D) + x.T @ x / SIGMA ** 2
    mean = torch.linalg.solve(precision, x.T @ y / SIGMA ** 2)
    learned = q_w.get_params()
    torch.testing.assert_close(learned["loc"].detach(), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(learned["scale"].detach(), precision.diagonal().rsqrt(), atol=0, rtol=0.1)


def test_global_variables_reach_a_named_data_set():
    seen = []
    q_w, p_w, p_y = regression(seen)
    x, y = torch.randn(6, D), torch.randn(6)
    objective = E(q_w, LogProb(p_y).sum("train", size=60)) - KL(q_w, p_w)
    torch.manual_seed(1)
    value = objective.eval({"train": {"x": x, "y": y}})
    torch.manual_seed(1)
    torch.testing.assert_close(value, by_hand(q_w, torch.randn(1, D), x, y, size=60))


def test_a_term_outside_the_averages_sees_the_global_draw_once():
    q_w, _, p_y = regression()
    x, y = torch.randn(4, D), torch.randn(4)
    norm = Term(lambda w: w.pow(2).sum(-1), r"\|w\|^2", "|w|^2")
    torch.manual_seed(2)
    value = E(q_w, LogProb(p_y).mean() - norm, sample_shape=3).eval({"x": x, "y": y})
    torch.manual_seed(2)
    eps = torch.randn(3, D)
    params = q_w.get_params()
    w = params["loc"] + params["scale"] * eps
    expected = (torch.distributions.Normal(w @ x.T, SIGMA).log_prob(y).mean(-1) - w.pow(2).sum(-1)).mean()
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "N"])
def test_a_data_set_size_must_be_a_positive_integer(size):
    _, _, p_y = regression()
    with pytest.raises(ValueError, match=r"sum\(size=\.\.\.\) is the number of examples in the whole data set, a "
                                         r"positive integer such as len\(train_set\); got"):
        LogProb(p_y).sum(size=size)


def test_learned_parameters_stay_in_their_domain_and_train():
    # one SGD step on -E_q[log N(w; 0, 0.05^2)]: the gradient in the scale s is about s / 0.05^2 = 400 s, so a step of
    # 0.01 takes a plain nn.Parameter scale from 1 to about -3, while a Learned one moves in log s and stays positive
    target = torch.distributions.Normal(0.0, 0.05)
    scales = {}
    for kind in (Learned, nn.Parameter):
        q = Normal("q(w)", loc=kind(torch.zeros(2)), scale=kind(torch.ones(2)))
        fit = -E(q, Term(lambda w: target.log_prob(w).sum(-1), r"\log r(w)", "log r(w)"), sample_shape=256)
        model = Model(fit.mean(), distributions=[q], optimizer=torch.optim.SGD, optimizer_params={"lr": 0.01})
        torch.manual_seed(0)
        model.train({"x": torch.zeros(1, 1)})
        scales[kind] = q.get_params()["scale"].detach()
    assert (scales[nn.Parameter] < -1).all()
    assert (scales[Learned] > 0).all() and (scales[Learned] < 0.1).all()  # exp(log 1 - about 4)
    q = Normal("q(w)", loc=Learned(torch.zeros(2)), scale=Learned(torch.ones(2)))
    assert [n for n, _ in q.named_parameters()] == ["learned.loc.unconstrained", "learned.scale.unconstrained"]


def test_learned_parameters_must_start_in_their_domain():
    with pytest.raises(ValueError, match=r"q\(w\): Learned\(scale=\.\.\.\) must start inside the parameter's domain "
                                         r"\(GreaterThan\(lower_bound=0\.0\)\); got \[-1\.0, 1\.0\]"):
        Normal("q(w)", loc=Learned(torch.zeros(2)), scale=Learned(torch.tensor([-1.0, 1.0])))
    with pytest.raises(TypeError, match="Learned takes the starting value, a tensor or a number; got list"):
        Learned([1.0, 2.0])
