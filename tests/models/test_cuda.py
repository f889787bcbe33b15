"""On a CUDA device, the real thing: the training step captured as one CUDA graph and replayed (test_compile.py checks
the same step on the CPU with stand-ins for the CUDA calls), inductor's CUDA code, fit and resume, and a script.

Marked ``cuda`` and skipped without a GPU; ``python -m pytest -m cuda`` runs only these (benchmarks/gpu.sh).
The capture draws random numbers from the same CUDA generator as eager code, in the same order, so a captured
step computes what the eager one does up to floating-point rounding (the capturable Adam, the graph's kernels).
"""
import importlib
import io
import json
import math

import pytest
import torch

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb, Parameter
from pgm.models import Model, NonFiniteLossError
from pgm.models import _compile, _cudagraph

from test_compile import GOOD, THREE_TERMS, Decoder, Encoder, batch, two_groups
from test_compile import vae as cpu_vae

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda", 0)
CLOSE = {"rtol": 1e-4, "atol": 1e-5}


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(_compile, "BACKEND", "aot_eager")  # Model.test compiles; it is not what is tested here


def on_cuda(inputs):
    return {k: v.to(CUDA) for k, v in inputs.items()}


def vae(compile=False, **kwargs):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    for d in (q, p, prior):
        d.to(CUDA)
    loss = (Parameter("beta") * KL(q, prior) - E(q, LogProb(p))).mean()
    kwargs.setdefault("optimizer", two_groups)
    return Model(loss, [q, p], compile=compile, **kwargs)


def three_terms(compile=False):
    """test_compile.three_terms on CUDA."""
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder(norm=False)), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    for d in (q, p, prior):
        d.to(CUDA)
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    loss = (a * KL(q, prior) - b * E(q, LogProb(p)) - c * E(q, LogProb(prior))).mean()
    return Model(loss, [q, p], compile=compile, optimizer=torch.optim.Adam)


# (batch size, beta): an annealed Parameter, a last batch of another size; the learning rate is halved at step 4
STEPS = [(16, 1.0), (16, 1.0), (16, 0.5), (8, 0.5), (16, 0.25), (16, 0.0), (8, 1.0)]


def run(model, steps=STEPS, halve_lr_at=4):
    torch.manual_seed(2)  # and CUDA's generator
    losses = []
    for i, (n, beta) in enumerate(steps):
        if i == halve_lr_at:  # as a scheduler would: the captured update reads lr from a tensor
            for group in model.optimizer.param_groups:
                group["lr"] *= 0.5
        losses.append(model.train(on_cuda(batch(n, i)), beta=beta))
    losses.append(model.test(on_cuda(batch(16, 99)), beta=1.0))
    return losses, [t.detach().clone() for t in model.distributions.state_dict().values()]


def assert_same_run(a, b, **tolerance):
    torch.testing.assert_close(torch.tensor(a[0]), torch.tensor(b[0]), **tolerance)
    for x, y in zip(a[1], b[1]):
        torch.testing.assert_close(x, y, **tolerance)


def captured(model):
    engine = model._steps[0]
    assert isinstance(engine, _cudagraph.CUDAGraphStep) and not model._compile_failed_once
    return engine.captured


def test_a_captured_step_computes_the_eager_step(aot_eager):
    """BatchNorm and Dropout, two param groups, clipping, an annealed Parameter, a changed lr, two batch sizes."""
    eager = run(vae(clip_grad_norm=1.0))
    model = vae(True, clip_grad_norm=1.0)  # compile=True is CUDA graphs on CUDA
    replayed = run(model)
    graphs = captured(model)
    assert len(graphs) == 2  # one capture per batch size; beta and lr changed without recapturing
    for step in graphs.values():
        assert isinstance(step.graph, torch.cuda.CUDAGraph)  # forward, backward and update: one graph
    # capturable only while capturing: its checkpoint loads into a CPU model, whose plain Adam trains on
    assert not any(g["capturable"] for g in model.optimizer.param_groups)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    cpu = cpu_vae()
    cpu.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
    assert math.isfinite(cpu.train(batch(16, 0), beta=1.0))
    assert_same_run(eager, replayed, **CLOSE)
    # the step trained: the loss went down from the first steps
    assert replayed[0][-2] < replayed[0][0]


