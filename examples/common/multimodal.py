"""What the unsupervised multimodal scripts (vae, mvae, jmvae, jmvae_kl) share.

* networks: :class:`Code` (an autoencoder's code), :class:`UnitGaussian`, :func:`decoder`, :func:`joint_model`
  (JMVAE's p(x|z), p(w|z), p(z), q(z|x,w));
* data: :func:`load_data` (every training pair, labels unused), :func:`training_pairs`, :func:`unsupervised`,
  :func:`encode`, :func:`generate`;
* :func:`lrap`: label ranking average precision of a logistic regression from latent codes to labels
  (the MVAE paper's score of a representation, docs/papers.md section 2);
* :func:`importance_log_likelihood`: importance-sampled test log-likelihoods with :class:`pgm.losses.IWAE`;
  :func:`multimodal_log_likelihoods` gives the JMVAE paper's joint and conditional ones of a two-modality model
  (:func:`conditional_log_likelihood` is the same estimator of one conditional, for users and the tests);
* :func:`cross_modal_figure`: one modality generated from the other, as a PNG grid;
  :func:`evaluate_joint_model`: the log-likelihoods and the figure of a JMVAE;
* :func:`add_arguments`: --latent and --iw-samples.

Scores are written with :func:`common.results.write`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pgm.distributions import Bernoulli, Normal
from pgm.losses import IWAE

from . import data, training
from .evaluation import decoder_mean
from .networks import Gaussian, Join, Logits, mlp


# ---------------------------------------------------------------------------------------------- networks
class Code(nn.Module):
    """A body followed by a linear layer: {"loc": (B, out)}, the code of a ``Deterministic`` (autoencoder) encoder."""

    def __init__(self, body: Join, out_features: int):
        super().__init__()
        self.body = body
        self.loc = nn.Linear(body.out_features, out_features)

    def forward(self, *inputs):
        return {"loc": self.loc(self.body(*inputs))}


class UnitGaussian(nn.Module):
    """A body followed by a linear layer: {"loc": (B, out), "scale": 1}, a Gaussian decoder whose log-density is a
    negative squared error (up to a constant), for real-valued modalities."""

    def __init__(self, body: Join, out_features: int):
        super().__init__()
        self.body = body
        self.loc = nn.Linear(body.out_features, out_features)

    def forward(self, *inputs):
        loc = self.loc(self.body(*inputs))
        return {"loc": loc, "scale": torch.ones_like(loc)}


def decoder(variable, latent, hidden, features, values, name="p", cond="z"):
    """p(variable|z) with a z-DkBR-DkBR body: Bernoulli when the training ``values`` lie in [0, 1] (images,
    tags), else a unit-variance Gaussian (real-valued features), as docs/papers.md section 2 describes."""
    signature = f"{name}({variable}|{cond})"
    if bool(((values >= 0) & (values <= 1)).all()):
        return Bernoulli(signature, net=Logits(mlp(latent, [hidden, hidden]), features))
    return Normal(signature, net=UnitGaussian(mlp(latent, [hidden, hidden]), features))


# ------------------------------------------------------------------------------------------------- data
def training_pairs(paired):
    """Every training pair (x (N, Dx), w (N, Dw)) of a ``data.PairedData``, labelled and unlabelled together.

    With ``labels="all"`` the unlabelled set already is the whole training set (and equals the labelled one).
    """
    (x_l, w_l, _), (x_u, w_u) = paired.labelled, paired.unlabelled
    if x_l.shape == x_u.shape and torch.equal(x_l, x_u) and torch.equal(w_l, w_u):
        return x_u, w_u
    return torch.cat([x_l, x_u]), torch.cat([w_l, w_u])


def unsupervised(paired):
    """``paired`` with every training pair in ``unlabelled``, for models trained without labels by
    ``training.train`` (which passes over ``unlabelled``)."""
    return dataclasses.replace(paired, unlabelled=training_pairs(paired))


def train_joint(model, paired, args, out, params=None):
    """Train a model of the pairs (x, w) on every training pair, reporting the objective on the test pairs each
    epoch; returns the history and the final test objective (the negative test loss)."""
    params = params or {}
    test = {"x": paired.test[0], "w": paired.test[1]}
    history = training.train(model, paired, args, out, params=params, prepare=lambda labelled, unlabelled: unlabelled,
                             monitor=lambda: {"test L": -model.test(test, **params)})
    return history, -model.test(test, **params)


def load_data(args, device):
    """The paired data of ``args`` (see common.data) with every training pair in ``unlabelled``, on ``device``."""
    return training.to_device(unsupervised(data.from_args(args)), device)


@contextlib.contextmanager
def _evaluating(*modules):
    """``modules`` in evaluation mode inside the block; the mode of each submodule is restored after it."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _chunks(inputs, batch_size):
    """``inputs`` (a dict of (N, ...) tensors) in consecutive chunks of ``batch_size`` rows."""
    n = len(next(iter(inputs.values())))
    for i in range(0, n, batch_size):
        yield {k: v[i:i + batch_size] for k, v in inputs.items()}


