"""Model(compile=...): compiled steps compute what the eager step computes, without needless recompiling.

Compiling with inductor costs tens of seconds on a small CPU (a few once its cache is warm), so two tests use
it (the numbers of a compiled step against eager ones, and infinite and NaN losses); the others exercise the same
machinery with the ``aot_eager`` backend (Dynamo and AOTAutograd, no code generation), which draws random
numbers as eager code does. The CUDA-graph step is checked on the CPU with stand-ins for the CUDA calls, and
captured for real by tests/models/test_cuda.py where there is a GPU.
"""
import math
import warnings

import pytest
import torch
from torch import nn

from pgm.distributions import Bernoulli, Categorical, Normal, RelaxedCategorical
from pgm.losses import E, KL, LogProb, Parameter
from pgm.models import Model, NonFiniteLossError
from pgm.models import _compile, _cudagraph

from capture_rules import StandInGraphs, with_stand_in_graphs  # noqa: F401  (test_deferred imports them here)


class Encoder(nn.Module):
    def __init__(self, i=6, latent=2, norm=True):
        super().__init__()
        # no bias before BatchNorm: its gradient is 0 up to rounding, which Adam would blow up to steps of lr
        layers = [nn.Linear(i, 8, bias=not norm)] + ([nn.BatchNorm1d(8)] if norm else []) + [nn.ReLU(), nn.Dropout(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(8, 2 * latent))

    def forward(self, x):
        loc, scale = self.net(x).chunk(2, -1)
        return {"loc": loc, "scale": nn.functional.softplus(scale) + 1e-3}


class Decoder(nn.Module):
    def __init__(self, latent=2, o=6):
        super().__init__()
        self.net = nn.Linear(latent, o)

    def forward(self, z):
        return {"logits": self.net(z)}


def two_groups(params):
    params = list(params)
    return torch.optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], lr=0.05)


def vae(compile=False, **kwargs):
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    loss = (Parameter("beta") * KL(q, prior) - E(q, LogProb(p))).mean()
    kwargs.setdefault("optimizer", two_groups)
    return Model(loss, [q, p], compile=compile, **kwargs)


def batch(n=16, seed=1):
    return {"x": torch.rand(n, 6, generator=torch.Generator().manual_seed(seed)).round()}


def run(model, steps):
    """Train on ``steps`` (batch size, beta) and test in eval mode; the losses and the final parameters."""
    torch.manual_seed(2)
    losses = [model.train(batch(n, i), beta=beta) for i, (n, beta) in enumerate(steps)]
    losses.append(model.test(batch(16, 99), beta=1.0))
    losses.append(model.test(batch(16, 98), beta=1.0))
    return losses, [t.detach().clone() for t in model.distributions.state_dict().values()]


def assert_same_run(a, b, **tolerance):
    torch.testing.assert_close(torch.tensor(a[0]), torch.tensor(b[0]), **tolerance)
    for x, y in zip(a[1], b[1]):
        torch.testing.assert_close(x, y, **tolerance)


class Backend:
    """A torch.compile backend that counts the graphs it compiles."""

    def __init__(self, name="aot_eager"):
        from torch._dynamo.backends.registry import lookup_backend
        self.inner, self.graphs = lookup_backend(name), 0

    def __call__(self, graph, example_inputs):
        self.graphs += 1
        return self.inner(graph, example_inputs)


@pytest.fixture
def backend(monkeypatch):
    backend = Backend()
    monkeypatch.setattr(_compile, "BACKEND", backend)
    return backend


STEPS = [(16, 1.0), (16, 0.5), (16, 0.25), (16, 0.0)]


def test_inductor_step_matches_eager_step():
    """BatchNorm and Dropout (train, then eval in test), two param groups, clipping, an annealed Parameter."""
    import torch._inductor.config
    eager = run(vae(clip_grad_norm=1.0), STEPS)
    # inductor draws random numbers its own way; fallback_random makes it use eager's generator
    with torch._inductor.config.patch(fallback_random=True):
        compiled = run(vae("inductor", clip_grad_norm=1.0), STEPS)
    assert_same_run(eager, compiled, rtol=1e-5, atol=1e-5)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(6, 3)

    def forward(self, x):
        return {"logits": self.net(x)}


