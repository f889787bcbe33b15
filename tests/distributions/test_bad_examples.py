"""The table of bad examples: every misuse raises, and its message names what is wrong and where."""
import pytest
import torch
from torch import nn

from pgm._errors import MissingInputError
from pgm.distributions import (
    Bernoulli, Beta, Categorical, Deterministic, Dirichlet, Laplace, Normal, RelaxedBernoulli, set_validation,
)

BATCH = 6


class Encoder(nn.Module):
    def __init__(self, in_features=4, out_features=3):
        super().__init__()
        self.linear = nn.Linear(in_features, 2 * out_features)

    def forward(self, x):
        loc, scale = self.linear(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale)}


class TwoInputs(nn.Module):
    """One linear layer per input, as in API.md's Inference."""

    def __init__(self):
        super().__init__()
        self.fx, self.fw = nn.Linear(4, 6), nn.Linear(2, 6)

    def forward(self, x, w):
        loc, scale = (self.fx(x) + self.fw(w)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale)}


class Concatenated(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 6)

    def forward(self, x, w):
        loc, scale = self.linear(torch.cat([x, w], -1)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale)}


def x_(*shape):
    return torch.randn(*shape) if shape else torch.randn(BATCH, 4)


# (id, call, error, message): each call builds and uses a distribution the wrong way
BAD_EXAMPLES = [
    ("missing-input", lambda: Normal("q(z|x)", net=Encoder()).sample({"w": x_()}),
     MissingInputError, r"^q\(z\|x\) needs input `x`; got \['w'\]. Pass it in the inputs dict, e.g. \{'x': tensor\}"),
    ("missing-input-empty", lambda: Normal("q(z|x)", net=Encoder()).entropy(),
     MissingInputError, r"^q\(z\|x\) needs input `x`; got nothing"),
    ("missing-value", lambda: Normal("q(z|x)", net=Encoder()).log_prob({"x": x_()}),
     MissingInputError, r"^q\(z\|x\) needs input `z`; got \['x'\]"),
    ("missing-second-input", lambda: Normal("q(z|x,w)", net=TwoInputs()).sample({"x": x_(), "w": None}),
     MissingInputError, r"^q\(z\|x,w\) needs input `w`; got \['x'\]"),
    ("prior-missing-value", lambda: Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2]).log_prob({}),
     MissingInputError, r"^p\(z\) needs input `z`; got nothing"),
    ("inputs-not-a-dict", lambda: Normal("q(z|x)", net=Encoder()).sample(x_()),
     TypeError, r"inputs must be a dict that maps variable names to tensors, e.g. \{'x': x\}; got Tensor"),
    ("input-not-a-tensor", lambda: Normal("q(z|x)", net=Encoder()).sample({"x": [1.0, 2.0]}),
     TypeError, r"input `x` must be a torch.Tensor; got list. Convert it first"),
    # the network's shape errors, before any successful call
    ("wrong-event-shape", lambda: Normal("p(x|z)", net=Encoder(64)).sample({"z": x_(32, 32)}),
     ValueError, r"^p\(x\|z\) needs input `z` \(event shape \(64,\), the input size of a linear layer of its "
                 r"network\); got a tensor of shape \(32, 32\)\.$"),
    ("wrong-event-shape-second-input", lambda: Normal("q(z|x,w)", net=TwoInputs()).sample({"x": x_(), "w": x_(6, 5)}),
     ValueError, r"^q\(z\|x,w\) needs input `w` \(event shape \(2,\), .*\); got a tensor of shape \(6, 5\)\.$"),
    ("wrong-event-shape-concatenated",
     lambda: Normal("q(z|x,w)", net=Concatenated()).sample({"x": x_(), "w": x_(6, 5)}),
     ValueError, r"^q\(z\|x,w\): its network failed on inputs `x` of shape \(6, 4\), `w` of shape \(6, 5\) "
                 r"\(mat1 and mat2 shapes cannot be multiplied \(6x9 and 6x6\)\)\. Check that each input has the "
                 r"event shape the network expects, in the signature's order \['x', 'w'\]\.$"),
    ("network-fails", lambda: Normal("q(z|x)", net=lambda x: {"loc": x.view(-1, 7), "scale": x}).sample({"x": x_()}),
     ValueError, r"^q\(z\|x\): its network failed on inputs `x` of shape \(6, 4\) \(shape '\[-1, 7\]' is invalid"),
    # what the network returns
    ("net-returns-tensor", lambda: Normal("q(z|x)", net=lambda x: x).sample({"x": x_()}),
     TypeError, r"^q\(z\|x\): its network must return a dict of parameters such as \{'loc': \.\.\., 'scale': "
                r"\.\.\.\}; got Tensor\.$"),
    ("net-returns-tuple", lambda: Bernoulli("p(x|z)", net=lambda z: (z,)).log_prob({"z": x_(), "x": x_()}),
     TypeError, r"^p\(x\|z\): its network must return a dict of parameters such as \{'logits': \.\.\.\}; got tuple"),
    ("net-returns-wrong-names", lambda: Normal("q(z|x)", net=lambda x: {"mu": x, "scale": x.exp()}).sample(
        {"x": x_()}), ValueError,
     r"^q\(z\|x\) \(Normal\) expects its network to return the parameters \['loc', 'scale'\]; got \['mu', 'scale'\]"),
    ("net-returns-both-sets", lambda: Bernoulli("p(x|z)", net=lambda z: {"logits": z, "probs": z.sigmoid()}).sample(
        {"z": x_()}, reparam=False), ValueError,
     r"^p\(x\|z\) \(Bernoulli\) expects its network to return the parameters \['logits'\] or \['probs'\]; "
     r"got \['logits', 'probs'\]"),
    ("net-returns-too-few", lambda: Beta("p(x|z)", net=lambda z: {"concentration1": z.exp()}).sample({"z": x_()}),
     ValueError, r"\['concentration0', 'concentration1'\]; got \['concentration1'\]"),
    # parameter values (validation is on in these tests)
    ("negative-scale", lambda: Normal("q(z|x)", net=lambda x: {"loc": x, "scale": -x.abs()}).sample({"x": x_()}),
     ValueError, r"^q\(z\|x\): parameter `scale` must satisfy GreaterThan\(lower_bound=0\.0\); got values such as "
                 r"\[-[0-9.]+, -[0-9.]+, -[0-9.]+\] \(a tensor of shape \(6, 4\)\)\. End the network with softplus"),
    ("laplace-negative-scale", lambda: Laplace("q(z|x)", net=lambda x: {"loc": x, "scale": -x.abs()}).log_prob(
        {"x": x_(), "z": x_()}), ValueError, r"^q\(z\|x\): parameter `scale` must satisfy GreaterThan"),
    ("probs-above-one", lambda: Bernoulli("p(x|z)", net=lambda z: {"probs": z.abs() + 1}).log_prob(
        {"z": x_(), "x": x_()}), ValueError,
     r"^p\(x\|z\): parameter `probs` must satisfy Interval\(lower_bound=0\.0, upper_bound=1\.0\); got values such as "
     r"\[[0-9.]+, .*\] \(a tensor of shape \(6, 4\)\)\. End the network with sigmoid/softmax, or return 'logits' "
     r"instead\.$"),
    ("probs-below-zero", lambda: RelaxedBernoulli("p(x|z)", net=lambda z: {"probs": -z.abs()}).sample({"z": x_()}),
     ValueError, r"^p\(x\|z\): parameter `probs` must satisfy Interval"),
    ("categorical-probs-not-simplex", lambda: Categorical("p(y|z)", net=lambda z: {"probs": z.abs()}).sample(
        {"z": x_()}, reparam=False), ValueError, r"^p\(y\|z\): parameter `probs` must satisfy Simplex\(\)"),
    ("dirichlet-negative", lambda: Dirichlet("p(y|z)", net=lambda z: {"concentration": -z.abs()}).sample({"z": x_()}),
     ValueError, r"^p\(y\|z\): parameter `concentration` must satisfy .*softplus"),
    ("fixed-negative-scale", lambda: Normal("p(z)", loc=0.0, scale=-1.0, features_shape=[3]),
     ValueError, r"^p\(z\): parameter `scale` must satisfy GreaterThan\(lower_bound=0\.0\); got values such as "
                 r"\[-1\.0, -1\.0, -1\.0\] \(a tensor of shape \(3,\)\)"),
    ("fixed-probs-above-one", lambda: Bernoulli("p(x)", probs=torch.tensor([0.5, 1.5])),
     ValueError, r"^p\(x\): parameter `probs` must satisfy Interval\(.*\); got values such as \[1\.5\]"),
    # construction
    ("conditioned-without-network", lambda: Normal("p(x|z)"),
     ValueError, r"^p\(x\|z\) is conditioned on \['z'\] but has no network: pass net=\.\.\., or subclass Normal and "
                 r"define forward\(z\)\.$"),
    ("conditioned-with-fixed-parameters", lambda: Normal("p(x|z)", loc=0.0, scale=1.0),
     ValueError, r"^p\(x\|z\) is conditioned on \['z'\] but has no network"),
    ("prior-without-parameters", lambda: Normal("p(z)"),
     ValueError, r"^p\(z\) has no network, so give its parameters: \['loc', 'scale'\], e\.g\. "
                 r"Normal\('p\(z\)', loc=\.\.\., scale=\.\.\., features_shape=\[64\]\)\.$"),
    ("prior-missing-a-parameter", lambda: Normal("p(z)", loc=0.0, features_shape=[3]),
     ValueError, r"^p\(z\) has no network, so give its parameters: \['loc', 'scale'\]"),
    ("prior-two-parameter-sets", lambda: Bernoulli("p(x)", probs=0.5, logits=0.0),
     ValueError, r"^p\(x\) has no network, so give its parameters: \['logits'\] or \['probs'\], e\.g\. "
                 r"Bernoulli\('p\(x\)', logits=\.\.\., features_shape=\[64\]\)"),
    ("fixed-and-network", lambda: Normal("q(z|x)", net=Encoder(), loc=0.0),
     ValueError, r"^q\(z\|x\): parameters \['loc'\] are fixed but a network is given too; choose one\.$"),
    ("unknown-parameter", lambda: Normal("p(z)", mean=0.0, scale=1.0),
     TypeError, r"^Normal has no parameter \['mean'\]; its parameters are \['loc', 'scale'\]\.$"),
    # what a family cannot do
    ("deterministic-log-prob", lambda: Deterministic("p(z|x)", net=lambda x: {"loc": x}).log_prob(
        {"x": x_(), "z": x_()}), ValueError, r"^p\(z\|x\): Deterministic has no density; use it inside E"),
    ("deterministic-entropy", lambda: Deterministic("p(z)", loc=torch.zeros(3)).entropy(),
     ValueError, r"^H\[p\(z\)\]: Deterministic has no closed-form entropy; estimate it with Entropy\(q, analytic=False\)"),
    # a value scored with the wrong shape: images not flattened, the wrong width, class indices for one-hot labels
    ("value-not-flattened", lambda: Bernoulli("p(x|z)", net=lambda z: {"logits": z.repeat(1, 4)}).log_prob(
        {"z": x_(), "x": torch.rand(BATCH, 1, 4, 4)}),
     ValueError, r"^p\(x\|z\) scores `x` with event shape \(16,\) per example, a value of shape \(batch, 16\); "
                 r"got a tensor of shape \(6, 1, 4, 4\)\.$"),
    ("value-wrong-width", lambda: Normal("q(z|x)", net=Encoder()).log_prob({"x": x_(), "z": x_(BATCH, 2)}),
     ValueError, r"^q\(z\|x\) scores `z` with event shape \(3,\) per example, .*got a tensor of shape \(6, 2\)\.$"),
    ("class-indices-for-one-hot", lambda: Categorical("q(y|x)", net=lambda x: {"logits": x}).log_prob(
        {"x": x_(4, 4), "y": torch.tensor([0.0, 1.0, 2.0, 3.0])}),
     ValueError, r"^q\(y\|x\) scores `y` with event shape \(4,\) per example, a value of shape \(batch, 4\); "
                 r"got a tensor of shape \(4,\)\.$"),
    ("fixed-parameters-of-mismatched-shapes", lambda: Normal("p(z)", loc=torch.zeros(3), scale=torch.ones(4)),
     ValueError, r"^p\(z\): its parameters' shapes do not fit together: loc \(3,\), scale \(4,\); give each the "
                 r"event shape, or one that broadcasts to it\.$"),
    ("scalar-parameters-without-event-shape", lambda: Normal("p(z)", loc=0.0, scale=1.0),
     ValueError, r"^p\(z\): its parameters \['loc', 'scale'\] are numbers, so give the event shape: "
                 r"features_shape=\[64\] for a 64-d variable \(or \[\] for a scalar\)\.$"),
]


