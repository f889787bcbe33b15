"""The CUDA-graph step under capture's rules, emulated on the CPU (capture_rules.py): what would fail on a GPU's first
contact fails here. Each test is the defect a close reading of the step against torch's capture rules found; the
reference is always the eager step on the same weights and batches.
"""
import contextlib
import copy
import math
import warnings

import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import E, KL, LogProb, Sum
from pgm.models import Model, NonFiniteGradientError, NonFiniteLossError, _compile, _cudagraph

from capture_rules import CaptureRuleError, StandInGraphs, accelerator, with_stand_in_graphs
from model_nets import Decoder, Encoder
from test_compile import batch, vae

CLOSE = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def aot(monkeypatch):
    monkeypatch.setattr(_compile, "BACKEND", "aot_eager")  # Model.test compiles; it is not what is tested here


def parameters(model):
    return [p.detach().clone() for p in model.distributions.parameters()]


def assert_same_parameters(a, b, **tolerance):
    for x, y in zip(parameters(a), parameters(b)):
        torch.testing.assert_close(x, y, **(tolerance or CLOSE))


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ------------------------------------------------------------------------------------------- the harness itself
def test_the_harness_raises_on_host_reads_and_sees_the_optimizers_checks():
    """The rules the other tests rely on do fail: a host read while capturing, and torch's own health checks of an
    optimizer stepped during a capture without capturable=True, or with it outside one."""
    graphs = StandInGraphs()
    x = torch.ones(3)
    with pytest.raises(CaptureRuleError, match="_local_scalar_dense"):
        graphs.capture(lambda: bool((x > 0).all()))
    with pytest.raises(CaptureRuleError, match=r"Tensor.tolist\(\) during capture"):
        graphs.capture(lambda: x.tolist())
    with pytest.raises(CaptureRuleError, match="nonzero"):
        graphs.capture(lambda: x.nonzero())
    weight = nn.Parameter(torch.ones(3))
    weight.grad = torch.ones(3)
    plain = torch.optim.Adam([weight])
    with pytest.raises(RuntimeError, match="graph capture of step.* but param_groups' capturable is False"):
        graphs.capture(plain.step)
    capturable = torch.optim.Adam([weight], capturable=True)
    capturable._warned_capturable_if_run_uncaptured = False  # torch's warn-once mark, set at construction
    with accelerator(graphs), pytest.warns(UserWarning, match="constructed with capturable=True"):
        capturable.step()
    # a capture runs nothing: what the check ran is put back
    before = weight.detach().clone()
    graphs.capture(capturable.step)
    assert torch.equal(weight, before)


def test_the_harness_fails_a_replay_whose_frozen_settings_changed():
    model, graphs = with_stand_in_graphs(vae(optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5)))
    for i in range(3):
        model.train(batch(16, i), beta=1.0)
    step = model._steps[0]
    graph = next(iter(step.captured.values())).graph
    model.optimizer.param_groups[0]["momentum"] = 0.9  # behind the step's back
    with pytest.raises(CaptureRuleError, match=r"momentum changed from 0.5 to 0.9 since the capture"):
        graph.replay()


# ------------------------------------------------------------------------------------- 1. no spurious warnings
@pytest.mark.parametrize("optimizer", [torch.optim.Adam, lambda p: torch.optim.Adam(p, fused=True)])
def test_a_captured_step_warns_of_nothing(optimizer):
    """The warm-up runs the capturable optimizer outside a capture, where torch warns; the step is captured with no
    warning at all, and trains as the eager step does."""
    eager, (model, graphs) = vae(optimizer=optimizer), with_stand_in_graphs(vae(optimizer=optimizer))
    with no_warnings():
        for m in (eager, model):
            torch.manual_seed(3)
            for i in range(4):
                m.train(batch(16, i), beta=0.5)
    assert model._steps[0].kind == "cudagraph" and graphs.captures == 1 and graphs.replays == 3
    assert_same_parameters(eager, model)


# --------------------------------------------------------------------- 2. checkpoints across fused and unfused
FUSED = lambda p: torch.optim.Adam(p, lr=0.05, fused=True)  # noqa: E731
PLAIN = lambda p: torch.optim.Adam(p, lr=0.05)  # noqa: E731


@pytest.mark.parametrize("saved_with, loaded_into", [(PLAIN, FUSED), (FUSED, PLAIN)], ids=["plain->fused",
                                                                                        "fused->plain"])