def test_parameters_and_temperature_change_without_recompiling(backend):
    def build(compile):
        torch.manual_seed(0)
        q_y = RelaxedCategorical("q(y|x)", net=Classifier(), temperature=1.0)
        p_x = Bernoulli("p(x|y)", net=Decoder(3))
        p_y = Categorical("p(y)", probs=torch.full((3,), 1 / 3))
        loss = (Parameter("beta") * KL(q_y, p_y) - E(q_y, LogProb(p_x))).mean()
        return Model(loss, [q_y, p_x], compile=compile), q_y

    def train(model, q_y):
        torch.manual_seed(3)
        out = []
        for i, (beta, temperature) in enumerate([(1.0, 1.0), (1.0, 1.0), (0.5, 0.7), (0.1, 0.3), (0.0, 0.2)]):
            q_y.temperature = temperature
            out.append(model.train(batch(8, i), beta=beta))
            if i == 1:
                graphs = backend.graphs
        return out, graphs

    eager, _ = train(*build(False))
    compiled, graphs = train(*build("inductor"))
    assert graphs > 0 and backend.graphs == graphs  # steps 3-5 reused the graphs of step 2
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-5, atol=1e-5)


def test_a_last_batch_of_another_size_compiles_once_more(backend):
    steps = [(16, 1.0), (16, 1.0), (8, 1.0), (16, 1.0), (8, 1.0), (16, 1.0)]
    eager = run(vae(), steps)
    model = vae("inductor")
    compiled = run(model, steps)
    assert_same_run(eager, compiled, rtol=1e-5, atol=1e-5)
    graphs = backend.graphs
    for i, n in enumerate([16, 8, 16, 8]):
        model.train(batch(n, i), beta=1.0)
    assert backend.graphs == graphs  # both sizes run graphs compiled already


class ScaledDecoder(nn.Module):
    """A decoder with a 0-dim parameter (as a planar flow's bias is)."""

    def __init__(self):
        super().__init__()
        self.net, self.gain = nn.Linear(2, 6), nn.Parameter(torch.tensor(0.5))

    def forward(self, z):
        return {"logits": self.gain * self.net(z)}


def test_a_0_dim_parameter_is_updated_by_a_compiled_step(backend):
    # torch 2.11's compiled optimizer step leaves 0-dim float64 parameters unchanged; pgm updates them eagerly
    def train(compile):
        torch.manual_seed(0)
        q, p = Normal("q(z|x)", net=Encoder(norm=False)).double(), Bernoulli("p(x|z)", net=ScaledDecoder()).double()
        prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
        model = Model((KL(q, prior) - E(q, LogProb(p))).mean(), [q, p], compile=compile)
        torch.manual_seed(2)
        losses = [model.train({"x": batch(16, i)["x"].double()}) for i in range(4)]
        return losses, p.net.gain.detach().clone()

    (eager, eager_gain), (compiled, compiled_gain) = train(False), train("inductor")
    assert backend.graphs > 0  # it did compile
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-6, atol=1e-6)
    assert abs(compiled_gain.item() - 0.5) > 1e-3  # the 0-dim parameter moved
    torch.testing.assert_close(compiled_gain, eager_gain, rtol=1e-6, atol=1e-6)


def test_a_failing_compiler_warns_once_and_trains_eagerly(monkeypatch):
    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")
    monkeypatch.setattr(_compile, "BACKEND", broken)
    eager = run(vae(), STEPS[:2])
    model = vae("inductor")
    torch.manual_seed(2)
    model.train(batch(16, 0), beta=1.0)  # the first step is eager
    with pytest.warns(UserWarning, match=r"Model\(compile='inductor'\): could not compile the training step "
                                         r"\(.*no C\+\+ compiler found.*\); the model trains in eager mode from now on") \
            as caught:
        second = model.train(batch(16, 1), beta=0.5)
    assert caught[0].filename == __file__  # the warning points at the user's model.train(...) line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tested = [model.test(batch(16, 99), beta=1.0), model.test(batch(16, 98), beta=1.0)]
    assert model._steps[0].kind == "eager"
    torch.testing.assert_close(torch.tensor([second] + tested), torch.tensor(eager[0][1:]))


