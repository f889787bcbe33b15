"""The relaxed families: categorical / Bernoulli scoring, the Concrete density, and the temperature buffer."""
import pytest
import torch
import torch.distributions as td
from torch.nn.functional import one_hot

from pgm.distributions import RelaxedBernoulli, RelaxedCategorical

BATCH, K = 5, 4


def _logits_net(x):
    return {"logits": 2 * x}


@pytest.fixture
def x():
    return torch.randn(BATCH, K)


def test_relaxed_categorical_log_prob_is_the_categorical_one(x):
    q = RelaxedCategorical("q(y|x)", net=_logits_net, temperature=0.5)
    labels = torch.randint(K, (BATCH,))
    y = one_hot(labels, K).float()
    got = q.log_prob({"x": x, "y": y})
    torch.testing.assert_close(got, td.Categorical(logits=2 * x).log_prob(labels))
    torch.testing.assert_close(got, td.OneHotCategorical(logits=2 * x).log_prob(y))
    # not the Concrete density, and not a Bernoulli over the K entries
    near = (y + 1e-6) / (1 + K * 1e-6)
    concrete = td.RelaxedOneHotCategorical(torch.tensor(0.5), logits=2 * x).log_prob(near)
    assert not torch.allclose(got, concrete, atol=1e-2)
    assert not torch.allclose(got, td.Bernoulli(logits=2 * x).log_prob(y).sum(-1), atol=1e-2)


def test_relaxed_categorical_log_prob_of_a_relaxed_value_is_sum_y_log_pi(x):
    q = RelaxedCategorical("q(y|x)", net=_logits_net, temperature=0.5)
    y = q.sample({"x": x})["y"]
    torch.testing.assert_close(q.log_prob({"x": x, "y": y}), (y * (2 * x).log_softmax(-1)).sum(-1))


def test_relaxed_categorical_concrete_density_follows_the_temperature(x):
    q = RelaxedCategorical("q(y|x)", net=_logits_net, temperature=0.5, density="concrete")
    y = torch.randn(BATCH, K).softmax(-1)
    torch.testing.assert_close(q.log_prob({"x": x, "y": y}),
                               td.RelaxedOneHotCategorical(torch.tensor(0.5), logits=2 * x).log_prob(y))
    q.temperature = 0.3
    torch.testing.assert_close(q.log_prob({"x": x, "y": y}),
                               td.RelaxedOneHotCategorical(torch.tensor(0.3), logits=2 * x).log_prob(y))


@pytest.mark.parametrize("density", ["categorical", "concrete"])
def test_relaxed_categorical_entropy_is_the_categorical_one(x, density):
    q = RelaxedCategorical("q(y|x)", net=_logits_net, temperature=0.5, density=density)
    torch.testing.assert_close(q.entropy({"x": x}), td.Categorical(logits=2 * x).entropy())


def test_relaxed_bernoulli_scores_as_a_bernoulli(x):
    q = RelaxedBernoulli("q(y|x)", net=_logits_net, temperature=0.5)
    y = torch.bernoulli(torch.full((BATCH, K), 0.5))
    torch.testing.assert_close(q.log_prob({"x": x, "y": y}), td.Bernoulli(logits=2 * x).log_prob(y).sum(-1))
    relaxed = q.sample({"x": x})["y"]
    p = (2 * x).sigmoid()
    torch.testing.assert_close(q.log_prob({"x": x, "y": relaxed}),
                               (relaxed * p.log() + (1 - relaxed) * (1 - p).log()).sum(-1))
    torch.testing.assert_close(q.entropy({"x": x}), td.Bernoulli(logits=2 * x).entropy().sum(-1))


@pytest.mark.parametrize("family, reference", [
    (RelaxedCategorical, td.RelaxedOneHotCategorical),
    (RelaxedBernoulli, td.RelaxedBernoulli),
], ids=["categorical", "bernoulli"])
def test_temperature_is_a_buffer_updated_in_place(x, family, reference):
    q = family("q(y|x)", net=_logits_net, temperature=0.5)
    renamed = q.replace_var(y="c")
    buffer = q.temperature
    assert dict(q.named_buffers())["temperature"] is buffer
    q.temperature = 0.3
    assert q.temperature is buffer and renamed.temperature is buffer
    assert buffer.item() == pytest.approx(0.3)
    q.temperature = torch.tensor(0.25)
    assert q.temperature is buffer and buffer.item() == pytest.approx(0.25)
    # the draw uses the new temperature: the same as torch's sampler at 0.25 with the same seed
    torch.manual_seed(3)
    got = q.sample({"x": x})["y"]
    torch.manual_seed(3)
    torch.testing.assert_close(got, reference(torch.tensor(0.25), logits=2 * x).rsample())
    torch.manual_seed(3)
    torch.testing.assert_close(renamed.sample({"x": x})["c"], got)


@pytest.mark.parametrize("family", [RelaxedCategorical, RelaxedBernoulli], ids=["categorical", "bernoulli"])
def test_temperature_given_as_a_tensor_is_not_aliased(family):
    given = torch.tensor(0.5)
    q = family("q(y|x)", net=_logits_net, temperature=given)
    q.temperature = 0.1
    assert given.item() == 0.5 and q.temperature.item() == pytest.approx(0.1)


@pytest.mark.parametrize("family", [RelaxedCategorical, RelaxedBernoulli], ids=["categorical", "bernoulli"])
@pytest.mark.parametrize("bad", [0.0, -0.5, torch.tensor(-1.0)], ids=["zero", "negative", "tensor"])
def test_non_positive_temperature_raises(family, bad):
    q = family("q(y|x)", net=_logits_net, temperature=0.5)
    with pytest.raises(ValueError, match=r"q\(y\|x\): temperature must be positive; got -?[01]\.[05]"):
        q.temperature = bad
    assert q.temperature.item() == 0.5
    with pytest.raises(ValueError, match=r"q\(y\|x\): temperature must be positive; got -?[01]\.[05]"):
        family("q(y|x)", net=_logits_net, temperature=bad)


def test_temperature_survives_dtype_and_state_dict():
    q = RelaxedCategorical("p(y)", probs=torch.full((K,), 1.0 / K), temperature=0.5)
    q.temperature = 0.2
    q64 = q.to(torch.float64)
    assert q64.temperature.dtype == torch.float64 and q64.temperature.item() == pytest.approx(0.2)
    fresh = RelaxedCategorical("p(y)", probs=torch.full((K,), 1.0 / K), temperature=1.0)
    fresh.load_state_dict(q.state_dict())
    assert fresh.temperature.item() == pytest.approx(0.2)


def test_low_temperature_samples_approach_the_categorical():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    q = RelaxedCategorical("p(y)", probs=probs, temperature=0.01)
    y = q.sample({}, sample_shape=(20000,))["y"]
    assert bool((y.max(-1).values > 0.9).float().mean() > 0.95)
    frequencies = one_hot(y.argmax(-1), K).float().mean(0)
    torch.testing.assert_close(frequencies, probs, atol=0.015, rtol=0)  # 4.5 standard errors at n=20000


def test_bad_density_raises():
    with pytest.raises(ValueError, match=r"density must be 'categorical' or 'concrete'; got 'gumbel'"):
        RelaxedCategorical("q(y|x)", net=_logits_net, density="gumbel")
