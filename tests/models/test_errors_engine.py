"""Errors of the training engine lose nothing and say what to do: non-finite losses, misplaced inputs."""
import os

import pytest
import torch

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb, Parameter
from pgm.models import Model, NonFiniteLossError
from pgm.models import _checks

from model_nets import Decoder, Encoder


def build(**kwargs):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    loss = (Parameter("beta") * KL(q, prior) - E(q, LogProb(p))).mean()
    return Model(loss, [q, p], **kwargs)


def data(n=8, seed=0):
    return {"x": torch.rand(n, 6, generator=torch.Generator().manual_seed(seed)).round()}


def snapshot(model):
    return [t.detach().clone() for t in model.distributions.state_dict().values()]


def test_a_nan_input_names_the_terms_and_skips_the_update():
    model = build()
    model.train(data(), beta=1.0)
    before = snapshot(model)
    bad = data()
    bad["x"][2, 1] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"the loss is nan; non-finite terms: beta\*KL\[q\(z\|x\)\|\|p\(z\)\] "
                                                 r"\(1 of 8 values non-finite\); -E_q\(z\|x\)\[log p\(x\|z\)\] \(1 of 8 "
                                                 r"values non-finite\); non-finite inputs: `x` \(1 of 48 values\)\. "
                                                 r"The optimizer step was skipped") as caught:
        model.train(bad, beta=1.0)
    assert caught.value.terms == ["beta*KL[q(z|x)||p(z)]", "-E_q(z|x)[log p(x|z)]"]
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(model)))
    assert isinstance(caught.value, FloatingPointError)


def test_an_infinite_parameter_value_is_named():
    model = build()
    with pytest.raises(NonFiniteLossError, match=r"the loss is inf; non-finite terms: beta\*KL\[q\(z\|x\)\|\|p\(z\)\] "
                                                 r"\(8 of 8 values non-finite\); non-finite Parameter values: beta=inf"):
        model.train(data(), beta=float("inf"))


def test_non_finite_network_parameters_are_named():
    model = build()
    model.train(data(), beta=1.0)  # the first step checks parameter values, which catches a NaN earlier
    with torch.no_grad():
        model.distributions[1].net.net.bias[0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite terms: -E_q\(z\|x\)\[log p\(x\|z\)\] .*non-finite network "
                                                 r"parameters in p\(x\|z\) \(net.net.bias\)"):
        model.train(data(), beta=1.0)


def test_a_term_that_was_finite_again_is_blamed_on_the_sample(monkeypatch):
    model = build()
    monkeypatch.setattr(_checks, "top_terms", lambda loss, inputs: [])  # as if every term came back finite
    with pytest.raises(NonFiniteLossError, match=r"every term was finite when evaluated again with fresh samples"):
        model.train(data(), beta=float("nan"))


def test_an_empty_batch_is_named_as_such():
    model = build()
    model.train(data(), beta=1.0)
    before = snapshot(model)
    with pytest.raises(NonFiniteLossError, match=r"^the loss is nan: the batch holds no examples \(`x` has shape "
                                                 r"\(0, 6\)\), and a mean over none is nan; leave empty batches out\."):
        model.train({"x": torch.zeros(0, 6)}, beta=1.0)
    for a, b in zip(before, snapshot(model)):
        assert torch.equal(a, b)


