"""The caches of one evaluation live in its Context, under typed keys (pgm._scope): a draw is shared by every term
of the evaluation and read back through Context.draws_of, a network runs once per evaluation and inputs, a Sum
step draws afresh; the forward algorithm evaluates its step once for every step; a state with too many values is
refused with a named exception that is still a ValueError."""
import pytest
import torch
from torch import nn

from pgm import Context
from pgm._errors import TooManyConfigurationsError
from pgm._scope import Draw, NetworkOutput
from pgm.distributions import Bernoulli, Categorical, Normal
from pgm.losses import E, KL, LogProb, Sum


class Counted(nn.Module):
    """A linear network of the concatenated inputs that counts its calls."""

    def __init__(self, i, o, parameters="logits"):
        super().__init__()
        self.linear, self.parameters_, self.calls = nn.Linear(i, o, dtype=torch.float64), parameters, 0

    def forward(self, *inputs):
        self.calls += 1
        out = self.linear(torch.cat(inputs, -1))
        if self.parameters_ == "logits":
            return {"logits": out}
        return {"loc": out, "scale": torch.ones_like(out)}


def test_a_draw_is_kept_under_its_key_and_shared():
    net = Counted(4, 2, "normal")
    q = Normal("q(z|x)", net=net)
    context = Context.from_inputs({"x": torch.randn(3, 4, dtype=torch.float64)})
    first, second = q.sample(context), q.sample(context)
    assert first["z"] is second["z"] and net.calls == 1
    drawn = context.draws_of([q])
    assert len(drawn) == 1
    key, values, lead = drawn[0]
    assert isinstance(key, Draw) and key.distribution is q and key.sample_shape == () and key.reparameterized
    assert key.lead_shape == (3,) and key.conditions[0] is context["x"]
    assert values["z"] is first["z"] and lead == 1
    assert context.lookup(NetworkOutput(q, (context["x"],), (1,))) is not None  # the network's output, once
    assert context.draws_of([Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])]) == []
    q.sample(context, sample_shape=4)  # another shape: another draw
    assert [k.sample_shape for k, _, _ in context.draws_of([q])] == [(), (4,)]


def test_a_key_finds_the_entry_of_the_same_tensors_never_of_equal_ones():
    q = Normal("q(z|x)", net=Counted(4, 2, "normal"))
    x = torch.zeros(3, 4, dtype=torch.float64)
    context = Context.from_inputs({"x": x})
    context.store(Draw(q, (), True, torch.Size([3]), (x,)), "entry")
    assert context.lookup(Draw(q, (), True, torch.Size([3]), (x,))) == "entry"
    assert context.lookup(Draw(q, (), True, torch.Size([3]), (x.clone(),))) is None
    assert context.lookup(Draw(q, (), False, torch.Size([3]), (x,))) is None
    assert context.lookup(NetworkOutput(q, (x,), (1,))) is None
    assert context.cached(NetworkOutput(q, (x,), (1,)), lambda: "made") == "made"
    assert context.cached(NetworkOutput(q, (x,), (1,)), lambda: "made again") == "made"


def test_a_child_shares_the_cache_and_afresh_starts_an_empty_one():
    q = Normal("q(z|x)", net=Counted(4, 2, "normal"))
    context = Context.from_inputs({"x": torch.randn(3, 4, dtype=torch.float64)})
    z = q.sample(context)["z"]
    child = context.child({}, {}, context.lead_shape)
    assert q.sample(child)["z"] is z
    fresh = context.afresh({"w": torch.ones(3, 1)}, {"w": 1})
    assert fresh.draws_of([q]) == [] and "w" in fresh and "w" not in context
    assert q.sample(fresh)["z"] is not z
    assert len(context.draws_of([q])) == 1  # nothing drawn afresh is shared back


def test_kl_and_expectation_share_one_network_call_per_evaluation():
    net = Counted(4, 4, "normal")
    q = Normal("q(z|x)", net=net)
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    p = Normal("p(x|z)", net=lambda z: {"loc": z, "scale": torch.ones_like(z)})
    (KL(q, prior) - E(q, LogProb(p))).eval({"x": torch.randn(5, 4, dtype=torch.float64)})
    assert net.calls == 1


@pytest.mark.parametrize("steps", [1, 3, 12])
@pytest.mark.parametrize("masked", [False, True])
def test_the_forward_algorithm_evaluates_the_emission_once_whatever_the_number_of_steps(steps, masked):
    k, v = 3, 5
    transition, emission = Counted(k, k), Counted(k, v)
    p_y, p_x = Categorical("p(y|y_prev)", net=transition), Categorical("p(x|y)", net=emission)
    loss = Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"},
               initial={"y_prev": torch.zeros(k, dtype=torch.float64)}, marginalize="y",
               mask="mask" if masked else None)
    x = nn.functional.one_hot(torch.randint(v, (4, steps)), v).to(torch.float64)
    inputs = {"x": x, "mask": torch.ones(4, steps, dtype=torch.bool)} if masked else {"x": x}
    loss.eval(inputs)
    assert emission.calls == 1
    assert transition.calls == (1 if steps == 1 and not masked else 2)  # from the initial value, from the K values


def test_too_many_values_is_a_named_value_error():
    wide = Bernoulli("p(y|y_prev)", net=Counted(17, 17))
    emit = Normal("p(x|y)", net=lambda y: {"loc": y[..., :1], "scale": torch.ones(1, dtype=torch.float64)})
    with pytest.raises(TooManyConfigurationsError) as caught:
        wide.enumerate_support({"y_prev": torch.zeros(2, 17, dtype=torch.float64)})
    assert isinstance(caught.value, ValueError)
    assert caught.value.count == ("p(y|y_prev): enumerating its 17 elements of 2 values each is 131072 "
                                  "configurations (more than 65536)")
    assert str(caught.value).startswith(caught.value.count + "; use the score-function estimator")
    loss = Sum(LogProb(emit * wide), series=["x"], carry={"y_prev": "y"},
               initial={"y_prev": torch.zeros(17, dtype=torch.float64)}, marginalize="y")
    with pytest.raises(ValueError, match=r"^Sum over t: marginalize='y': p\(y\|y_prev\): enumerating") as caught:
        loss.eval({"x": torch.randn(2, 3, 1, dtype=torch.float64)})
    assert isinstance(caught.value, TooManyConfigurationsError)
