"""Sum(..., marginalize="y"): a discrete state summed out of whole sequences by the forward algorithm. Values and
gradients equal a brute-force sum over every path of states in plain torch (itertools.product), with and without
masks (padding at the end or at the start), with a series carried beside the state, for Bernoulli codes, and for
states summed out step by step; it trains compiled as eager, prints as a sum over paths, and bad use is named."""
import itertools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pgm.distributions import Bernoulli, Categorical, Normal
from pgm.losses import E, KL, LogProb, Sum
from pgm.models import Model

K, V, T, B = 3, 4, 4, 5


class Table(nn.Module):
    """Logits from the concatenated one-hot (or zero) inputs: a learned table, with a bias for the zero input."""

    def __init__(self, i, o):
        super().__init__()
        self.linear = nn.Linear(i, o, dtype=torch.float64)
        nn.init.normal_(self.linear.weight)

    def forward(self, *inputs):
        return {"logits": self.linear(torch.cat(inputs, -1))}


def hmm(emission_inputs=K):
    torch.manual_seed(0)
    p_y = Categorical("p(y|y_prev)", net=Table(K, K))
    p_x = Categorical("p(x|y)" if emission_inputs == K else "p(x|y,x_prev)", net=Table(emission_inputs, V))
    return p_y, p_x


def symbols(n=B, steps=T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(V, (n, steps), generator=g), V).to(torch.float64)


def brute_force(p_y, p_x, x, real, with_x_prev=False):
    """log sum over every path of states through the real steps of each sequence, one sequence at a time."""
    out = []
    for b in range(x.shape[0]):
        steps = [t for t in range(x.shape[1]) if real[b, t]]
        paths = itertools.product(range(K), repeat=len(steps))  # one empty path where no step is real: log 1
        out.append(torch.logsumexp(torch.stack([path_log_prob(p_y, p_x, x[b], steps, path, with_x_prev)
                                                for path in paths]), 0))
    return torch.stack(out)


def path_log_prob(p_y, p_x, x, steps, path, with_x_prev=False):
    """log p(x, y) of one sequence x (T, V) along one path of states through its real ``steps``: the initial state
    y_0 = 0 (and x_0 = 0) before the first real step, the previous real step's after."""
    y_prev, x_prev = torch.zeros(K, dtype=x.dtype), torch.zeros(V, dtype=x.dtype)
    total = torch.zeros((), dtype=x.dtype)
    for t, state in zip(steps, path):
        y = F.one_hot(torch.tensor(state), K).to(x.dtype)
        total = total + p_y.net(y_prev)["logits"].log_softmax(-1)[state]
        emitted = p_x.net(y, x_prev)["logits"] if with_x_prev else p_x.net(y)["logits"]
        total = total + (emitted.log_softmax(-1) * x[t]).sum()
        y_prev, x_prev = y, x[t]
    return total


def gradients(value, *modules):
    params = [w for m in modules for w in m.parameters()]
    return torch.cat([g.flatten() for g in torch.autograd.grad(value, params)])


def log_px(p_y, p_x, **kwargs):
    return Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y", **kwargs.pop("carry", {})},
               initial={"y_prev": torch.zeros(K, dtype=torch.float64), **kwargs.pop("initial", {})},
               marginalize="y", **kwargs)


def test_the_log_likelihood_of_an_hmm_is_the_sum_over_every_path():
    p_y, p_x = hmm()
    x = symbols()
    loss = log_px(p_y, p_x)
    assert loss.latex() == r"\log \sum_{y_{1:T}} \prod_{t=1}^{T} p(x_t,y_t|y_{t-1})"
    assert loss.input_var == ["x"]  # y is summed out, not an input
    value = loss.eval({"x": x})
    exact = brute_force(p_y, p_x, x, torch.ones(B, T, dtype=torch.bool))
    torch.testing.assert_close(value, exact)
    torch.testing.assert_close(gradients(value.sum(), p_y, p_x), gradients(exact.sum(), p_y, p_x))


@pytest.mark.parametrize("padding", ["end", "start"])
def test_padded_steps_leave_the_sum_as_it_was(padding):
    p_y, p_x = hmm()
    x = symbols()
    lengths = torch.tensor([4, 3, 1, 0, 2])
    real = torch.arange(T) < lengths[:, None]
    if padding == "start":  # the real steps last: the first of them starts from the initial state
        real = real.flip(-1)
    value = log_px(p_y, p_x, mask="mask").eval({"x": x, "mask": real})
    exact = brute_force(p_y, p_x, x, real)
    torch.testing.assert_close(value, exact)
    assert value[3] == 0  # no real step: log 1
    torch.testing.assert_close(gradients(value.sum(), p_y, p_x), gradients(exact.sum(), p_y, p_x))
    if padding == "end":
        by_length = log_px(p_y, p_x, length="n").eval({"x": x, "n": lengths})
        torch.testing.assert_close(by_length, value)


