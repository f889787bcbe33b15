"""Several objectives (``Model([Objective(...), ...])``), each with its own parameters and optimizer, stepped in
turn; checked against the same alternation written in plain PyTorch."""
import warnings

import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import KL, E, LogProb, Term
from pgm.models import Model, Objective, _compile

from model_nets import Decoder


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 1)

    def forward(self, x):
        return self.net(x).squeeze(-1)


def gan_like():
    """A toy adversarial pair: the critic separates data from the generator's relaxed draws, the generator
    fools it. Losses written with Term so that both use the generator's reparameterized sample."""
    torch.manual_seed(0)
    critic = Critic()
    generator = Normal("p(y|z)", net=lambda z: {"loc": decoder(z)["logits"], "scale": torch.ones(z.shape[0], 6)})
    decoder = Decoder()
    generator.extra = decoder
    real = Term(lambda x: critic(x), r"D(x)", inputs={"x": "x"})
    fake = Term(lambda y: critic(y), r"D(y)", inputs={"y": generator})
    fool = Term(lambda y: critic(y), r"D(y)", inputs={"y": generator})
    d_loss = (fake - real).mean()
    g_loss = (-fool).mean()
    return critic, decoder, generator, d_loss, g_loss


def batches(n=4):
    g = torch.Generator().manual_seed(3)
    return [{"x": torch.randn(8, 6, generator=g), "z": torch.randn(8, 2, generator=g)} for _ in range(n)]


def plain_torch(critic, decoder, data, every=1, lr=(0.05, 0.02)):
    d_opt = torch.optim.SGD(critic.parameters(), lr=lr[0], momentum=0.5)
    g_opt = torch.optim.SGD(decoder.parameters(), lr=lr[1], momentum=0.5)
    losses = []
    for i, b in enumerate(data):
        torch.manual_seed(10 + i)
        y = decoder.net(b["z"]) + torch.randn(8, 6)
        d = (critic(y) - critic(b["x"])).mean()
        d_opt.zero_grad()
        d.backward()
        d_opt.step()
        step = {"critic": d.item()}
        if i % every == 0:
            y = decoder.net(b["z"]) + torch.randn(8, 6)
            g = (-critic(y)).mean()
            g_opt.zero_grad()
            g.backward()
            g_opt.step()
            step["generator"] = g.item()
        losses.append(step)
    return losses


def pgm_model(every=1, compile=False):
    critic, decoder, generator, d_loss, g_loss = gan_like()
    model = Model([
        Objective(d_loss, [critic], optimizer=torch.optim.SGD, optimizer_params={"lr": 0.05, "momentum": 0.5}, name="critic"),
        Objective(g_loss, [decoder], optimizer=torch.optim.SGD, optimizer_params={"lr": 0.02, "momentum": 0.5},
                  name="generator",
                  every=every),
    ], compile=compile)
    return model, critic, decoder


def train(model, data):
    out = []
    for i, b in enumerate(data):
        torch.manual_seed(10 + i)
        out.append(model.train(b))
    return out


@pytest.mark.parametrize("every", [1, 2])
def test_objectives_step_in_turn_as_plain_torch_does(every):
    model, critic, decoder = pgm_model(every)
    got = train(model, batches())
    ref_critic, ref_decoder, *_ = gan_like()
    expected = plain_torch(ref_critic, ref_decoder, batches(), every)
    assert [sorted(g) for g in got] == [sorted(e) for e in expected]
    for g, e in zip(got, expected):
        for key in e:
            assert g[key] == pytest.approx(e[key], rel=1e-5, abs=1e-6)
    for a, b in zip(list(critic.parameters()) + list(decoder.parameters()),
                    list(ref_critic.parameters()) + list(ref_decoder.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_critic_step_leaves_the_generator_alone():
    model, critic, decoder = pgm_model()
    model.train(batches(1)[0])
    before = [p.detach().clone() for p in decoder.parameters()]
    grads = [p.grad.clone() for p in decoder.parameters()]
    critic_step, _ = model._steps
    critic_step.train(batches(2)[1], {}, True)
    assert all(torch.equal(a, b) for a, b in zip(before, decoder.parameters()))
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, decoder.parameters()))  # no gradient reached it


def test_compiled_objectives_match_eager(monkeypatch):
    monkeypatch.setattr(_compile, "BACKEND", "aot_eager")
    eager, *_ = pgm_model()
    compiled, *_ = pgm_model(compile="inductor")
    e, c = train(eager, batches()), train(compiled, batches())
    for a, b in zip(e, c):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert all(s.kind == "inductor" for s in compiled._steps)


