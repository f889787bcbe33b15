"""Deferred steps (``train(..., sync=False)``, ``fit(sync_every=N)``): the loss stays on the device, a non-finite
one makes its update (and every later one until the read) a no-op there, and the read reports it by its terms.

The reference is the synchronous eager run: on finite batches the deferred parameters are its parameters, and on
a run with a NaN batch they are the parameters it had before that batch.
"""
import pytest
import torch

from pgm.models import NonFiniteLossError, _compile
from pgm.models._step import _Watch

from test_compile import StandInGraphs, batch, vae, with_stand_in_graphs

FUSED = lambda params: torch.optim.Adam(params, lr=0.05, fused=True)  # noqa: E731  (GradScaler's found-inf flag)
PLAIN = lambda params: torch.optim.Adam(params, lr=0.05)  # noqa: E731  (the update undone on the device)
RMSPROP = lambda params: torch.optim.RMSprop(params, lr=0.01, momentum=0.5)  # noqa: E731
SGD = lambda params: torch.optim.SGD(params, lr=0.05)  # noqa: E731  (keeps no state at all)
OPTIMIZERS = {"fused adam": FUSED, "adam": PLAIN, "rmsprop": RMSPROP, "sgd": SGD}


def parameters(model):
    return [p.detach().clone() for p in model.distributions.parameters()]


def optimizer_state(model):
    return [t.clone() for s in model.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]


def nan_batch(seed):
    bad = batch(16, seed)
    bad["x"][3, 2] = float("nan")
    return bad


def deferred(kind, optimizer):
    if kind == "cudagraph":
        model, _ = with_stand_in_graphs(vae(optimizer=optimizer))
        return model
    return vae(kind, optimizer=optimizer)


@pytest.fixture
def aot(monkeypatch):
    monkeypatch.setattr(_compile, "BACKEND", "aot_eager")