def test_a_carried_series_goes_along_with_the_summed_state():
    """p(x_t|y_t,x_{t-1}): the previous symbol is carried beside the state, and held on padded steps."""
    p_y, p_x = hmm(emission_inputs=K + V)
    x = symbols()
    real = (torch.arange(T) < torch.tensor([4, 2, 3, 1, 4])[:, None]).flip(-1)
    loss = log_px(p_y, p_x, carry={"x_prev": "x"}, initial={"x_prev": torch.zeros(V, dtype=torch.float64)},
                  mask="mask")
    value = loss.eval({"x": x, "mask": real})
    exact = brute_force(p_y, p_x, x, real, with_x_prev=True)
    torch.testing.assert_close(value, exact)
    torch.testing.assert_close(gradients(value.sum(), p_y, p_x), gradients(exact.sum(), p_y, p_x))


def test_bernoulli_codes_are_summed_out_like_classes():
    """A state of D = 2 bits: its 4 codes are the values summed over."""
    torch.manual_seed(2)
    d, steps = 2, 3
    p_y = Bernoulli("p(y|y_prev)", net=Table(d, d))
    p_x = Normal("p(x|y)", net=lambda y: {"loc": y @ torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64),
                                         "scale": torch.ones(2, dtype=torch.float64)})
    x = torch.randn(B, steps, 2, dtype=torch.float64)
    loss = Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"},
               initial={"y_prev": torch.zeros(d, dtype=torch.float64)}, marginalize="y")
    value = loss.eval({"x": x})
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64)
    paths = []
    for path in itertools.product(range(len(codes)), repeat=steps):
        y_prev, total = torch.zeros(B, d, dtype=torch.float64), 0.0
        for t, c in enumerate(path):
            y = codes[c].expand(B, d)
            total = total + torch.distributions.Bernoulli(logits=p_y.net(y_prev)["logits"]).log_prob(y).sum(-1)
            total = total + torch.distributions.Normal(p_x.net(y)["loc"], 1.0).log_prob(x[:, t]).sum(-1)
            y_prev = y
        paths.append(total)
    exact = torch.logsumexp(torch.stack(paths), 0)
    torch.testing.assert_close(value, exact)
    torch.testing.assert_close(gradients(value.sum(), p_y), gradients(exact.sum(), p_y))


def test_an_uncarried_state_is_summed_out_step_by_step():
    """A mixture at every step, p(x_t) = sum_y p(y) p(x_t|y): the sum over paths is the sum of the steps' logs;
    any step loss prints as log sum exp."""
    torch.manual_seed(3)
    p_y = Categorical("p(y)", logits=nn.Parameter(torch.randn(K, dtype=torch.float64)))
    p_x = Categorical("p(x|y)", net=Table(K, V))
    x = symbols()
    loss = Sum(LogProb(p_x) + LogProb(p_y), series=["x"], marginalize="y")
    assert loss.latex() == (r"\log \sum_{y_{1:T}} \exp \sum_{t=1}^{T} \left[\log p(x_t|y_t) + \log p(y_t)\right]")
    value = loss.eval({"x": x})
    classes = torch.eye(K, dtype=torch.float64)
    per_class = p_x.net(classes)["logits"].log_softmax(-1) @ x.transpose(1, 2)  # (B, K, T): log p(x_t|y = k)
    exact = torch.logsumexp(per_class + p_y.logits.log_softmax(-1)[:, None], 1).sum(-1)
    torch.testing.assert_close(value, exact)
    torch.testing.assert_close(gradients(value.sum(), p_x), gradients(exact.sum(), p_x))


def test_maximum_likelihood_training_compiled_equals_eager(compiled_graphs):
    x = symbols(n=8).float()
    mask = torch.arange(T) < torch.tensor([4, 3, 2, 4, 1, 4, 4, 2])[:, None]
    runs = []
    for compile in (False, "inductor"):
        p_y, p_x = (d.float() for d in hmm())
        loss = -Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(K)},
                    marginalize="y", mask="mask").mean()
        model = Model(loss, [p_y, p_x], optimizer_params={"lr": 0.05}, compile=compile)
        runs.append([model.train({"x": x, "mask": mask}) for _ in range(5)])
    assert compiled_graphs, "the step was not compiled"
    assert runs[1] == pytest.approx(runs[0], rel=1e-5)
    assert runs[0][-1] < runs[0][0]


