"""MovingAverageBaseline against its exact recursion, alone and inside the score-function gradient of E.

With f_t the mean of f over step t's draws and examples, step t scores with b_t: b_1 = 0 (no history), b_2 = f_1
(the first step is not decayed towards that 0), then b_{t+1} = d b_t + (1 - d) f_t. Each test here fails if the
baseline is read after it absorbs the current step (it would then depend on the draws it scores: a biased gradient)
or if the first step is decayed (b_2 = (1 - d) f_1)."""
import pytest
import torch

from pgm import Context
from pgm.distributions import Bernoulli
from pgm.losses import E, MovingAverageBaseline, Term

CONTEXT = Context.from_inputs({})


def reference(decay, means):
    """The baselines b_1, b_2, ... the steps with these means of f are scored with, and the average after them."""
    returned, value = [], None
    for mean in means:
        returned.append(0.0 if value is None else value)
        value = mean if value is None else decay * value + (1 - decay) * mean
    return returned, value


def run(baseline, signals):
    return [baseline(CONTEXT, signal) for signal in signals]


def test_the_recursion_by_hand_with_decay_one_half():
    """MovingAverageBaseline(0.5) on steps whose f averages 2, 4, -1, 3: 0, then 2 (the first mean itself), then
    0.5 * 2 + 0.5 * 4 = 3, then 0.5 * 3 + 0.5 * (-1) = 1; afterwards it holds 0.5 * 1 + 0.5 * 3 = 2."""
    baseline = MovingAverageBaseline(0.5)
    signals = [torch.tensor([1.0, 3.0]), torch.tensor([[4.0, 2.0], [6.0, 4.0]]), torch.tensor([-1.0]),
               torch.tensor([3.0, 3.0, 3.0])]
    returned = run(baseline, signals)
    assert [b.item() for b in returned] == [0.0, 2.0, 3.0, 1.0]
    assert baseline.value.item() == 2.0 and int(baseline.steps) == 4


@pytest.mark.parametrize("decay", [0.0, 0.3, 0.9, 0.99])
def test_the_recursion_against_the_reference(decay):
    torch.manual_seed(1)
    signals = [torch.randn(5, 3) * 4 + 2 for _ in range(6)]
    returned = run(MovingAverageBaseline(decay), signals)
    want, _ = reference(decay, [s.mean().item() for s in signals])
    torch.testing.assert_close(torch.stack(returned), torch.tensor(want))


def test_the_value_read_does_not_depend_on_the_step_it_scores():
    """Two averages with the same history return the same baseline whatever the current step's f is, and a
    returned baseline is a value, not a view of the average that the next steps change."""
    history = [torch.tensor([1.0, 2.0]), torch.tensor([5.0])]
    a, b = MovingAverageBaseline(0.5), MovingAverageBaseline(0.5)
    run(a, history), run(b, history)
    from_a, from_b = a(CONTEXT, torch.tensor([100.0])), b(CONTEXT, torch.tensor([-100.0]))
    assert from_a.item() == from_b.item() == 0.5 * 1.5 + 0.5 * 5.0
    first = a(CONTEXT, torch.tensor([7.0]))
    a(CONTEXT, torch.tensor([9.0]))
    assert first.item() == 0.5 * 3.25 + 0.5 * 100.0  # what it held when read, not what it holds now


def test_not_updated_without_gradients_and_a_non_finite_step_is_skipped():
    """Evaluation (no gradients) reads it without updating it; a non-finite step leaves it, and its step count,
    as they were, so the first finite step is still taken whole."""
    baseline = MovingAverageBaseline(0.5)
    with torch.no_grad():
        assert baseline(CONTEXT, torch.tensor([8.0])).item() == 0.0
    assert baseline.value.item() == 0.0 and int(baseline.steps) == 0
    assert baseline(CONTEXT, torch.tensor([float("inf"), 1.0])).item() == 0.0
    assert baseline.value.item() == 0.0 and int(baseline.steps) == 0
    assert baseline(CONTEXT, torch.tensor([6.0])).item() == 0.0
    assert baseline(CONTEXT, torch.tensor([float("nan")])).item() == 6.0
    assert baseline(CONTEXT, torch.tensor([2.0])).item() == 6.0
    assert baseline.value.item() == 4.0 and int(baseline.steps) == 2


def test_the_score_function_gradient_uses_the_baseline_of_the_earlier_steps():
    """E(q, f, baseline=MovingAverageBaseline(0.5)) over q(z|x) = Bernoulli(sigmoid(theta)), f(z) = c . z (no
    parameter of its own): the gradient of the mean over the batch is mean_{k,n} (f(z_kn) - b_t)(z_kn - sigmoid
    (theta)), with b_t from the f of the earlier steps only, against the draws f saw."""
    theta = torch.nn.Parameter(torch.tensor([0.4, -1.2, 0.1]))
    c = torch.tensor([2.0, -1.0, 3.0])
    q = Bernoulli("q(z|x)", net=lambda x: {"logits": theta.expand(x.shape[0], 3)})
    seen = []

    def f(z):
        seen.append(z)
        return (z * c).sum(-1)

    expectation = E(q, Term(f, "f(z)"), sample_shape=4, baseline=MovingAverageBaseline(0.5))
    x = torch.zeros(6, 1)
    means, gradients = [], []
    for _ in range(4):
        value = expectation.eval({"x": x}).mean()
        gradients.append(torch.autograd.grad(value, theta)[0])
        means.append((seen[-1] * c).sum(-1).mean().item())
    baselines, _ = reference(0.5, means)
    for z, b, got in zip(seen, baselines, gradients):
        signal = (z * c).sum(-1) - b  # (4, 6)
        want = (signal.unsqueeze(-1) * (z - torch.sigmoid(theta.detach()))).mean((0, 1))
        torch.testing.assert_close(got, want)