@pytest.mark.parametrize("kind", [False, "inductor", "cudagraph"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_deferred_steps_on_finite_batches_are_the_synchronous_steps(kind, name, aot):
    sync = vae(optimizer=OPTIMIZERS[name])
    model = deferred(kind, OPTIMIZERS[name])
    torch.manual_seed(5)
    expected = [sync.train(batch(16, i), beta=0.5) for i in range(5)]
    torch.manual_seed(5)
    got = [model.train(batch(16, i), sync=False, beta=0.5) for i in range(5)]
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in got[1:])  # on the device, not read
    model.synchronize()
    torch.testing.assert_close(torch.tensor([float(v) for v in got]), torch.tensor(expected), rtol=1e-5, atol=1e-6)
    for a, b in zip(parameters(sync), parameters(model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", [False, "inductor", "cudagraph"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_a_nan_batch_skips_its_update_and_every_later_one_until_the_read(kind, name, aot):
    sync = vae(optimizer=OPTIMIZERS[name])
    model = deferred(kind, OPTIMIZERS[name])
    torch.manual_seed(5)
    for i in range(3):
        sync.train(batch(16, i), beta=0.5)
    before, state = parameters(sync), optimizer_state(sync)
    torch.manual_seed(5)
    for i in range(3):
        model.train(batch(16, i), sync=False, beta=0.5)
    calls = model.calls
    model.train(nan_batch(3), sync=False, beta=0.5)   # the 4th call: non-finite
    model.train(batch(16, 4), sync=False, beta=0.5)   # finite, but after it: skipped too
    with pytest.raises(NonFiniteLossError, match=r"non-finite terms: .*log p\(x\|z\).*non-finite inputs: `x` "
                                                 r"\(1 of 96 values\)") as caught:
        model.synchronize()
    assert caught.value.call == calls + 1
    for a, b in zip(before, parameters(model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(state, optimizer_state(model)):  # the step counts and moments too
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-5)
    # after the report, training goes on from there
    model.train(batch(16, 5), sync=False, beta=0.5)
    model.synchronize()
    assert any(not torch.equal(a, b) for a, b in zip(before, parameters(model)))


def test_a_synchronous_step_reads_the_pending_ones_first():
    model = vae(optimizer=PLAIN)
    model.train(batch(16, 0), beta=0.5)
    model.train(nan_batch(1), sync=False, beta=0.5)
    with pytest.raises(NonFiniteLossError, match="non-finite inputs"):
        model.train(batch(16, 2), beta=0.5)


def test_too_many_pending_steps_force_a_read(monkeypatch):
    monkeypatch.setattr(_Watch, "limit", 3)
    model = vae(optimizer=PLAIN)
    model.train(batch(16, 0), beta=0.5)
    model.train(nan_batch(1), sync=False, beta=0.5)
    model.train(batch(16, 2), sync=False, beta=0.5)
    with pytest.raises(NonFiniteLossError):
        model.train(batch(16, 3), sync=False, beta=0.5)  # the third pending step reads


def fit_batches(bad_at=None):
    out = [batch(16, i) for i in range(7)]
    if bad_at is not None:
        out[bad_at - 1] = nan_batch(bad_at)
    return out


def test_fit_deferred_is_fit_synchronous(tmp_path):
    torch.manual_seed(0)
    sync = vae(optimizer=PLAIN)
    expected = sync.fit(fit_batches(), 2, fit_batches()[:2], progress=False, params={"beta": 1.0})
    torch.manual_seed(0)
    model = vae(optimizer=PLAIN)
    got = model.fit(fit_batches(), 2, fit_batches()[:2], progress=False, params={"beta": 1.0}, sync_every=3,
                    checkpoint_dir=tmp_path)
    for a, b in zip(expected, got):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5)
    for a, b in zip(parameters(sync), parameters(model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sync_every", [1, 3, 100])
def test_fit_reports_a_deferred_nan_batch_by_epoch_and_batch_with_the_parameters_from_before(tmp_path, sync_every):
    torch.manual_seed(0)
    reference = vae(optimizer=PLAIN)
    reference.fit(fit_batches(), 1, progress=False, params={"beta": 1.0})
    for b in fit_batches()[:4]:  # epoch 2 up to the bad 5th batch
        reference.train(b, beta=1.0)
    torch.manual_seed(0)
    model = vae(optimizer=PLAIN)
    with pytest.raises(NonFiniteLossError, match=r"non-finite inputs: `x`.* At epoch 2, batch 5; the last good "
                                                 r"checkpoint, .*epoch-0001.pt, is kept\.") as caught:
        model.fit(lambda: iter(fit_batches(5) if model.calls >= 7 else fit_batches()), 3, progress=False,
                  params={"beta": 1.0}, sync_every=sync_every, checkpoint_dir=tmp_path)
    assert caught.value.checkpoint.endswith("epoch-0001.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.pt"]
    for a, b in zip(parameters(reference), parameters(model)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_sync_every_is_checked():
    with pytest.raises(ValueError, match=r"fit: sync_every must be a whole number >= 1"):
        vae().fit(fit_batches(), 1, progress=False, params={"beta": 1.0}, sync_every=0)


def test_the_stand_in_graph_counts_every_replay(aot):
    model, graphs = with_stand_in_graphs(vae(optimizer=PLAIN))
    model.train(batch(16, 0), beta=0.5)
    for i in range(1, 4):
        model.train(batch(16, i), beta=0.5 if i % 2 else 0.2)  # synchronous replays
    model.train(nan_batch(4), sync=False, beta=0.5)
    with pytest.raises(NonFiniteLossError) as caught:
        model.synchronize()
    assert caught.value.call == 5 and graphs.captures == 1
    assert isinstance(graphs, StandInGraphs)


@pytest.mark.parametrize("kind", ["inductor", "cudagraph"])
def test_the_report_names_the_parameter_values_of_the_bad_step_not_later_ones(kind, aot):
    """A compiled step keeps numeric Parameters in tensors refilled at every step: the report uses the values the
    bad step was given."""
    model = deferred(kind, PLAIN)
    model.train(batch(16, 0), beta=0.5)
    model.train(batch(16, 1), sync=False, beta=float("nan"))
    model.train(batch(16, 2), sync=False, beta=1.0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite Parameter values: beta=nan"):
        model.synchronize()