def test_the_posterior_of_each_state_given_the_whole_sequence():
    """posterior(): p(y_t|x_{1:T}) at every real step (0 at padded ones), against the normalized weights of every
    path of states, one sequence at a time."""
    p_y, p_x = hmm()
    x = symbols()
    real = (torch.arange(T) < torch.tensor([4, 3, 1, 0, 2])[:, None]).flip(-1)
    got = log_px(p_y, p_x, mask="mask").posterior({"x": x, "mask": real})
    assert got.shape == (B, T, K) and not got.requires_grad
    expected = torch.zeros(B, T, K, dtype=torch.float64)
    with torch.no_grad():
        for b in range(B):
            steps = [t for t in range(T) if real[b, t]]
            paths = list(itertools.product(range(K), repeat=len(steps)))
            weights = torch.stack([path_log_prob(p_y, p_x, x[b], steps, path) for path in paths]).softmax(0)
            for path, weight in zip(paths, weights):
                for t, state in zip(steps, path):
                    expected[b, t, state] += weight
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.sum(-1), real.to(torch.float64))
    with pytest.raises(ValueError, match=r"posterior\(\) is the posterior of a state summed out of the sequence; "
                                         r"build the Sum with marginalize='y'"):
        Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(K)}).posterior()


def test_the_most_probable_path_is_the_best_of_every_path():
    """most_probable(): the Viterbi path, one-hot at the real steps and 0 at padded ones, against the best of every
    path of states, one sequence at a time."""
    p_y, p_x = hmm()
    x = symbols(seed=4)
    real = (torch.arange(T) < torch.tensor([4, 3, 1, 0, 2])[:, None]).flip(-1)
    real[0, 1] = False  # a hole inside a sequence
    got = log_px(p_y, p_x, mask="mask").most_probable({"x": x, "mask": real})
    expected = torch.zeros(B, T, K, dtype=torch.float64)
    with torch.no_grad():
        for b in range(B):
            steps = [t for t in range(T) if real[b, t]]
            paths = list(itertools.product(range(K), repeat=len(steps)))
            best = max(paths, key=lambda path: path_log_prob(p_y, p_x, x[b], steps, path).item())
            for t, state in zip(steps, best):
                expected[b, t, state] = 1
    assert torch.equal(got, expected)
    unmasked = log_px(p_y, p_x).most_probable({"x": x})
    with torch.no_grad():
        for b in range(B):
            paths = list(itertools.product(range(K), repeat=T))
            best = max(paths, key=lambda path: path_log_prob(p_y, p_x, x[b], range(T), path).item())
            assert unmasked[b].argmax(-1).tolist() == list(best)


def test_a_state_impossible_twice_over_gets_zero_gradient_not_nan():
    """A state the initial distribution rules out (-inf logit) that also cannot emit the symbol seen: the value
    and the gradient are those of the sum over both paths in plain torch (0 for the impossible one, not nan)."""
    init = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    emit = nn.Parameter(torch.tensor([[0.0, 0.5], [0.0, 0.0]], dtype=torch.float64))
    ruled_out = torch.tensor([0.0, -torch.inf], dtype=torch.float64)
    silent = torch.tensor([[0.0, 0.0], [-torch.inf, 0.0]], dtype=torch.float64)
    p_y = Categorical("p(y|y_prev)", net=lambda y_prev: {"logits": (init + ruled_out).expand(y_prev.shape)})
    p_x = Categorical("p(x|y)", net=lambda y: {"logits": y @ (emit + silent).nan_to_num(neginf=-1e300)})
    x = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)  # one sequence of one step: symbol 0
    loss = Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"},
               initial={"y_prev": torch.zeros(2, dtype=torch.float64)}, marginalize="y")
    value = loss.eval({"x": x})
    exact = torch.logsumexp((init + ruled_out).log_softmax(-1) + (emit + silent).log_softmax(-1)[:, 0], 0)
    torch.testing.assert_close(value[0], exact)
    got = torch.autograd.grad(value.sum(), [init, emit])
    want = torch.autograd.grad(exact, [init, emit])
    for a, b in zip(got, want):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(loss.posterior({"x": x}), torch.tensor([[[1.0, 0.0]]], dtype=torch.float64))


