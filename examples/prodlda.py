"""ProdLDA: a topic model trained by autoencoding variational inference (Srivastava & Sutton, "Autoencoding
Variational Inference for Topic Models", ICLR 2017), on a corpus generated from known topics.

    p(z) = N(mu_1, diag sigma_1^2)   (the Laplace approximation of Dirichlet(alpha) in the softmax basis),
    theta = softmax(z),  p(x|z) = Multinomial(x; n = sum_v x_v, softmax(BatchNorm(beta theta)))   (the product
    of experts: beta (V, K) is the learned topic-word matrix),  q(z|x) = N(mu_0(x), diag sigma_0^2(x));
    L(x) = -KL(q(z|x) || p(z)) + E_q(z|x)[log p(x|z)]        (maximized; the KL is analytic)

Data: documents of 20 to 200 words over V words, each a mixture theta_d ~ Dirichlet(0.1) of K true topics,
each topic a Dirichlet(0.05) draw over the words (sparse and distinct); a fifth held out. Reports the test ELBO
per word beside the true model's log p(x|theta) per word (known topics and proportions) and a unigram model's
log p(x) per word (no topics), and how well the topics
are recovered: each learned topic, p(word | theta = e_k), is matched to a true topic by the Hungarian algorithm on
cosine similarity, and the mean matched similarity is set beside scikit-learn's LatentDirichletAllocation's.
Draws the true and the matched learned topics to <out>/topics.png. Networks: Pyro's ProdLDA tutorial's, with the
paper's batch normalization (a learned shift, no scale); Adam's settings: the paper's (batch 200, lr 0.002).

    python examples/prodlda.py                            # 5,000 training documents, V = 200 words, K = 8 topics
    python examples/prodlda.py --topics 10 --vocabulary 300 --documents 12500
"""
import argparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common import data, results, training
from pgm.distributions import Multinomial, Normal
from pgm.losses import E, KL, LogProb
from pgm.models import Model


class ShiftedBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d with a learned shift and no scale (B, n) -> (B, n), as the paper's code: a learned scale could
    undo the normalization that keeps topics from collapsing; without the shift (Pyro's tutorial) the decoder cannot
    learn how common each word is, and on the corpus below its test ELBO stays near a unigram model's."""

    def __init__(self, features):
        super().__init__(features, affine=False)
        self.shift = nn.Parameter(torch.zeros(features))

    def forward(self, h):
        return super().forward(h) + self.shift


class Encoder(nn.Module):
    """q(z|x)'s parameters from the counts x (B, V): {"loc", "scale"} (B, K), each head batch-normalized."""

    def __init__(self, vocabulary, topics, hidden, dropout):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(vocabulary, hidden), nn.Softplus(), nn.Linear(hidden, hidden),
                                  nn.Softplus(), nn.Dropout(dropout))
        self.loc = nn.Sequential(nn.Linear(hidden, topics), ShiftedBatchNorm(topics))
        self.log_variance = nn.Sequential(nn.Linear(hidden, topics), ShiftedBatchNorm(topics))

    def forward(self, x):
        h = self.body(x)
        return {"loc": self.loc(h), "scale": (0.5 * self.log_variance(h)).exp()}


class Decoder(nn.Module):
    """p(x|z)'s word logits BatchNorm(beta softmax(z)) (B, V) from z (B, K): a product of K topic experts."""

    def __init__(self, topics, vocabulary, dropout):
        super().__init__()
        self.drop, self.beta = nn.Dropout(dropout), nn.Linear(topics, vocabulary, bias=False)
        self.norm = ShiftedBatchNorm(vocabulary)

    def forward(self, z):
        return {"logits": self.norm(self.beta(self.drop(z.softmax(-1))))}

    def topics(self, topics):
        """Each topic's word distribution p(word | theta = e_k) (K, V), in evaluation mode."""
        return self.norm(self.beta(torch.eye(topics, device=self.beta.weight.device))).softmax(-1)


def prodlda(vocabulary, topics, hidden, dropout, alpha):
    """ProdLDA's q(z|x), p(x|z) (scoring each document with its own length), p(z) (Dirichlet(alpha, ..., alpha)'s
    Laplace approximation) and the ELBO L(x), a pgm loss of one value per document."""
    q = Normal("q(z|x)", net=Encoder(vocabulary, topics, hidden, dropout))
    p = Multinomial("p(x|z)", net=Decoder(topics, vocabulary, dropout), total_count=None)
    loc, scale = laplace_prior(torch.full((topics,), float(alpha)))
    prior = Normal("p(z)", loc=loc, scale=scale)
    return q, p, prior, -KL(q, prior) + E(q, LogProb(p))


def laplace_prior(alpha):
    """The Laplace approximation in the softmax basis of Dirichlet(alpha), alpha (K,): (loc, scale) (K,) each,
    mu_k = log alpha_k - mean_i log alpha_i, sigma_k^2 = (1 - 2/K) / alpha_k + sum_i (1/alpha_i) / K^2."""
    k = len(alpha)
    return alpha.log() - alpha.log().mean(), ((1 - 2 / k) / alpha + (1 / alpha).sum() / k ** 2).sqrt()


