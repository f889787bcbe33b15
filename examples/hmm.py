"""HMM: a hidden Markov model of discrete sequences, its states inferred by a network, written with Sum over t.

The hidden Markov model of Rabiner ("A Tutorial on Hidden Markov Models and Selected Applications in Speech
Recognition", Proc. IEEE 1989), learned by amortized variational inference of its discrete states, as NVIL (Mnih &
Gregor, "Neural Variational Inference and Learning in Belief Networks", ICML 2014) does for belief networks:

    p(y_1) = Cat(pi),  p(y_t|y_{t-1}) = Cat(A[y_{t-1}]),  p(x_t|y_t) = Cat(B[y_t])   (K states, V symbols);
    q(y_t|x_t,y_{t-1}): an MLP of the symbol and the previous state (y_0 = 0, "no state yet", picks pi);
    ELBO(x) = sum_t E_q[log p(x_t|y_t)] - KL(q(y_t|x_t,y_{t-1}) || p(y_t|y_{t-1}))      (maximized)

That is NVIL's bound E_q[log p(x,y) - log q(y|x)] with p and q factorized over the steps, each step's KL exact.
--estimator, for E over the state y_t: score_function (default; REINFORCE with a moving-average baseline, NVIL
without its learned baseline; the y_t drawn is the y_{t-1} of step t+1) or enumerate (the exact sum over the K
states; the state carried to step t+1 is then drawn from q after the step). A carried draw changes every later step,
so Sum also weighs its score term by the later steps' sum. q sees no symbol after x_t (a filter, not a smoother):
where later symbols tell the state, the bound is looser than with the exact posterior.

--estimator exact drops q and maximizes log p(x_{1:T}) itself, every path of states summed out by pgm's forward
algorithm, Sum(LogProb(p_x * p_y), ..., marginalize="y"): the maximum-likelihood HMM the variational ones approach.
Its test ELBO is then log p(x) as pgm computes it, beside the hand-written forward algorithm's.

Data: sequences drawn from a random HMM made in code (seed --seed): pi uniform, sticky transitions
A[k] ~ Dir(1 + 2K e_k), emissions B[k] ~ Dir(0.05, ..., 0.05). Reports the exact test log p(x_{1:T}) per sequence,
by the forward algorithm (Rabiner's alpha recursion, in plain torch below), of the true HMM (the reference no model
beats but by chance), the learned one and the same one at initialization, and their test ELBO; and the share of
the test sequences' hidden states each HMM decodes, the most probable state under p(y_t|x_{1:T}) (Sum.posterior,
the forward-backward smoother), under the best naming of the learned states after the true ones.

    python examples/hmm.py                                # K = 4, V = 10, 1,000 sequences of 20 steps, 100 epochs
    python examples/hmm.py --estimator enumerate --states 3 --symbols 6 --steps 30
    python examples/hmm.py --estimator exact              # maximum likelihood by the forward algorithm
"""
import argparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common import data, evaluation, results, training
from pgm.distributions import Categorical
from pgm.losses import E, KL, LogProb, Sum
from pgm.models import Model


def random_hmm(k, v, seed):
    """A random HMM: (log pi (K,), log A (K, K), log B (K, V)), seeded."""
    rng = np.random.default_rng(seed)
    a = np.stack([rng.dirichlet(1 + 2 * k * np.eye(k)[i]) for i in range(k)])  # sticky: 3/4 on the diagonal
    b = rng.dirichlet(np.full(v, 0.05), size=k)  # peaked: most of a state's mass on a few symbols
    log = lambda m: torch.from_numpy(m).clamp_min(1e-12).log().float()  # noqa: E731
    return torch.full((k,), 1 / k).log(), log(a), log(b)


def sample(hmm, n, steps, seed, states=False):
    """n sequences of ``steps`` one-hot symbols drawn from ``hmm``: (n, steps, V); with ``states``, also the
    hidden states that emitted them, (n, steps) indices."""
    log_pi, log_a, log_b = hmm
    g = torch.Generator().manual_seed(seed)
    y, symbols, path = torch.multinomial(log_pi.exp().expand(n, -1), 1, generator=g)[:, 0], [], []
    for t in range(steps):
        if t:
            y = torch.multinomial(log_a.exp()[y], 1, generator=g)[:, 0]
        symbols.append(torch.multinomial(log_b.exp()[y], 1, generator=g)[:, 0])
        path.append(y)
    x = F.one_hot(torch.stack(symbols, 1), log_b.shape[1]).float()
    return (x, torch.stack(path, 1)) if states else x