def test_the_initial_value_takes_the_data_s_dtype_whatever_input_comes_first():
    """float64 networks, an initial value given in float32, and the mask the first input: the initial value is
    cast to the data's dtype (it was left float32 when the first input was not floating)."""
    p_y, p_x = hmm()
    x, real = symbols(), torch.ones(B, T, dtype=torch.bool)
    hidden = Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(K)},
                 mask="mask", marginalize="y")
    chain = Sum(LogProb(Categorical("p(x|x_prev)", net=Table(V, V))), series=["x"], carry={"x_prev": "x"},
                initial={"x_prev": torch.zeros(V)}, mask="mask")
    for loss in (hidden, chain):
        torch.testing.assert_close(loss.eval({"mask": real, "x": x}), loss.eval({"x": x, "mask": real}))


def test_bad_use_is_named():
    p_y, p_x = hmm()
    step = LogProb(p_x * p_y)
    initial = {"y_prev": torch.zeros(K, dtype=torch.float64)}
    with pytest.raises(ValueError, match=r"marginalize='z': no distribution of the step generates `z` alone"):
        Sum(step, series=["x"], carry={"y_prev": "y"}, initial=initial, marginalize="z")
    with pytest.raises(ValueError, match=r"marginalize='x': `x` is a series"):
        Sum(step, series=["x"], carry={"y_prev": "y"}, initial=initial, marginalize="x")
    q = Normal("q(z|x)", net=lambda x: {"loc": x[..., :1], "scale": torch.ones(1, dtype=torch.float64)})
    p_z = Normal("p(x|z)", net=lambda z: {"loc": z.expand(z.shape[:-1] + (V,)), "scale": torch.ones(V)})
    with pytest.raises(ValueError, match=r"Normal q\(z\|x\) has no finite support to sum over; only a discrete"):
        Sum(E(q, LogProb(p_z)), series=["x"], marginalize="z")
    q_y = Categorical("q(y|x,y_prev)", net=Table(V + K, K))
    with pytest.raises(ValueError, match=r"the step draws `y` itself \(an expectation over it\)"):
        Sum(E(q_y, LogProb(p_x)) - KL(q_y, p_y), series=["x"], carry={"y_prev": "y"}, initial=initial,
            marginalize="y")
    two = Categorical("p(y|y_prev,y_prev2)", net=Table(2 * K, K))
    with pytest.raises(ValueError, match=r"\['y_prev', 'y_prev2'\] all carry `y`; the forward algorithm"):
        Sum(LogProb(p_x * two), series=["x"], carry={"y_prev": "y", "y_prev2": "y"}, marginalize="y")
    z_net = Normal("p(z|y,z_prev)", net=lambda y, z_prev: {"loc": y + z_prev, "scale": torch.ones(K, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"the carried \['z_prev'\] come from draws or distributions"):
        Sum(E(z_net, LogProb(p_x * p_y)), series=["x"], carry={"y_prev": "y", "z_prev": "z"}, initial=initial,
            marginalize="y")
    loss = Sum(step, series=["x"], carry={"y_prev": "y"}, initial=initial, marginalize="y")
    with pytest.raises(ValueError, match=r"sums `y` out of every path \(marginalize='y'\) and draws nothing"):
        loss.draws({"x": symbols()})
    with pytest.raises(ValueError, match=r"^Sum over t: the series \['x'\] have no steps \(T = 0 along dim 1\)"):
        loss.eval({"x": symbols(steps=0)})
    wide = Bernoulli("p(y|y_prev)", net=Table(17, 17))
    emit = Normal("p(x|y)", net=lambda y: {"loc": y[..., :1], "scale": torch.ones(1, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"^Sum over t: marginalize='y': p\(y\|y_prev\): enumerating its 17 elements "
                                         r"of 2 values each is 131072 configurations \(more than 65536\); the forward "
                                         r"algorithm would evaluate the step on every pair"):
        Sum(LogProb(emit * wide), series=["x"], carry={"y_prev": "y"},
            initial={"y_prev": torch.zeros(17, dtype=torch.float64)}, marginalize="y").eval(
            {"x": torch.randn(2, 3, 1, dtype=torch.float64)})
    with pytest.raises(ValueError, match=r"most_probable\(\) is the best path of a state summed out of the sequence"):
        Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial=initial).most_probable()