def test_a_users_error_in_a_compiled_step_is_the_eager_error(backend):
    model = vae("inductor")
    model.train(batch(), beta=1.0)
    model.train(batch(), beta=1.0)
    with pytest.raises(KeyError, match=r"the loss needs the value of Parameter 'beta'"):
        model.train(batch())
    with pytest.raises(ValueError, match=r"q\(z\|x\) needs input `x` \(event shape \(6,\)\); got a tensor of shape "
                                         r"\(16, 5\)"):
        model.train({"x": torch.zeros(16, 5)}, beta=1.0)
    assert model._steps[0].kind != "eager"  # still compiled


def test_non_finite_loss_in_a_compiled_step_stops_before_the_update(backend):
    model = vae("inductor", optimizer=torch.optim.Adam)
    model.train(batch(), beta=1.0)
    model.train(batch(), beta=1.0)
    before = [t.detach().clone() for t in model.distributions.parameters()]
    with pytest.raises(NonFiniteLossError, match=r"non-finite Parameter values: beta=inf"):
        model.train(batch(), beta=float("inf"))
    for a, b in zip(before, model.distributions.parameters()):
        assert torch.equal(a, b)


def three_terms(compile=False):
    """A loss of three terms, each positive for every example; the Parameters a, b, c scale them, so that one
    Parameter at inf, -inf or NaN makes its term, and the loss, that value."""
    torch.manual_seed(0)
    q, p = Normal("q(z|x)", net=Encoder(norm=False)), Bernoulli("p(x|z)", net=Decoder())
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
    a, b, c = Parameter("a"), Parameter("b"), Parameter("c")
    loss = (a * KL(q, prior) - b * E(q, LogProb(p)) - c * E(q, LogProb(prior))).mean()
    return Model(loss, [q, p], compile=compile, optimizer=torch.optim.Adam)


THREE_TERMS = ["a*KL[q(z|x)||p(z)]", "-b*E_q(z|x)[log p(x|z)]", "-c*E_q(z|x)[log p(z)]"]
GOOD = {"a": 1.0, "b": 1.0, "c": 1.0}


def step_kind(kind):
    """A three-term model whose steps after the first are of ``kind``: eager, inductor (with the aot_eager backend,
    or generating code), or CUDA graphs (the CPU stand-ins)."""
    if kind == "cudagraph":
        return with_stand_in_graphs(three_terms())[0]
    return three_terms("inductor" if kind.startswith("inductor") else False)


@pytest.fixture
def eager_random_numbers():
    """Inductor's generated code draws with eager's generator (as aot_eager and the stand-ins do)."""
    import torch._inductor.config
    with torch._inductor.config.patch(fallback_random=True):
        yield


