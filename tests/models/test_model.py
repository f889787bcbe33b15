"""Users' VAE, JMVAE and M2, written only from API.md, train on CPU; Model saves, loads and reports misuse."""
import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Categorical, Normal, ProductOfNormal, RelaxedCategorical
from pgm.losses import E, KL, Entropy, LogProb, Parameter
from pgm.models import VAE, Model


def mlp(i, o):
    return nn.Sequential(nn.Linear(i, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, o))


class Encoder(nn.Module):
    def __init__(self, *sizes, latent=4):
        super().__init__()
        self.net = mlp(sum(sizes), 2 * latent)

    def forward(self, *inputs):
        loc, scale = self.net(torch.cat(inputs, -1)).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-4}


class Decoder(nn.Module):
    def __init__(self, *sizes, out):
        super().__init__()
        self.net = mlp(sum(sizes), out)

    def forward(self, *inputs):
        return {"logits": self.net(torch.cat(inputs, -1))}


@pytest.fixture
def data():
    torch.manual_seed(0)
    labels = torch.arange(64) % 2
    prototypes = torch.rand(2, 12).round()
    flips = (torch.rand(64, 12) < 0.05).float()
    images = (prototypes[labels] - flips).abs()
    return {"x": images[:, :6], "w": images[:, 6:], "y": nn.functional.one_hot(labels, 2).float()}


def fit(model, inputs, steps=150, **params):
    losses = [model.train(inputs, **params) for _ in range(steps)]
    return sum(losses[:10]) / 10, sum(losses[-10:]) / 10


def test_vae_trains(data):
    q, p = Normal("q(z|x)", net=Encoder(6)), Bernoulli("p(x|z)", net=Decoder(4, out=6))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    model = VAE(q, p, regularizer=KL(q, prior), optimizer_params={"lr": 1e-2})
    first, last = fit(model, {"x": data["x"]})
    assert last < 0.7 * first
    assert model.test({"x": data["x"]}) < first


def test_jmvae_with_a_product_of_experts_trains(data):
    q_x, q_w = Normal("q(z|x)", net=Encoder(6)), Normal("q(z|w)", net=Encoder(6))
    q = ProductOfNormal([q_x, q_w])
    p_x, p_w = Bernoulli("p(x|z)", net=Decoder(4, out=6)), Bernoulli("p(w|z)", net=Decoder(4, out=6))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    loss = (KL(q, prior) - E(q, LogProb(p_x * p_w))).mean()
    assert q.prob_text == "q(z|x,w)"
    model = Model(loss, [q, p_x, p_w], optimizer_params={"lr": 1e-2})
    first, last = fit(model, {"x": data["x"], "w": data["w"]})
    assert last < 0.7 * first
    # with the image alone the product keeps the x expert and the prior: it still evaluates
    x_only = (KL(q, prior) - E(q, LogProb(p_x))).mean()
    assert torch.isfinite(x_only.eval({"x": data["x"]}))


@pytest.mark.parametrize("enumerate", [False, True])
def test_m2_trains_and_classifies(data, enumerate):
    family = Categorical if enumerate else RelaxedCategorical
    kwargs = {} if enumerate else {"temperature": 0.5}
    q_y = family("q(y|x)", net=Decoder(6, out=2), **kwargs)
    q_z = Normal("q(z|x,y)", net=Encoder(6, 2))
    p_x = Bernoulli("p(x|z,y)", net=Decoder(4, 2, out=6))
    p_z = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    p_y = Categorical("p(y)", probs=torch.full((2,), 0.5))
    labelled = E(q_z, LogProb(p_x) + LogProb(p_z) - LogProb(q_z)) + LogProb(p_y)
    unlabelled = E(q_y, labelled, enumerate=enumerate) + Entropy(q_y)
    alpha = Parameter("alpha")
    loss = -(labelled + alpha * LogProb(q_y)).mean() - unlabelled.mean()
    assert loss.input_var == ["x", "y"]
    model = Model(loss, [q_y, q_z, p_x], optimizer_params={"lr": 1e-2})
    labelled_x, labelled_y = data["x"][:8], data["y"][:8]
    for _ in range(150):
        model.train({"x": labelled_x, "y": labelled_y}, alpha=1.0)
    q_y.eval()
    predicted = q_y.get_params({"x": data["x"]})["logits"].argmax(-1)
    assert (predicted == data["y"].argmax(-1)).float().mean() > 0.9


def test_save_and_load_restore_parameters_and_optimizer(tmp_path, data):
    def build():
        torch.manual_seed(1)
        q, p = Normal("q(z|x)", net=Encoder(6)), Bernoulli("p(x|z)", net=Decoder(4, out=6))
        return VAE(q, p, prior=Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4]))
    model = build()
    fit(model, {"x": data["x"]}, steps=5)
    model.save(tmp_path / "model.pt")
    torch.manual_seed(2)
    after = model.train({"x": data["x"]})
    restored = build()
    restored.load(tmp_path / "model.pt")
    torch.manual_seed(2)
    assert restored.train({"x": data["x"]}) == after
    for a, b in zip(model.distributions.parameters(), restored.distributions.parameters()):
        torch.testing.assert_close(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_test_mode_has_no_gradient_and_leaves_batchnorm_statistics(data):
    q, p = Normal("q(z|x)", net=Encoder(6)), Bernoulli("p(x|z)", net=Decoder(4, out=6))
    model = VAE(q, p, prior=Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4]))
    running = q.net.net[1].running_mean.clone()
    model.test({"x": data["x"]})
    torch.testing.assert_close(q.net.net[1].running_mean, running)
    assert all(t.grad is None for t in model.distributions.parameters())
    model.train({"x": data["x"]})
    assert not torch.equal(q.net.net[1].running_mean, running)