@torch.no_grad()
def encode(q, inputs, batch_size=1000):
    """One sample of q's variable for each row of ``inputs`` (a dict of (N, ...) tensors), in evaluation mode.

    For a ``Deterministic`` encoder the sample is its code. Returns (N, Dz).
    """
    with _evaluating(q):
        return torch.cat([q.sample(chunk)[q.var[0]] for chunk in _chunks(inputs, batch_size)])


@torch.no_grad()
def generate(q, decoder, inputs, batch_size=1000):
    """The mean of ``decoder`` (e.g. p(w|z)) at one sample z ~ q(z|inputs), in evaluation mode: (N, D)."""
    with _evaluating(q, decoder):
        return torch.cat([decoder_mean(decoder.get_params({q.var[0]: q.sample(chunk)[q.var[0]]}))
                          for chunk in _chunks(inputs, batch_size)])


# ------------------------------------------------------------------------------------------------- LRAP
def lrap(train_codes, train_labels, test_codes, test_labels, seed=0):
    """Label ranking average precision on the test codes of a logistic regression fitted on the training codes.

    train_codes (N, D), test_codes (M, D): latent codes; train_labels (N, K), test_labels (M, K): one-hot
    (single-label, a multinomial logistic regression) or multi-hot (multi-label, one logistic regression per
    label, ``OneVsRestClassifier``). The codes are standardized with the training codes' mean and deviation.
    LRAP averages, over test rows and their true labels l, the fraction of the labels ranked at or above l
    that are true; for single-label data it is the mean reciprocal rank of the true class (1 is perfect; a
    random ranking of K classes scores (1 + 1/2 + ... + 1/K) / K, 0.29 for K = 10). Returns a float in (0, 1].
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import label_ranking_average_precision_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    as_numpy = lambda t: t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)  # noqa: E731
    train_codes, train_labels, test_codes, test_labels = map(as_numpy, (train_codes, train_labels, test_codes,
                                                                         test_labels))
    classes = train_labels.shape[1]
    single = bool((train_labels.sum(1) == 1).all() and (test_labels.sum(1) == 1).all())
    regression = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        # a few unconverged iterations do not change a ranking; a label absent from the training rows is
        # predicted as always absent, which OneVsRestClassifier reports as a warning
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        if single:
            model = make_pipeline(StandardScaler(), regression).fit(train_codes, train_labels.argmax(1))
            scores = np.full((len(test_codes), classes), -np.inf)
            scores[:, model.classes_] = model.predict_log_proba(test_codes)
        else:
            model = make_pipeline(StandardScaler(), OneVsRestClassifier(regression)).fit(train_codes, train_labels)
            scores = model.predict_proba(test_codes)
    return float(label_ranking_average_precision_score(test_labels, scores))


# ------------------------------------------------------------------------------------ log-likelihoods
@torch.no_grad()
def importance_log_likelihood(p, q, inputs, samples=1000, batch_size=100):
    r"""Per-example importance-sampled :math:`\log p(\text{data})` with proposal ``q``: (N,).

    :math:`\log \frac{1}{K}\sum_k p(\text{data}, z_k) / q(z_k|\cdot)`, :math:`z_k \sim q`, K = ``samples``
    (:class:`pgm.losses.IWAE`): a lower bound on the log-likelihood that tightens as K grows, exact when q is
    the true posterior. ``p`` is the joint over the data and q's latent (e.g. ``p_x * p_w * prior``);
    ``inputs`` holds every variable p and q condition on, (N, ...) each. Runs in evaluation mode, in chunks of
    ``batch_size`` rows.
    """
    estimate = IWAE(p, q, sample_shape=samples)
    with _evaluating(p, q):
        return torch.cat([estimate.eval(chunk) for chunk in _chunks(inputs, batch_size)])


def conditional_log_likelihood(joint, joint_proposal, marginal, marginal_proposal, inputs, marginal_inputs=None,
                               samples=1000, batch_size=100):
    r"""Per-example :math:`\log p(x|w) \approx \log p(x,w) - \log p(w)`, each term importance-sampled: (N,).

    The estimator of the JMVAE paper: :math:`\log p(x,w)` by :func:`importance_log_likelihood` of ``joint``
    (p(x,w,z)) under ``joint_proposal`` (q(z|x,w)) on ``inputs``, minus :math:`\log p(w)` of ``marginal``
    (p(w,z)) under ``marginal_proposal`` (q(z|w), or the joint encoder given ``marginal_inputs`` with x
    zeroed) on ``marginal_inputs`` (default ``inputs``). Each term is a lower bound; their difference is not a
    bound, but it converges to :math:`\log p(x|w)` as K = ``samples`` grows, and is exact with exact posteriors.
    """
    log_joint = importance_log_likelihood(joint, joint_proposal, inputs, samples, batch_size)
    log_marginal = importance_log_likelihood(marginal, marginal_proposal,
                                             inputs if marginal_inputs is None else marginal_inputs,
                                             samples, batch_size)
    return log_joint - log_marginal


def multimodal_log_likelihoods(p_x, p_w, prior, q, x, w, q_x=None, q_w=None, samples=1000, batch_size=100):
    r"""Mean test :math:`\log p(x,w)`, :math:`\log p(x|w)` and :math:`\log p(w|x)` of a two-modality model.

    p_x, p_w: p(x|z), p(w|z); prior: p(z); q: the joint encoder q(z|x,w); x (N, Dx), w (N, Dw).
    q_x, q_w: unimodal encoders q(z|x), q(z|w) (JMVAE-kl) used as the proposals of p(x), p(w); without
    them the joint encoder is used with the other modality set to zeros (JMVAE): any proposal gives a consistent
    estimate, but one far from the posterior needs more samples, so this one is the looser at a given K.
    Returns {"log p(x,w)": float, "log p(x|w)": float, "log p(w|x)": float}.
    """
    zeros_x, zeros_w = torch.zeros_like(x), torch.zeros_like(w)
    both = {"x": x, "w": w}
    log_joint = importance_log_likelihood(p_x * p_w * prior, q, both, samples, batch_size)
    log_p_w = (importance_log_likelihood(p_w * prior, q, {"x": zeros_x, "w": w}, samples, batch_size) if q_w is None
               else importance_log_likelihood(p_w * prior, q_w, {"w": w}, samples, batch_size))
    log_p_x = (importance_log_likelihood(p_x * prior, q, {"x": x, "w": zeros_w}, samples, batch_size) if q_x is None
               else importance_log_likelihood(p_x * prior, q_x, {"x": x}, samples, batch_size))
    return {"log p(x,w)": log_joint.mean().item(), "log p(x|w)": (log_joint - log_p_w).mean().item(),
            "log p(w|x)": (log_joint - log_p_x).mean().item()}


# ---------------------------------------------------------------------------------------------- figures
def cross_modal_figure(path, rows, image_shape, columns=8, title=None):
    """Save a grid of pairs (x | w), one row per entry of ``rows``, as a PNG.

    rows: {label: (x (N, Dx), w (N, Dw))}, e.g. {"data": (x, w), "w generated from x": (x, w_from_x), ...};
    the first ``columns`` pairs of each row are shown, x and w side by side (each reshaped to
    ``image_shape`` (H, W)), so for the halves pairing each cell is a whole digit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    height, width = image_shape
    figure, axes = plt.subplots(len(rows), 1, figsize=(1.2 * columns, 1.5 * len(rows)), squeeze=False)
    for axis, (label, (x, w)) in zip(axes[:, 0], rows.items()):
        x, w = x[:columns].detach().cpu(), w[:columns].detach().cpu()
        cells = torch.cat([x.reshape(-1, 1, height, width), w.reshape(-1, 1, height, width)], dim=3)
        grid = make_grid(cells.clamp(0, 1), nrow=columns, padding=1, pad_value=1.0)
        axis.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(label, fontsize=10, loc="left")
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def image_grid_figure(path, images, image_shape, row_labels, title=None):
    """Save images (R, C, H W) in [0, 1] as a PNG grid of R rows of C images (each reshaped to ``image_shape``
    (H, W)), the rows named by ``row_labels`` (R strings), e.g. samples of a conditional model, one row per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    (rows, columns), height = images.shape[:2], image_shape[0]
    cells = images.detach().cpu().reshape(rows * columns, 1, *image_shape).clamp(0, 1)
    grid = make_grid(cells, nrow=columns, padding=1, pad_value=1.0)[0]
    figure, axis = plt.subplots(figsize=(1.2 + 0.5 * columns, 0.6 + 0.5 * rows))
    axis.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set(xticks=[], yticks=[1 + (height + 1) * r + (height - 1) / 2 for r in range(rows)],
             yticklabels=list(row_labels), title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- results
# ---------------------------------------------------------------------------------------------- options
def add_arguments(parser, latent=64, iw_samples=1000):
    """Add --latent (the size of z) and --iw-samples (K of the importance-sampled log-likelihoods)."""
    group = parser.add_argument_group("model and evaluation")
    group.add_argument("--latent", type=training.positive_int, default=latent, help=f"size of the latent z (default: {latent})")
    group.add_argument("--iw-samples", type=training.positive_int, default=iw_samples,
                       help=f"importance samples K of the test log-likelihoods (default: {iw_samples})")
    return parser


# ------------------------------------------------------------------------------------ JMVAE (-kl) parts
def joint_model(x, w, hidden, latent):
    """p(x|z), p(w|z), p(z) and the joint encoder q(z|x,w) of JMVAE (docs/papers.md section 2, 512-wide for MNIST):
    q(z|x,w): (x-DkBR-DkBR, w-DkBR-DkBR)-DkBR, Gaussian heads D``latent``; decoders z-DkBR-DkBR, then Dx / Dw
    (Bernoulli for data in [0, 1]). x (N, Dx), w (N, Dw): training data, for the sizes and the likelihoods."""
    dx, dw = x.shape[1], w.shape[1]
    p_x = decoder("x", latent, hidden, dx, x)
    p_w = decoder("w", latent, hidden, dw, w)
    prior = Normal("p(z)", loc=0.0, scale=1.0, features_shape=[latent])
    q = Normal("q(z|x,w)", net=Gaussian(Join([dx, dw], [[hidden, hidden], [hidden, hidden]], [hidden]), latent))
    return p_x, p_w, prior, q


def evaluate_joint_model(out, paired, p_x, p_w, prior, q, q_x=None, q_w=None, samples=1000, title=None):
    """Test log-likelihoods (:func:`multimodal_log_likelihoods`) and, for image data, the cross-modal generation
    figure ``out``/cross_modal_generation.png. Without unimodal encoders q_x, q_w, one modality alone is
    encoded by the joint encoder with the other set to zeros. Returns the scores dict."""
    x, w, _ = paired.test
    scores = multimodal_log_likelihoods(p_x, p_w, prior, q, x, w, q_x=q_x, q_w=q_w, samples=samples)
    if paired.image_shape is not None:
        both, zeros_x, zeros_w = {"x": x, "w": w}, torch.zeros_like(x), torch.zeros_like(w)
        from_x = generate(q, p_w, {"x": x, "w": zeros_w}) if q_x is None else generate(q_x, p_w, {"x": x})
        from_w = generate(q, p_x, {"x": zeros_x, "w": w}) if q_w is None else generate(q_w, p_x, {"w": w})
        by = lambda encoder: f"{q.prob_text}, the other zeroed" if encoder is None else encoder.prob_text  # noqa: E731
        cross_modal_figure(Path(out) / "cross_modal_generation.png", {
            "test pairs (x | w)": (x, w),
            f"reconstructed from both, z ~ {q.prob_text}": (generate(q, p_x, both), generate(q, p_w, both)),
            f"w generated from x, z ~ {by(q_x)}": (x, from_x),
            f"x generated from w, z ~ {by(q_w)}": (from_w, w)}, paired.image_shape, title=title)
    return scores