@pytest.mark.parametrize("kind", ["eager", "inductor", "inductor-codegen", "cudagraph"])
def test_inf_minus_inf_and_nan_in_any_term_stop_every_step_kind_before_the_update(kind, monkeypatch,
                                                                                   eager_random_numbers):
    """Each Parameter in turn at inf, -inf and NaN. "inductor" compiles with the aot_eager backend, as the other
    tests here; "inductor-codegen" generates C++, so that arithmetic on infinities in generated code is covered."""
    backend = Backend("inductor" if kind == "inductor-codegen" else "aot_eager")
    monkeypatch.setattr(_compile, "BACKEND", backend)
    model = step_kind(kind)
    for i in range(2):  # the first step is eager, the second compiled or captured
        model.train(batch(8, i), **GOOD)
    graphs = backend.graphs
    before = [t.detach().clone() for t in model.distributions.parameters()]
    optimizer = repr(model.optimizer.state_dict())
    for position, name in enumerate("abc"):
        for bad in (math.inf, -math.inf, math.nan):
            with pytest.raises(NonFiniteLossError, match=rf"^the loss is {bad}; non-finite terms: ") as caught:
                model.train(batch(8, 2), **{**GOOD, name: bad})
            assert caught.value.terms == [THREE_TERMS[position]], (name, bad)
            assert math.isnan(caught.value.loss) if math.isnan(bad) else caught.value.loss == bad
            for a, b in zip(before, model.distributions.parameters()):
                assert torch.equal(a, b), (name, bad)
    assert repr(model.optimizer.state_dict()) == optimizer  # no Adam step was taken or counted
    assert backend.graphs == graphs  # the values went into the compiled step without recompiling it
    # the model trains on as one that never saw the non-finite steps (an eager one: the aot_eager backend, inductor
    # with fallback_random and the stand-ins draw random numbers as eager code does)
    torch.manual_seed(5)
    after = model.train(batch(8, 3), **GOOD)
    untouched = three_terms()
    for i in range(2):
        untouched.train(batch(8, i), **GOOD)
    torch.manual_seed(5)
    assert untouched.train(batch(8, 3), **GOOD) == pytest.approx(after, rel=1e-5)
    for a, b in zip(untouched.distributions.parameters(), model.distributions.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compile_argument_is_checked():
    with pytest.raises(ValueError, match=r"Model: compile must be False, True, 'inductor' or 'cudagraph'; got 'fast'"):
        vae("fast")
    with pytest.raises(ValueError, match=r"Model\(compile='cudagraph'\) needs the parameters on a CUDA device; "
                                         r"they are on cpu. .* or use compile='inductor' \(or True\)"):
        vae("cudagraph").train(batch(), beta=1.0)


def test_true_picks_cuda_graphs_on_cuda_and_inductor_elsewhere():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert _compile.resolve_mode(True, cpu, distributed=False) == "inductor"
    assert _compile.resolve_mode(True, cuda, distributed=False) == "cudagraph"
    assert _compile.resolve_mode(True, cuda, distributed=True) == "inductor"
    assert _compile.resolve_mode("inductor", cuda, distributed=False) == "inductor"
    with pytest.raises(ValueError, match=r"Model\(compile='cudagraph'\) cannot capture the gradient all-reduce of "
                                         r"distributed training; use compile='inductor'"):
        _compile.resolve_mode("cudagraph", cuda, distributed=True)


def test_cuda_graph_step_replays_the_eager_step(backend):
    steps = [(16, 1.0), (16, 0.5), (8, 0.5), (16, 0.0), (8, 1.0)]
    eager = run(vae(clip_grad_norm=1.0), steps)
    model, graphs = with_stand_in_graphs(vae(clip_grad_norm=1.0))
    replayed = run(model, steps)
    # warming up put back BatchNorm's statistics and the random state: the numbers are eager's (up to the rounding
    # of the capturable Adam the graph runs)
    assert_same_run(eager, replayed, rtol=1e-5, atol=1e-5)
    assert graphs.captures == 2  # the whole step as one graph, for each batch size


def test_cuda_graph_step_stops_before_the_update_on_a_non_finite_loss(backend):
    model, graphs = with_stand_in_graphs(vae())
    model.train(batch(), beta=1.0)
    model.train(batch(), beta=1.0)
    before = [t.detach().clone() for t in model.distributions.parameters()]
    bad = batch()
    bad["x"][0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite inputs: `x` \(1 of 96 values\)"):
        model.train(bad, beta=1.0)
    for a, b in zip(before, model.distributions.parameters()):
        assert torch.equal(a, b)


def test_cuda_graph_step_falls_back_when_capture_fails(backend):
    model, graphs = with_stand_in_graphs(vae())

    def fail(fn, pool=None):
        raise RuntimeError("operation not permitted when stream is capturing")
    graphs.capture = fail
    model.train(batch(), beta=1.0)
    with pytest.warns(UserWarning, match=r"Model\(compile='cudagraph'\): could not capture the training step "
                                         r"\(RuntimeError: operation not permitted when stream is capturing\)") \
            as caught:
        model.train(batch(), beta=1.0)
    assert caught[0].filename == __file__
    assert model._steps[0].kind == "eager"


def test_parameter_values_given_as_tensors_reach_the_captured_step(backend):
    # a replay reads its own copy of a tensor value, refreshed each step, as it does the inputs
    betas = [torch.tensor(1.0), torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.0), torch.tensor(2.0)]
    eager = vae()
    model, graphs = with_stand_in_graphs(vae())
    torch.manual_seed(2)
    expected = [eager.train(batch(16, i), beta=b) for i, b in enumerate(betas)]
    torch.manual_seed(2)
    got = [model.train(batch(16, i), beta=b) for i, b in enumerate(betas)]
    assert graphs.captures == 1
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, lambda p: torch.optim.Adam(p, fused=True)])
def test_optimizer_state_made_by_the_warm_up_starts_fresh(optimizer, backend):
    # a parameter with no optimizer state yet (no gradient in the steps so far) when the step is captured: the
    # warm-up makes its state, as the eager step would, and leaves it as the eager step would find it
    eager, (model, graphs) = vae(optimizer=optimizer), with_stand_in_graphs(vae(optimizer=optimizer))
    for m in (eager, model):
        torch.manual_seed(2)
        m.train(batch(16, 0), beta=1.0)
        weight = m.distributions[1].net.net.weight
        del m.optimizer.state[weight]  # as if it had had no gradient in the first step
    torch.manual_seed(3)
    expected = [eager.train(batch(16, i), beta=1.0) for i in range(1, 4)]
    torch.manual_seed(3)
    got = [model.train(batch(16, i), beta=1.0) for i in range(1, 4)]
    assert graphs.captures == 1
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-5)
    for a, b in zip(eager.distributions.parameters(), model.distributions.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_past_its_graph_limit_a_captured_step_runs_new_shapes_eagerly(backend):
    sizes = [16, 8, 4, 8, 4, 16]
    eager = vae()
    model, graphs = with_stand_in_graphs(vae())
    model._steps[0].max_graphs = 2
    torch.manual_seed(2)
    expected = [eager.train(batch(n, i), beta=1.0) for i, n in enumerate(sizes)]
    torch.manual_seed(2)
    got = [model.train(batch(n, i), beta=1.0) for i, n in enumerate(sizes[:2])]
    with pytest.warns(UserWarning, match=r"2 input shapes are captured already .* steps on other shapes run "
                                         r"eagerly. Pad or bucket the batches") as caught:
        got += [model.train(batch(n, i), beta=1.0) for i, n in enumerate(sizes[2:], 2)]
    assert len(caught) == 1 and caught[0].filename == __file__
    assert graphs.captures == 2  # 16 and 8; the batches of 4 ran eagerly
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_a_failed_capture_puts_the_stream_back_and_reports_the_steps_own_error(monkeypatch):
    # CUDAGraphs.capture with torch.cuda's calls stood in for: capture_end fails after the step raised
    calls = []

    class Capture:
        def __init__(self, graph, pool=None, capture_error_mode=None):
            pass

        def __enter__(self):
            calls.append("begin")

        def __exit__(self, *error):
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    def step():
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", object)
    monkeypatch.setattr(torch.cuda, "graph", Capture)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: "the stream before")
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: calls.append(("set_stream", stream)))
    monkeypatch.setattr(_cudagraph, "_end_generator_capture", lambda device: calls.append("generator"))
    with pytest.raises(RuntimeError, match="operation not permitted when stream is capturing"):
        _cudagraph.CUDAGraphs(torch.device("cuda", 0)).capture(step)
    assert calls == ["begin", ("set_stream", "the stream before"), "generator"]