def test_gradient_clipping_rescales_the_gradient_vector_or_bounds_each_value():
    """A gradient (3, 4), of norm 5: clip_grad_norm=0.5 rescales the vector, a step of (0.3, 0.4) (clipping each
    value to 0.5 would step by (0.5, 0.5)); clip_grad_value=0.25 bounds each value, (0.25, 0.25)."""
    def step(**clip):
        weight = nn.Parameter(torch.zeros(1, 2))
        p = Normal("p(x)", loc=weight, scale=torch.ones(1, 2))
        model = Model(-LogProb(p).mean(), [p], optimizer=torch.optim.SGD, optimizer_params={"lr": 1.0}, **clip)
        model.train({"x": torch.tensor([[-3.0, -4.0]])})  # d/dloc of -log N(x|loc,1) = loc - x = (3, 4)
        return weight.detach()
    torch.testing.assert_close(step(), torch.tensor([[-3.0, -4.0]]))  # unclipped: the whole gradient
    torch.testing.assert_close(step(clip_grad_norm=0.5), torch.tensor([[-0.3, -0.4]]))
    torch.testing.assert_close(step(clip_grad_value=0.25), torch.tensor([[-0.25, -0.25]]))


def test_a_renamed_distribution_shares_its_parameters_once():
    q = Normal("q(z|x)", net=Encoder(6))
    q_a = q.replace_var(z="a")
    prior = Normal("p(a)", loc=0.0, scale=1.0, features_shape=[4])
    model = Model(KL(q_a, prior).mean(), [q, q_a])
    assert len(model.optimizer.param_groups[0]["params"]) == len(list(q.parameters()))


def test_model_misuse_is_explained(data):
    q, p = Normal("q(z|x)", net=Encoder(6)), Bernoulli("p(x|z)", net=Decoder(4, out=6))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    per_example = KL(q, prior) - E(q, LogProb(p))
    with pytest.raises(ValueError, match=r"the loss is per example \(shape \(64,\)\); reduce it over the batch "
                                         r"with \.mean\(\) or \.sum\(\)"):
        Model(per_example, [q, p]).train({"x": data["x"]})
    with pytest.raises(TypeError, match="Model: loss must be a pgm loss; got Tensor"):
        Model(torch.zeros(()), [q, p])
    with pytest.raises(ValueError, match="Model: the distributions have no trainable parameters"):
        Model(per_example.mean(), [prior])
    with pytest.raises(TypeError, match="Model: distributions must be a non-empty list of pgm distributions"):
        Model(per_example.mean(), [])
    with pytest.raises(ValueError, match=r"VAE: give exactly one of regularizer=KL\(encoder, prior\) or prior=prior"):
        VAE(q, p)


class GlobalGaussian(nn.Module):
    """The parameters of a global variable's q(w): a network of no inputs, its scale kept positive."""

    def __init__(self, features):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(features))
        self.raw_scale = nn.Parameter(torch.zeros(features))

    def forward(self):
        return {"loc": self.loc, "scale": nn.functional.softplus(self.raw_scale)}


@pytest.mark.parametrize("analytic", [True, False])
def test_a_global_variable_with_learned_parameters_trains_towards_its_target(analytic):
    torch.manual_seed(0)
    q = Normal("q(w)", net=GlobalGaussian(3))
    loc, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 1.0])
    target = Normal("p(w)", loc=loc, scale=scale)
    model = Model(KL(q, target, analytic=analytic).mean(), [q], optimizer_params={"lr": 0.05})
    inputs = {} if analytic else {"x": torch.zeros(64, 1)}  # Monte Carlo: one draw of w per example
    for _ in range(500):
        model.train(inputs)
    learned = q.get_params()
    tolerance = 1e-3 if analytic else 0.1
    assert torch.allclose(learned["loc"], loc, atol=tolerance)
    assert torch.allclose(learned["scale"], scale, atol=tolerance)


def test_a_network_of_no_inputs_gives_parameters_without_a_batch_dim():
    q = Normal("q(w)", net=GlobalGaussian(3))
    assert q.get_params()["loc"].shape == (3,)
    assert q.sample({}, sample_shape=5)["w"].shape == (5, 3)
    drawn = q.sample({"x": torch.zeros(4, 2)}, sample_shape=2)  # one draw per example of a batch
    assert drawn["w"].shape == (2, 4, 3)
    assert q.log_prob(drawn).shape == (2, 4)
    assert q.log_prob({"w": torch.zeros(5, 3)}).shape == (5,)
    assert q.entropy().shape == ()


def test_no_trainable_parameters_names_a_plain_function_net():
    module = Encoder(6)
    q = Normal("q(z|x)", net=lambda x: module(x))
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[4])
    with pytest.raises(ValueError, match=r"^Model: the distributions have no trainable parameters\. The net of "
                                         r"q\(z\|x\) \(net=.*<lambda>\) is a plain function, whose modules' "
                                         r"parameters Model cannot see: pass the nn.Module itself as net=, or wrap"):
        Model(KL(q, prior).mean(), [q])
