"""The estimators of E in one registry (pgm/losses/_estimators.py): the names and defaults E has always had, an
estimator of one's own registered from outside, the one score-function surrogate, and the mixture read through its
public API only."""
import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import pgm
from pgm.distributions import Bernoulli, Categorical, Density, Mixture, Normal
from pgm.losses import E, Estimator, LogProb, register_estimator
from pgm.losses import _estimators

from loss_nets import Gaussian, Logits

PGM = Path(pgm.__file__).resolve().parent
BUILT_IN = ("reparameterized", "score_function", "enumerate", "stratified")


@pytest.fixture
def registry():
    """The registry, put back as it was after the test."""
    before = dict(_estimators.ESTIMATORS)
    yield _estimators.ESTIMATORS
    _estimators.ESTIMATORS.clear()
    _estimators.ESTIMATORS.update(before)


def test_the_built_in_estimators_and_their_defaults():
    assert tuple(_estimators.ESTIMATORS)[:4] == BUILT_IN
    q_z = Normal("q(z|x)", net=Gaussian(2, 3))
    q_b = Bernoulli("q(z|x)", net=Logits(2, 3))
    mixture = Mixture([q_z, Normal("q(z|w)", net=Gaussian(2, 3))])
    p = Normal("p(x|z)", net=Gaussian(3, 2))
    assert [E(q, LogProb(p)).estimator for q in (q_z, q_b, mixture)] == ["reparameterized", "score_function",
                                                                          "stratified"]
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): estimator must be one of \('reparameterized', "
                                         r"'score_function', 'enumerate', 'stratified'.*\); got 'reinforce'\.$"):
        E(q_b, LogProb(p), estimator="reinforce")
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): estimator must be one of .*; got \['enumerate'\]\.$"):
        E(q_b, LogProb(p), estimator=["enumerate"])


def test_score_term_is_zero_with_the_score_gradient():
    logits = nn.Parameter(torch.tensor([0.3, -0.7]))
    log_q = torch.log_softmax(logits, -1)
    signal = torch.tensor([2.0, -1.0], requires_grad=True)
    term = _estimators.score_term(signal * 1, log_q)
    assert torch.equal(term, torch.zeros(2))
    term.sum().backward()
    want = torch.autograd.functional.jacobian(lambda w: torch.log_softmax(w, -1), logits.detach()).T @ torch.tensor(
        [2.0, -1.0])
    torch.testing.assert_close(logits.grad, want)
    assert signal.grad is None  # the learning signal is never differentiated


def test_the_surrogate_is_written_once():
    """Every score term in pgm goes through _estimators.score_term: `a - a.detach()` is written nowhere else."""
    pattern = re.compile(r"\b([\w.\[\]]+) - \1\.detach\(\)")
    found = [f"{path.relative_to(PGM)}: {line.strip()}" for path in sorted(PGM.rglob("*.py"))
             if path.name != "_estimators.py"
             for line in path.read_text().splitlines() if pattern.search(line)]
    assert not found, found


def test_distributions_import_nothing_from_losses():
    """The layering: pgm.distributions hosts no estimator and never imports pgm.losses (the estimators read a
    mixture through its public components and component_weights)."""
    assert not hasattr(Mixture, "stratified_expectation")
    offending = []
    for path in sorted((PGM / "distributions").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any("losses" in name.split(".") for name in names):
                offending.append(f"{path.relative_to(PGM)}:{node.lineno}")
    assert not offending, offending


def test_a_mixture_exposes_its_components_and_weights():
    q_x, q_w = Normal("q(z|x)", net=Gaussian(2, 3)), Normal("q(z|w)", net=Gaussian(4, 3))
    fixed = Mixture([q_x, q_w], [1.0, 3.0])
    torch.testing.assert_close(fixed.component_weights(), torch.tensor([0.25, 0.75]))
    assert list(fixed.components) == [q_x, q_w]
    net = nn.Linear(6, 2)
    learned = Mixture([q_x, q_w], lambda x, w: net(torch.cat([x, w], -1)))  # a network of the conditions, in order
    inputs = {"x": torch.randn(5, 2), "w": torch.randn(5, 4)}
    weights = learned.component_weights(inputs)
    torch.testing.assert_close(weights, torch.softmax(net(torch.cat([inputs["x"], inputs["w"]], -1)), -1))


class AtTheMean(Estimator):
    """f at q's mean: no draws."""

    name = "at_the_mean"
    draws = False

    def check(self, q, where):
        if len(q.var) != 1:
            raise ValueError(f"{where}: at_the_mean takes a distribution of one variable")

    def estimate(self, q, f, context, sample_shape, baseline):
        z, lead = q.var[0], len(context.batch_shape)
        return f(context.child({z: q.sample_mean(context)}, {z: lead}, context.batch_shape))


def test_an_estimator_registered_from_outside(registry):
    """One class and register_estimator: E takes its name, runs its checks and its estimate, and prints the same;
    the defaults and the other estimators are as they were."""
    assert register_estimator(AtTheMean) is AtTheMean
    assert tuple(registry) == BUILT_IN + ("at_the_mean",)
    q = Normal("q(z|x)", net=Gaussian(2, 3))
    p = Normal("p(x|z)", net=Gaussian(3, 2))
    x = torch.randn(4, 2)
    plug_in = E(q, LogProb(p), estimator="at_the_mean")
    assert plug_in.estimator == "at_the_mean" and E(q, LogProb(p)).estimator == "reparameterized"
    assert plug_in.latex() == E(q, LogProb(p)).latex()
    torch.testing.assert_close(plug_in.eval({"x": x}), p.log_prob({"x": x, "z": q.sample_mean({"x": x})}))
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): a baseline reduces the variance of the score-function "
                                         r"estimator only; this expectation uses estimator='at_the_mean'\.$"):
        E(q, LogProb(p), estimator="at_the_mean", baseline="moving_average")
    with pytest.raises(ValueError, match=r"^E over q\(z\|x\): estimator='at_the_mean' draws no samples; leave "
                                         r"sample_shape=3 out\.$"):
        E(q, LogProb(p), sample_shape=3, estimator="at_the_mean")
    with pytest.raises(ValueError, match=r"^E over q\(z,y\|x\): at_the_mean takes a distribution of one variable$"):
        E(q * Categorical("q(y|x)", net=Logits(2, 3)), LogProb(p), estimator="at_the_mean")
    density = Density("p(z)", lambda z: -z.pow(2).sum(-1))
    with pytest.raises(ValueError, match=r"^E over p\(z\): Density cannot be sampled"):
        E(density, LogProb(p))  # an estimator that draws refuses it before its own checks


def test_register_estimator_refuses_what_is_no_estimator(registry):
    with pytest.raises(TypeError, match=r"^register_estimator takes a subclass of pgm\.losses\.Estimator; got"):
        register_estimator(lambda q: q)
    class Nameless(Estimator):
        pass
    with pytest.raises(ValueError, match=r"^register_estimator: Nameless must set name"):
        register_estimator(Nameless)
    assert tuple(registry)[:4] == BUILT_IN and "Nameless" not in registry