def test_fit_records_each_objective_and_resumes_exactly(tmp_path):
    model, *_ = pgm_model(every=2)
    history = model.fit(batches(), 3, progress=False, checkpoint_dir=tmp_path / "a")
    assert set(history[0]) == {"epoch", "train_loss:critic", "train_loss:generator"}
    state = torch.load(tmp_path / "a" / "epoch-0003.pt", weights_only=True)
    assert set(state["optimizers"]) == {"critic", "generator"}
    assert state["optimizers"]["generator"]["state"]  # the generator's optimizer was stepped and saved
    stopped, *_ = pgm_model(every=2)
    stopped.fit(batches(), 2, progress=False, checkpoint_dir=tmp_path / "b")
    resumed, *_ = pgm_model(every=2)
    again = resumed.fit(batches(), 3, progress=False, checkpoint_dir=tmp_path / "b", resume="latest")
    assert again[-1] == pytest.approx(history[-1], rel=1e-6)
    for a, b in zip(model.distributions.parameters(), resumed.distributions.parameters()):
        torch.testing.assert_close(a, b)


def test_resume_keeps_the_turn_of_objectives_that_step_every_k_calls(tmp_path):
    """3 batches an epoch, the generator every 2nd call: epoch 2 starts on a call the generator skips. The
    checkpoint holds the number of calls, so the resumed run takes the same turns as the straight one."""
    model, *_ = pgm_model(every=2)
    history = model.fit(batches(3), 2, progress=False)
    stopped, *_ = pgm_model(every=2)
    stopped.fit(batches(3), 1, progress=False, checkpoint_dir=tmp_path)
    resumed, *_ = pgm_model(every=2)
    again = resumed.fit(batches(3), 2, progress=False, checkpoint_dir=tmp_path, resume="latest")
    assert resumed.calls == model.calls == 6
    assert again[-1] == pytest.approx(history[-1], rel=1e-6)
    for a, b in zip(model.distributions.parameters(), resumed.distributions.parameters()):
        torch.testing.assert_close(a, b)


def test_an_objective_that_took_no_step_in_an_epoch_is_recorded_as_nan():
    model, *_ = pgm_model(every=5)
    history = model.fit(batches(2), 3, progress=False)  # calls 1-6: the generator steps at calls 1 and 6
    assert [set(r) for r in history] == [{"epoch", "train_loss:critic", "train_loss:generator"}] * 3
    generator = [r["train_loss:generator"] for r in history]
    assert generator[0] == generator[0] and generator[1] != generator[1] and generator[2] == generator[2]


def test_a_model_of_one_objective_cannot_load_one_of_several(tmp_path):
    model, *_ = pgm_model()
    model.save(tmp_path / "two.pt")
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=lambda x: {"loc": x[:, :2], "scale": torch.ones(x.shape[0], 2)}), \
        Bernoulli("p(x|z)", net=Decoder())
    one = Model((KL(q, Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])) - E(q, LogProb(p))).mean(), [p])
    with pytest.raises(ValueError, match="the state is of a model with several objectives, this one has one"):
        one.load(tmp_path / "two.pt")