def corpus(documents, vocabulary, topics, seed):
    """Counts (D, V) from K Dirichlet(0.05) topics (K, V) mixed by theta_d ~ Dirichlet(0.1) (D, K), lengths
    uniform in [20, 200]; returns (counts, theta, topics) as float32 tensors."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet(np.full(vocabulary, 0.05), topics)
    theta = rng.dirichlet(np.full(topics, 0.1), documents)
    counts = rng.multinomial(rng.integers(20, 201, documents), theta @ truth)
    return [torch.tensor(a, dtype=torch.float32) for a in (counts, theta, truth)]


def matched_similarity(learned, truth):
    """The Hungarian matching of learned (K, V) to true topics (K', V) on cosine similarity: (mean similarity of
    the matched pairs, the true topic of each learned one (K,), the similarities (K, K'))."""
    from scipy.optimize import linear_sum_assignment
    similarity = F.normalize(learned, dim=-1) @ F.normalize(truth, dim=-1).T
    rows, columns = linear_sum_assignment(similarity.numpy(), maximize=True)
    return similarity[rows, columns].mean().item(), torch.as_tensor(columns)[np.argsort(rows)], similarity


def topics_figure(path, truth, learned, title):
    """True topics (K, V) above the learned ones in matched order (K, V), words ordered by their true topic."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    words = torch.argsort(truth.argmax(0) * 2 - truth.max(0).values, stable=True)  # grouped by topic, strongest first
    figure, axes = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True)
    for axis, matrix, name in zip(axes, (truth, learned), ("true topics", "learned topics (matched)")):
        axis.imshow((matrix[:, words] ** 0.5).numpy(), aspect="auto", cmap="Greys", interpolation="nearest")
        axis.set(ylabel=name, yticks=range(len(matrix)))
    axes[0].set_title(title, fontsize=9)
    axes[1].set_xlabel("word (sorted by its true topic); shade: square root of p(word|topic)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training.add_arguments(parser, __file__, epochs=100, batch_size=200, lr=2e-3, hidden=100)  # the paper's
    parser.add_argument("--documents", type=training.int_range(10), default=6250,
                        help="documents, train and test (a fifth held out; default: 6250)")
    parser.add_argument("--vocabulary", type=training.int_range(2), default=200, help="V, words (default: 200)")
    parser.add_argument("--topics", type=training.int_range(2), default=8,
                        help="K, true and learned topics (default: 8)")
    parser.add_argument("--alpha", type=training.positive_float, default=1.0,
                        help="the symmetric Dirichlet prior's concentration, approximated by p(z) (default: 1)")
    parser.add_argument("--dropout", type=training.unit_interval, default=0.2, help="dropout rate (default: 0.2)")
    parser.set_defaults(labels="all")
    args = parser.parse_args(argv)
    out, device = training.setup(args)
    counts, theta, truth = corpus(args.documents, args.vocabulary, args.topics, args.seed)
    test = args.documents // 5
    (x_test, x), theta_test, k = counts.split([test, len(counts) - test]), theta[:test], args.topics
    description = (f"a generated corpus ({k} topics over {args.vocabulary} words; {len(x):,} train / "
                   f"{test:,} test documents of 20-200 words)")
    print(f"Data: {description}")
    none, none_test = x[:, :0], x_test[:, :0]  # no second modality, no labels
    paired = training.to_device(data.PairedData((x, none, none), (x, none), (x_test, none_test, none_test), k,
                                                args.vocabulary, 0, None, False, description), device)

    q, p, prior, elbo = prodlda(args.vocabulary, k, args.hidden, args.dropout, args.alpha)
    print(f"Objective (maximized):\n{elbo.latex()}")

    model = Model(-elbo.mean(), distributions=[q.to(device), p.to(device), prior.to(device)],
                  **training.model_options(args))
    x_test = paired.test[0]
    per_word = lambda: -model.test({"x": x_test}) * len(x_test) / x_test.sum().item()  # noqa: E731
    history = training.train(model, paired, args, out, prepare=lambda _, unlabelled: {"x": unlabelled["x"]},
                             monitor=lambda: {"test ELBO per word": per_word()})

    with torch.no_grad():
        p.eval()
        learned = p.net.topics(k).cpu()
    similarity, order, _ = matched_similarity(learned, truth)
    from sklearn.decomposition import LatentDirichletAllocation
    lda = LatentDirichletAllocation(k, random_state=args.seed).fit(x.numpy())
    lda_topics = torch.tensor(lda.components_ / lda.components_.sum(1, keepdims=True), dtype=torch.float32)
    log_p = lambda probs: (torch.distributions.Multinomial(probs=probs, validate_args=False)  # noqa: E731
                           .log_prob(x_test.cpu()).sum().item() / x_test.sum().item())  # per word
    scores = {"pgm ProdLDA": {"ELBO per word": per_word(), "topic similarity": similarity},
              "scikit-learn LatentDirichletAllocation": {"topic similarity": matched_similarity(lda_topics, truth)[0]},
              "true topics and proportions": {"ELBO per word": log_p(theta_test @ truth)},
              "unigram (training word counts + 1)": {"ELBO per word": log_p(x.sum(0) + 1)}}
    topics_figure(out / "topics.png", truth, learned[order.argsort()],
                  f"{description}\nProdLDA's topics: mean cosine similarity to the true ones {similarity:.3f}")
    return results.write(out, f"ProdLDA (K={k}): test ELBO per word and recovered topics", scores, args, description,
                         elbo.latex(), history, flat=False,
                         headings={"ELBO per word": "test ELBO per word (log p(x|theta), log p(x))",
                                   "topic similarity": "mean cosine similarity of matched topics"})


if __name__ == "__main__":
    training.run(main)