@pytest.mark.parametrize("kind", ["eager", "cudagraph"])
def test_a_checkpoint_resumes_with_the_optimizer_the_model_was_built_with(saved_with, loaded_into, kind):
    """A CPU run's plain Adam resumed by a model whose Adam is fused (as on a GPU), and back: the loaded optimizer
    keeps its own implementation, and deferred and captured steps continue the run as the saving model would."""
    first = vae(optimizer=saved_with)
    torch.manual_seed(1)
    for i in range(3):
        first.train(batch(16, i), beta=0.5)
    state = copy.deepcopy(first.state_dict())  # as saved: torch's optimizer would share the live tensors
    resumed = vae(optimizer=loaded_into)
    if kind == "cudagraph":
        resumed, _ = with_stand_in_graphs(resumed)
    resumed.load_state_dict(state)
    if kind == "cudagraph":
        resumed, _ = with_stand_in_graphs(resumed)  # (loading drops the steps; the stand-ins again)
    built_fused = loaded_into is FUSED
    assert all(bool(g.get("fused")) == built_fused for g in resumed.optimizer.param_groups)
    torch.manual_seed(2)
    expected = [first.train(batch(16, i), beta=0.5) for i in range(3, 7)]
    torch.manual_seed(2)
    got = [resumed.train(batch(16, i), sync=False, beta=0.5) for i in range(3, 7)]
    resumed.synchronize()
    torch.testing.assert_close(torch.tensor([float(v) for v in got]), torch.tensor(expected), **CLOSE)
    assert_same_parameters(first, resumed, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------- 3. a failed warm-up puts everything back
def test_a_warm_up_that_fails_leaves_the_model_as_the_eager_step_would():
    """The warm-up fails after one full step: the record of non-finite steps, BatchNorm's statistics and the random
    state are put back, the model goes on eagerly, and no false non-finite error comes at the next read."""
    eager = vae()
    model, graphs = with_stand_in_graphs(vae())

    def fails(fn, times):
        with accelerator(graphs):
            fn()
        raise RuntimeError("CUDA error: out of memory")
    graphs.warmup = fails
    torch.manual_seed(3)
    expected = [eager.train(batch(16, i), sync=i == 0, beta=0.5) for i in range(5)]
    eager.synchronize()
    next_draws = torch.rand(4)
    torch.manual_seed(3)
    with pytest.warns(UserWarning, match=r"could not capture the training step \(RuntimeError: CUDA error: out of "):
        got = [model.train(batch(16, i), sync=i == 0, beta=0.5) for i in range(5)]
    model.synchronize()  # no NonFiniteLossError: the deferred updates were not left switched off
    assert torch.equal(torch.rand(4), next_draws)  # the warm-up's draws were given back
    assert model._steps[0].kind == "eager"
    torch.testing.assert_close(torch.tensor([float(v) for v in got]), torch.tensor([float(v) for v in expected]),
                               **CLOSE)
    for (name, a), b in zip(eager.distributions.state_dict().items(), model.distributions.state_dict().values()):
        torch.testing.assert_close(a, b, **CLOSE, msg=name)  # the BatchNorm statistics too


def test_the_default_stream_waits_for_the_warm_up_even_when_it_fails(monkeypatch):
    calls = []

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            calls.append((self.name, "waits for", other.name))

    side, default = Stream("side"), Stream("default")
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: side)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: default)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: warnings.catch_warnings())

    def step():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    with pytest.raises(RuntimeError, match="illegal memory access"):
        _cudagraph.CUDAGraphs(torch.device("cuda", 0)).warmup(step, 2)
    assert calls == [("side", "waits for", "default"), ("default", "waits for", "side")]


# ------------------------------------------------------------------- 4. Parameter values given as tensors
def test_an_annealed_parameter_given_as_a_tensor_of_another_dtype_reaches_the_graph():
    """On a GPU a CPU tensor (beta=torch.tensor(0.5)) would be read once, at capture; the graph's copy is on the
    model's device in its dtype, refilled before each replay. (On the CPU the device cannot differ: a float64 value
    for a float32 model stands for it, and the harness checks both.)"""
    betas = [torch.tensor(b, dtype=torch.float64) for b in (1.0, 1.0, 0.5, 0.0, 2.0, 0.25)]
    eager, (model, graphs) = vae(), with_stand_in_graphs(vae())
    with no_warnings():
        torch.manual_seed(2)
        expected = [eager.train(batch(16, i), beta=b) for i, b in enumerate(betas)]
        torch.manual_seed(2)
        got = [model.train(batch(16, i), beta=b) for i, b in enumerate(betas)]
    assert graphs.captures == 1 and model._steps[0].kind == "cudagraph"
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), **CLOSE)