def test_a_captured_step_stops_before_the_update_on_inf_minus_inf_and_nan_in_any_term():
    model = three_terms("cudagraph")
    assert model.optimizer.defaults["fused"]  # Adam on CUDA, fused by default: its found-inf flag skips the update
    for i in range(2):
        model.train(on_cuda(batch(8, i)), **GOOD)
    graphs = len(captured(model))
    before = [t.detach().clone() for t in model.distributions.parameters()]
    for position, name in enumerate("abc"):
        for bad in (math.inf, -math.inf, math.nan):
            with pytest.raises(NonFiniteLossError, match=rf"^the loss is {bad}; non-finite terms: ") as caught:
                model.train(on_cuda(batch(8, 2)), **{**GOOD, name: bad})
            assert caught.value.terms == [THREE_TERMS[position]], (name, bad)
            for a, b in zip(before, model.distributions.parameters()):
                assert torch.equal(a, b), (name, bad)
    assert len(captured(model)) == graphs  # the values went into the captured graphs
    torch.manual_seed(5)
    after = model.train(on_cuda(batch(8, 3)), **GOOD)
    untouched = three_terms()
    for i in range(2):
        untouched.train(on_cuda(batch(8, i)), **GOOD)
    torch.manual_seed(5)
    assert untouched.train(on_cuda(batch(8, 3)), **GOOD) == pytest.approx(after, rel=1e-4)
    for a, b in zip(untouched.distributions.parameters(), model.distributions.parameters()):
        torch.testing.assert_close(a, b, **CLOSE)


def test_the_gradients_after_a_replay_are_those_of_its_step(aot_eager):
    # two captured shapes: replaying the first graph again leaves its gradients, not the second graph's, in .grad
    eager, model = vae(), vae(True)
    for m in (eager, model):
        torch.manual_seed(2)
        for i, n in enumerate([16, 16, 8, 16]):
            m.train(on_cuda(batch(n, i)), beta=1.0)
    assert len(captured(model)) == 2
    for a, b in zip(eager.distributions.parameters(), model.distributions.parameters()):
        torch.testing.assert_close(b.grad, a.grad, **CLOSE)


class SyncingDecoder(Decoder):
    def forward(self, z):
        self.seen = float(z.abs().sum())  # a read on the host: a CUDA graph cannot capture it
        return super().forward(z)


def test_a_step_that_cannot_be_captured_warns_and_trains_eagerly_on(aot_eager):
    # the failed capture leaves neither its stream current nor the random generator capturing (torch 2.11)
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=SyncingDecoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    for d in (q, p, prior):
        d.to(CUDA)
    model = Model((Parameter("beta") * KL(q, prior) - E(q, LogProb(p))).mean(), [q, p], compile="cudagraph")
    model.train(on_cuda(batch(16, 0)), beta=1.0)  # the first step is eager
    with pytest.warns(UserWarning, match=r"Model\(compile='cudagraph'\): could not capture the training step "
                                         r"\(RuntimeError: .*captur"):
        model.train(on_cuda(batch(16, 1)), beta=1.0)
    assert model._steps[0].kind == "eager"
    assert torch.cuda.current_stream(CUDA) == torch.cuda.default_stream(CUDA)
    losses = [model.train(on_cuda(batch(16, i)), beta=1.0) for i in range(2, 6)]  # each draws z on the GPU
    assert all(math.isfinite(v) for v in losses)
    assert torch.randn(3, device=CUDA).isfinite().all()


def test_an_inductor_step_computes_the_eager_step_on_cuda():
    import torch._inductor.config
    eager = run(vae(clip_grad_norm=1.0))
    with torch._inductor.config.patch(fallback_random=True):  # eager's random numbers
        model = vae("inductor", clip_grad_norm=1.0)
        compiled = run(model)
    assert isinstance(model._steps[0], _compile.InductorStep) and not model._compile_failed_once
    assert_same_run(eager, compiled, rtol=1e-4, atol=1e-4)