def test_capturable_optimizers_get_their_step_on_the_parameters_device():
    model = vae(optimizer=torch.optim.Adam)
    model.train(batch(), beta=1.0)
    _cudagraph.make_capturable(model.optimizer)
    assert all(g["capturable"] for g in model.optimizer.param_groups)
    sgd = vae(optimizer=torch.optim.SGD, optimizer_params={"lr": 0.1})
    _cudagraph.make_capturable(sgd.optimizer)  # no such option: left alone
    assert "capturable" not in sgd.optimizer.param_groups[0]


def test_the_optimizer_is_capturable_only_while_the_step_is_captured(backend):
    # a checkpoint of a captured run loads on the CPU, and an eager step after a fallback is the plain Adam
    model, graphs = with_stand_in_graphs(vae(optimizer=torch.optim.Adam))
    seen = []

    def flags():
        return [g["capturable"] for g in model.optimizer.param_groups]
    warmup, capture = graphs.warmup, graphs.capture
    graphs.warmup = lambda fn, times: (seen.append(("warm-up", flags())), warmup(fn, times))[1]
    graphs.capture = lambda fn, pool=None: (seen.append(("capture", flags())), capture(fn, pool))[1]
    for i in range(3):
        model.train(batch(16, i), beta=1.0)
    assert seen == [("warm-up", [True]), ("capture", [True])] and graphs.captures == 1
    assert [g["capturable"] for g in model.optimizer.param_groups] == [False]
    assert [g["capturable"] for g in model.state_dict()["optimizer"]["param_groups"]] == [False]