def log_likelihood(x, log_pi, log_a, log_b):
    """log p(x_{1:T}) per sequence by the forward algorithm: x one-hot (n, T, V) -> (n,)."""
    emitted = log_b.T[x.argmax(-1)]  # (n, T, K): log p(x_t|y_t = k)
    alpha = log_pi + emitted[:, 0]  # log p(x_1, y_1)
    for t in range(1, x.shape[1]):
        alpha = torch.logsumexp(alpha[:, :, None] + log_a, 1) + emitted[:, t]  # log p(x_{1:t}, y_t)
    return torch.logsumexp(alpha, -1)


class Transition(nn.Module):
    """p(y_t|y_{t-1}): the row of a learned table the one-hot y_{t-1} picks; y_0 = 0 picks the initial logits."""

    def __init__(self, k):
        super().__init__()
        self.initial, self.table = nn.Parameter(torch.zeros(k)), nn.Parameter(0.1 * torch.randn(k, k))

    def forward(self, y_prev):
        return {"logits": y_prev @ self.table + (1 - y_prev.sum(-1, keepdim=True)) * self.initial}

    def log_tables(self):
        return self.initial.log_softmax(-1), self.table.log_softmax(-1)


class Emission(nn.Module):
    """p(x_t|y_t): the row of a learned (K, V) table of logits the one-hot y_t picks."""

    def __init__(self, k, v):
        super().__init__()
        self.table = nn.Parameter(torch.randn(k, v))

    def forward(self, y):
        return {"logits": y @ self.table}


class Inference(nn.Module):
    """q(y_t|x_t,y_{t-1}): a one-hidden-layer MLP of the symbol and the previous state."""

    def __init__(self, k, v, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(v + k, hidden), nn.Tanh(), nn.Linear(hidden, k))

    def forward(self, x, y_prev):
        return {"logits": self.net(torch.cat([x, y_prev], -1))}


def build(k, v, hidden, estimator="score_function"):
    """The ELBO per sequence (a pgm loss over x (batch, T, V)) and its distributions q(y|x,y_prev), p(y|y_prev),
    p(x|y); with estimator "exact", log p(x) itself, the states summed out by the forward algorithm (and no q)."""
    q = Categorical("q(y|x,y_prev)", net=Inference(k, v, hidden))
    p_y = Categorical("p(y|y_prev)", net=Transition(k))
    p_x = Categorical("p(x|y)", net=Emission(k, v))
    if estimator == "exact":  # maximum likelihood: log sum over every path of states of prod_t p(x_t, y_t|y_{t-1})
        return exact(p_y, p_x, k), [p_y, p_x]
    if estimator == "enumerate":  # the exact sum over y_t; the state carried on is drawn from q after the step
        step, carry = E(q, LogProb(p_x), enumerate=True) - KL(q, p_y), {"y_prev": q}
    else:  # one draw of y_t, scored with a moving-average baseline; that draw is step t+1's y_{t-1}
        step, carry = E(q, LogProb(p_x), baseline="moving_average") - KL(q, p_y), {"y_prev": "y"}
    elbo = Sum(step, series=["x"], carry=carry, initial={"y_prev": torch.zeros(k)})
    return elbo, [q, p_y, p_x]


def exact(p_y, p_x, k):
    """log p(x_{1:T}) of the HMM p_y, p_x with every path of states summed out (pgm's forward algorithm)."""
    return Sum(LogProb(p_x * p_y), series=["x"], carry={"y_prev": "y"}, initial={"y_prev": torch.zeros(k)},
               marginalize="y")


def decoded(p_y, p_x, x, states):
    """The share (%) of hidden states that the most probable state under p(y_t|x_{1:T}) (pgm's Sum.posterior, the
    forward-backward smoother) recovers, under the best one-to-one naming of the learned states after the true
    ones (a learned HMM may number its states in any order)."""
    k = p_x.net.table.shape[0]
    log_px = exact(p_y, p_x, k)
    log_px.initial.to(x.device)
    guess = log_px.posterior({"x": x}).argmax(-1)
    return evaluation.matched_accuracy(guess.flatten().cpu().numpy(), states.flatten().cpu().numpy(), k)