# ------------------------------------------------------------------------------------------- 5. schedulers
def schedulers():
    return {
        "StepLR": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
        "OneCycleLR": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20),
        "OneCycleLR lr only": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20,
                                                                            cycle_momentum=False),
    }


OPTIMIZERS = {"adam": lambda p: torch.optim.Adam(p, lr=0.01),
              "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)}
# (optimizer, scheduler): the captures of 7 steps (the first is eager) and whether it warns of recapturing
EXPECTED = {
    ("adam", "StepLR"): (1, False),                # lr only, read from a device tensor
    ("adam", "OneCycleLR lr only"): (1, False),
    ("adam", "OneCycleLR"): (6, True),             # betas[0] changes every step: recaptured, with a warning
    ("sgd", "StepLR"): (4, True),                  # SGD's lr is baked into the graph: steps 2, 3, 5 and 7
    ("sgd", "OneCycleLR"): (6, True),              # lr and momentum, every step
}


@pytest.mark.parametrize("optimizer, scheduler", list(EXPECTED))
def test_a_scheduler_changes_what_the_captured_step_does(optimizer, scheduler):
    """Every hyper-parameter a scheduler changes reaches the captured step: lr through a device tensor where the
    optimizer reads it there (Adam), the others by capturing again, with a warning from the second time on."""
    def run(model):
        schedule = schedulers()[scheduler](model.optimizer)
        torch.manual_seed(4)
        losses = []
        for i in range(7):
            losses.append(model.train(batch(16, i), beta=0.5))
            schedule.step()
        return losses

    make = OPTIMIZERS[optimizer]
    eager, (model, graphs) = vae(optimizer=make), with_stand_in_graphs(vae(optimizer=make))
    expected = run(eager)
    captures, warns = EXPECTED[optimizer, scheduler]
    if warns:
        with pytest.warns(UserWarning, match=r"the optimizer's .* changed again; a CUDA graph freezes it, so the "
                                             r"training step is captured again at each change") as caught:
            got = run(model)
        assert len(caught) == 1 and caught[0].filename == __file__
    else:
        with no_warnings():
            got = run(model)
    assert graphs.captures == captures and model._steps[0].kind == "cudagraph"
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), **CLOSE)
    assert_same_parameters(eager, model)


# ---------------------------------------------------------------------------------------------- 6. sequences
class Joined(nn.Module):
    """A network of several inputs, concatenated."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, *inputs):
        return self.net(torch.cat(inputs, -1))


def deep_markov_model(by, compile=False, device="cpu"):
    torch.manual_seed(0)
    q = Normal("q(z|x,z_prev)", net=Joined(Encoder(x=5 + 3, z=3))).to(device)
    prior = Normal("p(z|z_prev)", net=Joined(Encoder(x=3, z=3))).to(device)
    p = Bernoulli("p(x|z)", net=Decoder(z=3, x=5)).to(device)
    loss = Sum(KL(q, prior) - E(q, LogProb(p)), series=["x"], carry={"z_prev": "z"},
               initial={"z_prev": torch.zeros(3, device=device)}, **{by: "n"}).mean()
    return Model(loss, [q, prior, p], optimizer_params={"lr": 0.05}, compile=compile)


@pytest.mark.parametrize("by", ["length", "mask"])
def test_a_sequence_model_with_lengths_or_a_mask_is_captured(by):
    """Sum(..., length=) checked its lengths on the host at every step, a read a capture forbids."""
    x = torch.rand(8, 4, 5, generator=torch.Generator().manual_seed(1)).round()
    lengths = torch.tensor([4, 3, 2, 4, 1, 4, 4, 2])
    n = lengths if by == "length" else torch.arange(4) < lengths[:, None]
    eager, (model, graphs) = deep_markov_model(by), with_stand_in_graphs(deep_markov_model(by))
    with no_warnings():
        results = []
        for m in (eager, model):
            torch.manual_seed(9)
            results.append([m.train({"x": x, "n": n}) for _ in range(4)])
    assert graphs.captures == 1 and model._steps[0].kind == "cudagraph"
    torch.testing.assert_close(torch.tensor(results[1]), torch.tensor(results[0]), **CLOSE)


def test_lengths_out_of_range_are_still_refused_where_checking_costs_nothing():
    model = deep_markov_model("length")
    x = torch.rand(2, 4, 5).round()
    model.train({"x": x, "n": torch.tensor([4, 2])})
    with pytest.raises(ValueError, match=r"length `n` must lie in \[0, 4\] \(T = 4 steps\); got values from 2 to 7"):
        model.train({"x": x, "n": torch.tensor([7, 2])})  # a later (unchecked) step, on the CPU


# ------------------------------------------------------------------ 7. non-finite gradients under a finite loss
def poisoned(kind, optimizer):
    """A model whose decoder's weight gradient is multiplied by ``poison`` (a tensor: a graph reads it at replay)."""
    model = vae(kind if kind == "inductor" else False, optimizer=optimizer)
    if kind == "cudagraph":
        model, _ = with_stand_in_graphs(model)
    poison = torch.ones(())
    model.distributions[1].net.net.weight.register_hook(lambda grad: grad * poison)
    return model, poison