def test_named_data_sets_compile_once_and_capture(backend):
    """Inputs {"labelled": {...}, "unlabelled": {...}}: new batches reuse the graphs; CUDA graphs copy both."""
    def build(compile=False):
        torch.manual_seed(0)
        q, p = Normal("q(z|x)", net=Encoder()), Bernoulli("p(x|z)", net=Decoder())
        prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])
        loss = ((KL(q, prior) - E(q, LogProb(p))).mean("labelled")
                + Parameter("beta") * KL(q, prior).mean("unlabelled"))
        return Model(loss, [q, p], compile=compile)

    def train(model):
        torch.manual_seed(4)
        return [model.train({"labelled": batch(8, i), "unlabelled": batch(16, 10 + i)}, beta=0.5) for i in range(5)]

    eager = train(build())
    compiled = build("inductor")
    torch.testing.assert_close(torch.tensor(train(compiled)), torch.tensor(eager), rtol=1e-5, atol=1e-5)
    graphs = backend.graphs
    train(compiled)
    assert backend.graphs == graphs
    model, stand_in = with_stand_in_graphs(build())
    torch.testing.assert_close(torch.tensor(train(model)), torch.tensor(eager), rtol=1e-5, atol=1e-5)
    assert stand_in.captures == 1  # one graph for the whole step


def test_a_step_whose_backward_fails_to_compile_runs_once_eagerly(backend):
    """WGAN-GP's penalty is a double backward, which aot_autograd refuses once the compiled forward has run: the
    eager retry must start from the same random state and BatchNorm statistics, so the run is the eager one."""
    from pgm.distributions import Deterministic
    from pgm.losses import Wasserstein
    from pgm.models import Objective

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 2)

        def forward(self, z):
            return {"loc": self.net(z)}

    def run(compile):
        torch.manual_seed(0)
        p = (Deterministic("p(x|z)", net=Generator())
             * Normal("p(z)", loc=0.0, scale=1.0, features_shape=[2])).marginalize_var("z")
        critic = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
        wgan = Wasserstein(p, discriminator=critic, gradient_penalty=10.0)
        model = Model([Objective(wgan.discriminator_loss, [critic], name="critic"),
                       Objective(wgan, [p], name="generator")], compile=compile)
        torch.manual_seed(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the compiled run's fallback warning
            losses = [model.train({"x": torch.full((4, 2), float(i))}) for i in range(3)]
        return losses, critic[1].num_batches_tracked.item(), torch.rand(1).item()

    eager, compiled = run(False), run("inductor")
    assert compiled[1:] == eager[1:]  # BatchNorm counted each batch once; the same random numbers come next
    for a, b in zip(eager[0], compiled[0]):
        assert a == pytest.approx(b, rel=1e-4)


def test_an_update_that_fails_to_compile_is_recorded_once(monkeypatch):
    """The deferred update's non-finite record runs before the optimizer's graph; when that graph fails to compile
    the eager retry must not record the step again (the device and host step counts stay equal)."""
    from torch._dynamo.backends.registry import lookup_backend
    aot = lookup_backend("aot_eager")

    def refuses_the_optimizer(graph, example_inputs):
        if any("addcdiv" in str(node.target) or "_foreach" in str(node.target) for node in graph.graph.nodes):
            raise RuntimeError("cannot compile the optimizer's graph")
        return aot(graph, example_inputs)

    monkeypatch.setattr(_compile, "BACKEND", refuses_the_optimizer)
    model = vae("inductor")
    model.train(batch(16, 0), beta=1.0)
    with pytest.warns(UserWarning, match="could not compile the training step"):
        model.train(batch(16, 1), sync=False, beta=1.0)
    watch = model._steps[0].pieces._watch
    assert watch.count.item() == watch.host_count == 1
    bad = batch(16, 2)
    bad["x"][0, 0] = float("nan")
    model.train(bad, sync=False, beta=1.0)
    with pytest.raises(NonFiniteLossError, match="non-finite inputs"):
        model.synchronize()