def test_fit_with_captured_steps_resumes_as_it_would_have_gone_on(tmp_path, aot_eager):
    data = [on_cuda(batch(16, i)) for i in range(4)]
    params = {"beta": 0.5}

    def parameters(model):
        return [t.detach().clone() for t in model.distributions.parameters()]

    torch.manual_seed(3)
    straight = vae(True)
    expected = straight.fit(data, 3, progress=False, params=params)
    torch.manual_seed(3)
    vae(True).fit(data, 2, checkpoint_dir=tmp_path, progress=False, params=params)
    torch.manual_seed(123)  # the checkpoint's random states, CUDA's included, replace these
    resumed = vae(True)
    history = resumed.fit(data, 3, checkpoint_dir=tmp_path, resume="latest", progress=False, params=params)
    assert len(captured(resumed)) == 1  # the resumed run's steps are captured as well
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] == pytest.approx(expected[-1]["train_loss"], rel=1e-5)
    for a, b in zip(parameters(resumed), parameters(straight)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_ss_hmvae_kl_script_trains_with_captured_steps_as_eagerly(tmp_path, capsys, monkeypatch, built_models):
    from pathlib import Path
    examples = str(Path(__file__).resolve().parents[2] / "examples")
    monkeypatch.syspath_prepend(examples)
    module = importlib.import_module("ss_hmvae_kl")
    small = ["--epochs", "2", "--hidden", "32", "--batch-size", "128", "--labels", "100", "--eval-every", "1",
             "--device", "cuda"]
    eager = module.main(small + ["--compile", "off", "--out", str(tmp_path / "eager")])
    built = built_models(module)  # the Models it trains, for the checks below
    compiled = module.main(small + ["--compile", "on", "--out", str(tmp_path / "compiled")])
    (model,) = built
    assert len(captured(model)) >= 1
    saved = [json.loads((tmp_path / run / "results.json").read_text()) for run in ("eager", "compiled")]
    assert saved[1]["settings"]["compile"] == "on" and saved[1]["settings"]["device"] == "cuda"
    torch.testing.assert_close(torch.tensor(saved[1]["history"]["loss"]), torch.tensor(saved[0]["history"]["loss"]),
                               rtol=1e-3, atol=1e-3)
    for key in ("x", "w", "x+w"):
        assert abs(compiled[key] - eager[key]) <= 2.0  # percent; rounding may flip a few test images


@pytest.mark.parametrize("fused", [False, True])
def test_a_deferred_captured_step_skips_a_nan_batch_on_the_device(fused, aot_eager):
    """sync=False: one graph replay per step, nothing read; a NaN batch leaves the parameters (and the optimizer
    state) as they were, and every later pending step too, until synchronize() reports it."""
    def build(compile):
        return vae(compile, optimizer=lambda params: torch.optim.Adam(params, lr=0.05, fused=fused))
    eager, model = build(False), build("cudagraph")
    torch.manual_seed(2)
    expected = [eager.train(on_cuda(batch(16, i)), beta=1.0) for i in range(4)]
    torch.manual_seed(2)
    got = [model.train(on_cuda(batch(16, i)), sync=False, beta=1.0) for i in range(4)]
    model.synchronize()
    assert len(captured(model)) == 1
    torch.testing.assert_close(torch.tensor([float(v) for v in got]), torch.tensor(expected), **CLOSE)
    before = [t.detach().clone() for t in model.distributions.parameters()]
    bad = on_cuda(batch(16, 4))
    bad["x"][0, 0] = math.nan
    model.train(bad, sync=False, beta=1.0)
    model.train(on_cuda(batch(16, 5)), sync=False, beta=1.0)
    with pytest.raises(NonFiniteLossError, match=r"non-finite inputs: `x` \(1 of 96 values\)"):
        model.synchronize()
    for a, b in zip(before, model.distributions.parameters()):
        assert torch.equal(a, b)


def test_bf16_on_cuda_stays_within_two_percent_of_float32(aot_eager):
    full, half = vae(optimizer=torch.optim.Adam), vae(True, optimizer=torch.optim.Adam, precision="bf16")
    steps = [(16, 1.0)] * 10
    a, b = run(full, steps, halve_lr_at=None), run(half, steps, halve_lr_at=None)
    torch.testing.assert_close(torch.tensor(b[0]), torch.tensor(a[0]), rtol=0.02, atol=0.02)
    assert all(p.dtype == torch.float32 for p in half.distributions.parameters())


def test_an_annealed_parameter_given_as_a_cpu_tensor_reaches_every_replay(aot_eager):
    """beta=torch.tensor(...) on the CPU: the graph reads its own device copy, refilled before each replay (a CPU
    tensor inside the graph would be read once, at capture)."""
    betas = [torch.tensor(b) for b in (1.0, 1.0, 0.5, 0.0, 2.0, 0.25)]
    eager, model = vae(), vae(True)
    results = []
    for m in (eager, model):
        torch.manual_seed(2)
        results.append([m.train(on_cuda(batch(16, i)), beta=b) for i, b in enumerate(betas)])
    assert len(captured(model)) == 1
    torch.testing.assert_close(torch.tensor(results[1]), torch.tensor(results[0]), **CLOSE)


@pytest.mark.parametrize("cycle_momentum", [False, True])
def test_one_cycle_schedules_reach_the_captured_step(cycle_momentum, aot_eager):
    """OneCycleLR on Adam: lr through the graph's device tensor (one graph); betas[0], which a CUDA graph freezes,
    by capturing again, with a warning."""
    def run_schedule(model):
        schedule = torch.optim.lr_scheduler.OneCycleLR(model.optimizer, max_lr=0.05, total_steps=20,
                                                       cycle_momentum=cycle_momentum)
        torch.manual_seed(2)
        losses = []
        for i in range(6):
            losses.append(model.train(on_cuda(batch(16, i)), beta=0.5))
            schedule.step()
        return losses
    adam = lambda params: torch.optim.Adam(params, lr=0.01)  # noqa: E731
    eager, model = vae(optimizer=adam), vae(True, optimizer=adam)
    expected = run_schedule(eager)
    if cycle_momentum:
        with pytest.warns(UserWarning, match=r"the optimizer's betas changed again"):
            got = run_schedule(model)
    else:
        got = run_schedule(model)
        assert len(captured(model)) == 1
    captured(model)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), **CLOSE)