KINDS = ["eager", "inductor", "cudagraph"]


@pytest.mark.parametrize("optimizer", [PLAIN, FUSED], ids=["plain", "fused"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "deferred"])
def test_a_non_finite_gradient_under_a_finite_loss_skips_the_update(kind, optimizer, sync):
    """As GradScaler does: the update is skipped on the device, the parameters and the optimizer state stay those
    from before the step, and the error says the gradient (not the loss) was not finite."""
    model, poison = poisoned(kind, optimizer)
    for i in range(3):
        model.train(batch(16, i), sync=sync, beta=0.5)
    model.synchronize()
    before = parameters(model)
    state = [t.clone() for s in model.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    poison.fill_(math.nan)
    message = r"^the loss is [0-9.]+ but its gradient is not finite"
    if sync:
        with pytest.raises(NonFiniteGradientError, match=message + r"; non-finite gradients of p\(x\|z\) "
                                                                   r"\(net.net.weight\)"):
            model.train(batch(16, 3), beta=0.5)
    else:
        model.train(batch(16, 3), sync=False, beta=0.5)
        poison.fill_(1.0)
        model.train(batch(16, 4), sync=False, beta=0.5)  # after the bad one: skipped too, until the read
        with pytest.raises(NonFiniteGradientError, match=message) as caught:
            model.synchronize()
        assert isinstance(caught.value, NonFiniteLossError) and caught.value.call == 4
    for a, b in zip(before, parameters(model)):
        assert torch.equal(a, b)
    after = [t for s in model.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    assert all(torch.equal(a, b) for a, b in zip(state, after))


# ------------------------------------------------------------------------------------------------ 8. smaller
def test_the_graphs_of_one_step_share_one_memory_pool():
    model, graphs = with_stand_in_graphs(vae())
    for i, n in enumerate([16, 16, 8, 8, 4]):
        model.train(batch(n, i), beta=1.0)
    assert graphs.captures == 3 and len({id(pool) for pool in graphs.pools}) == 1
    assert graphs.pools[0] is not None


def test_autocast_is_captured_with_its_cache_off():
    """bf16: the cast copies of the parameters a cache would keep are made in each replay instead."""
    eager, (model, graphs) = vae(precision="bf16"), with_stand_in_graphs(vae(precision="bf16"))
    with no_warnings():
        results = []
        for m in (eager, model):
            torch.manual_seed(3)
            results.append([m.train(batch(16, i), beta=0.5) for i in range(4)])
    assert graphs.captures == 1 and model._steps[0].kind == "cudagraph"
    torch.testing.assert_close(torch.tensor(results[1]), torch.tensor(results[0]), rtol=1e-3, atol=1e-3)


def test_the_rules_see_autocast_with_its_cache_on():
    graphs, linear = StandInGraphs(), nn.Linear(3, 3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            linear(torch.ones(2, 3))
    with pytest.raises(CaptureRuleError, match="autocast with its cache on"):
        graphs.capture(step)