def test_top_terms_look_through_reductions_and_negation_to_sums():
    q = Normal("q(z|x)", net=Encoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    single = KL(q, prior).mean()
    assert [(str(t), i) for t, i in _checks.top_terms(single, {"x": 1})] == [(str(single), {"x": 1})]
    assert [str(t) for t, _ in _checks.top_terms(-(KL(q, prior) + LogProb(q)).sum())] == [
        "KL[q(z|x)||p(z)]", "log q(z|x)"]
    # a term under a named data set's mean comes with that data set's inputs
    loss = -(KL(q, prior) - LogProb(q)).mean("labelled") + KL(q, prior).mean("unlabelled")
    inputs = {"labelled": {"x": 1}, "unlabelled": {"x": 2}}
    assert [(str(t), i) for t, i in _checks.top_terms(loss, inputs)] == [
        ("KL[q(z|x)||p(z)]", {"x": 1}), ("-log q(z|x)", {"x": 1}), (str(KL(q, prior).mean("unlabelled")), inputs)]


def test_named_data_sets_are_checked_and_diagnosed():
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    loss = ((KL(q, prior) - E(q, LogProb(p))).mean("labelled") + KL(q, prior).mean("unlabelled"))
    model = Model(loss, [q, p])
    good = {"labelled": data(8, 0), "unlabelled": data(16, 1)}
    model.train(good)
    with pytest.raises(ValueError, match=r"input `x` of data set `unlabelled` is float64 but q\(z\|x\)'s parameters "
                                         r"are float32"):
        model.train({"labelled": data(8, 0), "unlabelled": {"x": data(16, 1)["x"].double()}})
    bad = {"labelled": data(8, 0), "unlabelled": data(16, 1)}
    bad["labelled"]["x"][0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite terms: KL\[q\(z\|x\)\|\|p\(z\)\] \(1 of 8 values "
                                                 r"non-finite\); -E_q\(z\|x\)\[log p\(x\|z\)\] \(1 of 8 values "
                                                 r"non-finite\); non-finite inputs: `x` of data set `labelled` \(1 of 48"):
        model.train(bad)


def test_fit_keeps_the_last_good_checkpoint(tmp_path):
    epochs = {"n": 0}

    def batches():
        epochs["n"] += 1
        for i in range(3):
            batch = data(8, i)
            if epochs["n"] == 3 and i == 1:
                batch["x"][0, 0] = float("inf")
            yield batch

    model = build()
    with pytest.raises(NonFiniteLossError, match=r"At epoch 3, batch 2; the last good checkpoint, .*epoch-0002\.pt, "
                                                 r"is kept\.") as caught:
        model.fit(batches, 5, checkpoint_dir=tmp_path, progress=False, params={"beta": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["epoch-0001.pt", "epoch-0002.pt"]
    assert caught.value.checkpoint == os.path.join(tmp_path, "epoch-0002.pt")
    with pytest.raises(NonFiniteLossError, match=r"At epoch 1, batch 2; no checkpoint was written \(pass "
                                                 r"checkpoint_dir= to keep one\)"):
        build().fit([data(), {"x": torch.full((4, 6), float("nan"))}], 1, progress=False, params={"beta": 1.0})
    with pytest.raises(NonFiniteLossError, match=r"At epoch 1, batch 2; no checkpoint was written to .*fresh yet\.$"):
        build().fit([data(), {"x": torch.full((4, 6), float("nan"))}], 1, checkpoint_dir=tmp_path / "fresh",
                    progress=False, params={"beta": 1.0})


def test_an_input_on_another_device_is_named():
    model = build()
    with pytest.raises(ValueError, match=r"input `x` is on meta but q\(z\|x\)'s parameters are on cpu; move it with "
                                         r"x.to\('cpu'\)"):
        model.train({"x": torch.zeros(8, 6, device="meta")}, beta=1.0)
    with pytest.raises(ValueError, match=r"input `x` is on meta"):
        model.test({"x": torch.zeros(8, 6, device="meta")}, beta=1.0)


def test_an_input_of_another_dtype_is_named():
    model = build()
    with pytest.raises(ValueError, match=r"input `x` is float64 but q\(z\|x\)'s parameters are float32; convert it with "
                                         r"x.to\(torch.float32\)"):
        model.train({"x": data()["x"].double()}, beta=1.0)
    model.train({"x": data()["x"].bool().float()}, beta=1.0)


def test_inputs_are_checked_once_per_kind(monkeypatch):
    model = build()
    calls = []
    check = _checks.check_inputs
    monkeypatch.setattr(_checks, "check_inputs", lambda *args: calls.append(1) or check(*args))
    for i in range(3):
        model.train(data(8, i), beta=1.0)
        model.test(data(8, i), beta=1.0)
    model.train(data(4), beta=1.0)  # another batch size is the same kind of input
    assert len(calls) == 1
    model.train({"x": data()["x"], "y": torch.zeros(8)}, beta=1.0)
    assert len(calls) == 2


def test_distributed_misuse_is_explained():
    with pytest.raises(ValueError, match=r"Model: distributed must be True, False or None \(automatic\); got 'yes'"):
        build(distributed="yes")
    with pytest.raises(RuntimeError, match=r"Model\(distributed=True\) needs torch.distributed to be initialized: "
                                           r"launch the script with torchrun"):
        build(distributed=True).train(data(), beta=1.0)