def test_a_learned_prior_left_out_of_distributions_is_warned_of():
    class Encoder(nn.Linear):
        def forward(self, x):
            loc, scale = super().forward(x).chunk(2, -1)
            return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}

    class LearnedPrior(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Parameter(torch.zeros(2))

        def forward(self):
            return {"loc": self.loc, "scale": torch.ones(2)}

    q, p = Normal("q(z|x)", net=Encoder(6, 4)), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", net=LearnedPrior())
    loss = (KL(q, prior, analytic=False) - E(q, LogProb(p))).mean()
    with pytest.warns(UserWarning, match=r"^Model: the loss uses p\(z\), whose parameters are not trained: it is not "
                                         r"in distributions\. List it there to train it"):
        Model(loss, [q, p])
    # inside a product (ELBO(p * prior, q) scores the joint), the factor left out is named, not the product
    from pgm.losses import ELBO
    joint = -ELBO(p * prior, q).mean()
    with pytest.warns(UserWarning, match=r"^Model: the loss uses p\(z\), whose parameters are not trained"):
        Model(joint, [q, p])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Model(loss, [q, p, prior])
        Model(joint, [q, p, prior])
        prior.requires_grad_(False)
        Model(loss, [q, p])  # frozen on purpose: nothing to say


def test_misuse_is_explained():
    critic, decoder, generator, d_loss, g_loss = gan_like()
    with pytest.raises(ValueError, match=r"objective names must differ; \['a'\] is given more than once"):
        Model([Objective(d_loss, [critic], name="a"), Objective(g_loss, [decoder], name="a")])
    with pytest.raises(TypeError, match="give distributions, optimizer_params to each Objective instead"):
        Model([Objective(d_loss, [critic]), Objective(g_loss, [decoder])], [critic], optimizer_params={"lr": 1})
    with pytest.raises(TypeError, match=r"must hold Objective\(loss, distributions, \.\.\.\) entries; got \['Sum'\]|"
                                        r"must hold Objective"):
        Model([d_loss])
    with pytest.raises(ValueError, match="Objective: every must be a whole number >= 1; got 0"):
        Objective(d_loss, [critic], every=0)
    with pytest.raises(ValueError, match="Objective: name must be a short identifier"):
        Objective(d_loss, [critic], name="the critic")
    model = Model([Objective(d_loss, [critic]), Objective(g_loss, [decoder])])
    assert [o.name for o in model.objectives] == ["objective1", "objective2"]
    with pytest.raises(AttributeError, match="this model has several objectives.*use model.optimizers"):
        model.optimizer
    assert len(model.optimizers) == 2
    with pytest.raises(ValueError, match="an Objective belongs to one Model"):
        Model(model.objectives)


def test_more_misuse_is_explained(tmp_path):
    critic, decoder, generator, d_loss, g_loss = gan_like()
    with pytest.raises(TypeError, match=r"Model: distributions \(the distributions whose parameters are trained\) "
                                        r"is missing: Model\(loss, \[q, p\], \.\.\.\)"):
        Model(d_loss)
    with pytest.raises(TypeError, match="Objective: loss must be a pgm loss; got Tensor"):
        Objective(torch.zeros(()), [critic])
    with pytest.raises(ValueError, match="Objective: clip_grad_norm must be a finite positive number or None; got -1"):
        Objective(d_loss, [critic], clip_grad_norm=-1)
    with pytest.raises(TypeError, match=r"^Objective: optimizer must be an optimizer class such as torch\.optim\.Adam "
                                        r"\(or a function of the parameters returning an optimizer\); got str 'adam'\.$"):
        Objective(d_loss, [critic], optimizer="adam")
    with pytest.raises(TypeError, match=r"^Model\.train: Parameter 'beta' takes a number or a tensor; got str 'a'\.$"):
        pgm_model()[0].train(batches(1)[0], beta="a")
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"Objective: clip_grad_value must be a finite positive number or None; "
                                             f"got {bad}"):
            Objective(d_loss, [critic], clip_grad_value=bad)
    with pytest.raises(TypeError, match=r"Objective 'critic': distributions must be a non-empty list of pgm "
                                        r"distributions \(or nn.Modules\); got \['int'\]"):
        Objective(d_loss, [3], name="critic")
    model, *_ = pgm_model()
    model.save(tmp_path / "gan.pt")
    renamed = Model([Objective(d_loss, [critic], name="d"), Objective(g_loss, [decoder], name="g")])
    with pytest.raises(ValueError, match=r"the state holds the objectives \['critic', 'generator'\], this model "
                                         r"has \['d', 'g'\]"):
        renamed.load(tmp_path / "gan.pt")


def test_adam_is_fused_on_cuda_unless_the_user_chose():
    from pgm.models._objective import optimizer_keywords
    adam, adamw, sgd = torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD
    assert optimizer_keywords(adam, {"lr": 1e-3}, {"cuda"}) == {"lr": 1e-3, "fused": True}
    assert optimizer_keywords(adamw, {}, {"cuda"}) == {"fused": True}
    for chosen in ({"fused": False}, {"foreach": True}, {"differentiable": True}):
        assert optimizer_keywords(adam, chosen, {"cuda"}) == chosen
    assert optimizer_keywords(adam, {"lr": 1e-3}, {"cpu"}) == {"lr": 1e-3}
    assert optimizer_keywords(adam, {}, {"cpu", "cuda"}) == {}  # fused needs every parameter on CUDA
    assert optimizer_keywords(sgd, {"lr": 0.1}, {"cuda"}) == {"lr": 0.1}
    given = {"lr": 1e-3}
    optimizer_keywords(adam, given, {"cuda"})
    assert given == {"lr": 1e-3}  # the user's dict is left as it was