@pytest.mark.parametrize("sync", [True, False])
def test_a_non_finite_gradient_under_a_finite_loss_skips_the_captured_update(sync, aot_eager):
    from pgm.models import NonFiniteGradientError
    model = vae(True)
    poison = torch.ones((), device=CUDA)  # read by the graph at each replay
    model.distributions[1].net.net.weight.register_hook(lambda grad: grad * poison)
    for i in range(3):
        model.train(on_cuda(batch(16, i)), beta=0.5)
    before = [t.detach().clone() for t in model.distributions.parameters()]
    poison.fill_(math.nan)
    with pytest.raises(NonFiniteGradientError, match=r"^the loss is [0-9.]+ but its gradient is not finite"):
        model.train(on_cuda(batch(16, 3)), sync=sync, beta=0.5)
        model.synchronize()
    for a, b in zip(before, model.distributions.parameters()):
        assert torch.equal(a, b)
    captured(model)


def test_a_cpu_checkpoint_of_plain_adam_resumes_on_the_gpu_with_fused_adam(aot_eager):
    cpu = cpu_vae(optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    for i in range(3):
        cpu.train(batch(16, i), beta=0.5)
    buffer = io.BytesIO()
    torch.save(cpu.state_dict(), buffer)
    buffer.seek(0)
    model = vae(True, optimizer=torch.optim.Adam)
    assert model.optimizer.defaults["fused"]
    model.load_state_dict(torch.load(buffer, map_location="cuda", weights_only=True))
    assert all(g["fused"] for g in model.optimizer.param_groups)
    losses = [model.train(on_cuda(batch(16, i)), sync=False, beta=0.5) for i in range(3, 7)]
    model.synchronize()
    assert all(math.isfinite(float(v)) for v in losses)
    assert len(captured(model)) == 1


def test_a_sequence_model_with_lengths_is_captured(aot_eager):
    from test_capture import deep_markov_model
    x = torch.rand(8, 4, 5, generator=torch.Generator().manual_seed(1)).round()
    lengths = torch.tensor([4, 3, 2, 4, 1, 4, 4, 2])
    runs = []
    for compile in (False, True):
        model = deep_markov_model("length", compile=compile, device=CUDA)
        torch.manual_seed(9)
        runs.append([model.train({"x": x.to(CUDA), "n": lengths.to(CUDA)}) for _ in range(4)])
        if compile:
            captured(model)
    torch.testing.assert_close(torch.tensor(runs[1]), torch.tensor(runs[0]), **CLOSE)