@pytest.mark.parametrize("call, error, message", [b[1:] for b in BAD_EXAMPLES], ids=[b[0] for b in BAD_EXAMPLES])
def test_bad_example_raises(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_wrong_event_shape_before_and_after_a_first_call():
    q = Normal("p(x|z)", net=Encoder(64))
    before = r"^p\(x\|z\) needs input `z` \(event shape \(64,\), the input size of a linear layer of its network\); "
    with pytest.raises(ValueError, match=before + r"got a tensor of shape \(32, 32\)\.$") as info:
        q.sample({"z": torch.randn(32, 32)})
    assert isinstance(info.value.__cause__, RuntimeError)  # the network's own error stays in the traceback
    q.sample({"z": torch.randn(32, 64)})
    after = r"^p\(x\|z\) needs input `z` \(event shape \(64,\)\); got a tensor of shape \(32, 32\)\.$"
    with pytest.raises(ValueError, match=after):
        q.sample({"z": torch.randn(32, 32)})
    with pytest.raises(ValueError, match=after):
        q.log_prob({"z": torch.randn(32, 32), "x": torch.randn(32, 3)})


def test_wrong_event_shape_of_a_sampled_input_shows_its_sample_dims():
    joint = Normal("p(x|a)", net=Encoder(5)) * Normal("p(a|c)", net=Encoder(2, 4))
    with pytest.raises(ValueError, match=r"^p\(x\|a\) needs input `a` \(event shape \(5,\), .*\); got a tensor of "
                                         r"shape \(3, 6, 4\)\.$"):
        joint.sample({"c": torch.randn(BATCH, 2)}, sample_shape=(3,))


def test_wrong_event_shape_after_a_first_call_names_the_input():
    q = Normal("q(z|x,w)", net=Concatenated())
    x, w = torch.randn(BATCH, 4), torch.randn(BATCH, 2)
    q.sample({"x": x, "w": w})
    with pytest.raises(ValueError, match=r"^q\(z\|x,w\) needs input `w` \(event shape \(2,\)\); got a tensor of "
                                         r"shape \(6, 5\)\.$"):
        q.sample({"x": x, "w": torch.randn(BATCH, 5)})


@pytest.mark.parametrize("family, net, value, finite", [
    (Normal, lambda z: {"loc": z, "scale": -z.abs()}, lambda: torch.randn(BATCH, 4), False),
    (Laplace, lambda z: {"loc": z, "scale": -z.abs()}, lambda: torch.randn(BATCH, 4), False),
    (Bernoulli, lambda z: {"probs": z.abs() + 1}, lambda: torch.ones(BATCH, 4), True),  # torch clamps probs
    (RelaxedBernoulli, lambda z: {"probs": -z.abs()}, lambda: torch.ones(BATCH, 4), True),
], ids=["normal", "laplace", "bernoulli", "relaxed-bernoulli"])
def test_validation_off_checks_nothing(family, net, value, finite):
    d = family("p(x|z)", net=net)
    inputs = {"z": torch.randn(BATCH, 4), "x": value()}
    with pytest.raises(ValueError, match=r"^p\(x\|z\): parameter `(scale|probs)` must satisfy"):
        d.log_prob(inputs)
    set_validation(False)
    got = d.log_prob(inputs)  # no error: the caller chose speed over checks
    assert got.shape == (BATCH,) and bool(torch.isfinite(got).all()) == finite
    if d.has_reparam:
        assert d.sample(inputs)["x"].shape == (BATCH, 4)
    set_validation(True)
    with pytest.raises(ValueError, match=r"must satisfy"):
        d.log_prob(inputs)