@torch.no_grad()
def learned_log_likelihood(p_y, p_x, x):
    """The mean exact log p(x) of the learned HMM over the sequences x, by the forward algorithm on its tables."""
    return log_likelihood(x, *p_y.net.log_tables(), p_x.net.table.log_softmax(-1)).mean().item()


def evaluate(model, p_y, p_x, x, states, seed=0):
    """Means over x of the exact log p(x) and of the ELBO (one trajectory of q per sequence, drawn with a seeded
    random stream of its own, training's left as it was), and the share of states decoded."""
    with evaluation.seeded(seed, x.device):
        return {"log p(x)": learned_log_likelihood(p_y, p_x, x), "ELBO": -model.test({"x": x}),
                "states": decoded(p_y, p_x, x, states)}


def true_model(truth, device):
    """The true HMM as the example's own p(y|y_prev) and p(x|y), its tables given as logits."""
    _, (p_y, p_x) = build(truth[2].shape[0], truth[2].shape[1], 1, "exact")
    with torch.no_grad():
        p_y.net.initial.copy_(truth[0]), p_y.net.table.copy_(truth[1]), p_x.net.table.copy_(truth[2])
    return p_y.to(device), p_x.to(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100, batch_size=64, lr=0.02, hidden=32)
    group = parser.add_argument_group("model and data")
    group.add_argument("--estimator", choices=["score_function", "enumerate", "exact"], default="score_function",
                       help="E over the state: the score function with a moving-average baseline, or the exact sum "
                            "over the states of each step; or exact: no q, maximum likelihood, every path of states "
                            "summed out by the forward algorithm (default: score_function)")
    group.add_argument("--states", type=training.int_range(2), default=4, help="K, hidden states (default: 4)")
    group.add_argument("--symbols", type=training.int_range(2), default=10, help="V, symbols (default: 10)")
    group.add_argument("--steps", type=training.positive_int, default=20, help="T, steps per sequence (default: 20)")
    group.add_argument("--sequences", type=training.int_range(2), default=1000,
                       help="training sequences; a quarter as many test ones (default: 1000)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    k, v = args.states, args.symbols
    truth = random_hmm(k, v, args.seed)
    x = sample(truth, args.sequences, args.steps, args.seed)
    x_test, states_test = sample(truth, max(args.sequences // 4, 2), args.steps, args.seed + 1, states=True)
    description = (f"a random HMM ({k} states, {v} symbols; {len(x):,} train / {len(x_test):,} test sequences of "
                   f"{args.steps} steps)")
    print(f"Data: {description}")
    w, w_test = x[:, 0, :0], x_test[:, 0, :0]  # no second modality, no labels
    paired = training.to_device(data.PairedData((x, w, w), (x, w), (x_test, w_test, w_test), 1, v, 0, None, False,
                                                description), device)
    x_test = paired.test[0]

    elbo, distributions = build(k, v, args.hidden, args.estimator)
    p_y, p_x = distributions[-2:]
    print(f"Objective (maximized):\n{elbo.latex()}")
    elbo.initial.to(device)
    model = Model(-elbo.mean(), [d.to(device) for d in distributions], **training.model_options(args))
    states_test = states_test.to(device)
    initial = evaluate(model, p_y, p_x, x_test, states_test, args.seed)
    history = training.train(model, paired, args, out, prepare=lambda _, unlabelled: {"x": unlabelled["x"]},
                             monitor=lambda: {"test log p(x)": learned_log_likelihood(p_y, p_x, x_test)})

    true = {"log p(x)": log_likelihood(x_test, *(t.to(device) for t in truth)).mean().item(),
            "states": decoded(*true_model(truth, device), x_test, states_test)}
    scores = {"true HMM": true, "HMM at initialization": initial,
              f"HMM trained ({args.estimator.replace('_', ' ')})": evaluate(model, p_y, p_x, x_test, states_test,
                                                                            args.seed)}
    return results.write(out, "HMM: test log p(x) per sequence (forward algorithm), ELBO (nats) and states decoded",
                         scores, args, description, elbo.latex(), history, flat=False,
                         headings={"log p(x)": "test log p(x)", "ELBO": "test ELBO",
                                   "states": "test states decoded (%)"})


if __name__ == "__main__":
    training.run(main)
