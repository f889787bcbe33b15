"""Test accuracy of the semi-supervised classifiers with both modalities or one, and the results files.

The papers score a classifier with three inputs (docs/papers.md section 7):

* ``x+w``: both modalities;
* ``x`` / ``w``: one modality, the other set to zeros (a), or for the -kl models inferred through the
  unimodal encoder q(a|x) / q(a|w) (c);
* ``x_iterative`` / ``w_iterative``: the missing modality imputed by iterative sampling (b).

A classifier here is a function ``classify(x (N, Dx), w (N, Dw)) -> class probabilities (N, K)``;
:func:`marginal_classifier` gives one of an inputs dict, which the scripts wrap into that form.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from . import results

ACCURACY_KEYS = ("x", "w", "x+w", "x_iterative", "w_iterative", "x_zeroed", "w_zeroed")
HEADINGS = {"x": "x", "w": "w", "x+w": "x+w", "x_iterative": "x (iterative)", "w_iterative": "w (iterative)",
             "x_zeroed": "x (w zeroed)", "w_zeroed": "w (x zeroed)"}


def matched_accuracy(clusters, labels, k):
    """Accuracy (%) of the best one-to-one map of K cluster numbers to the labels (integer arrays): how well
    unsupervised clusters, or a learned model's states, numbered in any order, recover the true classes."""
    from scipy.optimize import linear_sum_assignment
    counts = np.zeros((k, labels.max() + 1))
    np.add.at(counts, (clusters, labels), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    return 100.0 * counts[rows, columns].sum() / len(labels)


def probabilities(logits_of, inputs):
    """The class probabilities (N, K) of a categorical whose logits ``logits_of(inputs)`` returns."""
    return torch.softmax(logits_of(inputs), -1)


def marginal_classifier(q_a, q_y, samples=10):
    """q(y|inputs) = E_q(a|inputs)[q(y|a)], a Monte Carlo average over ``samples`` draws of a.

    q_a: the encoder of a (q(a|x,w), or a unimodal q(a|x)); q_y: the classifier q(y|a).
    Returns ``classify(inputs: dict) -> (N, K)``.
    """
    def classify(inputs):
        a = q_a.sample(inputs, sample_shape=[samples])[q_a.var[0]]  # (S, N, Da)
        flat = a.reshape(-1, a.shape[-1])  # the networks (BatchNorm1d) take (batch, features)
        probs = torch.softmax(q_y.get_params({q_a.var[0]: flat})["logits"], -1)
        return probs.reshape(samples, len(a[0]), -1).mean(0)
    return classify


def with_zeros(classify):
    """The three zero-filled settings of a joint classifier ``classify(x, w)``: "x", "w" and "x+w"."""
    return {"x": lambda x, w: classify(x, torch.zeros_like(w)),
            "w": lambda x, w: classify(torch.zeros_like(x), w),
            "x+w": classify}


def decoder_mean(params):
    """The mean of a decoder from its parameters: a Bernoulli's ``probs`` (sigmoid of ``logits``), a Normal's ``loc``."""
    if "probs" in params:
        return params["probs"]
    return torch.sigmoid(params["logits"]) if "logits" in params else params["loc"]


def impute(q_a, decoder, inputs, steps):
    """Iterative sampling (Rezende et al. 2014): fill ``decoder``'s variable in ``inputs`` by repeating ``steps``
    times a ~ q(a|x,w), missing <- the Bernoulli mean of decoder p(missing|a), starting from uniform noise.

    The mean rather than a Bernoulli draw: the data are grey levels in [0, 1], and the mean is their expected
    value. Returns ``inputs`` with the missing variable replaced by its last imputation.
    """
    missing = decoder.var[0]
    inputs = dict(inputs)
    inputs[missing] = torch.rand_like(inputs[missing])
    for _ in range(steps):
        a = q_a.sample(inputs)[q_a.var[0]]
        params = decoder.get_params({q_a.var[0]: a})
        inputs[missing] = decoder_mean(params)
    return inputs


@contextlib.contextmanager
def seeded(seed, device):
    """A random stream of its own, seeded with ``seed``, for an evaluation during training: the training's
    stream (on the CPU and on ``device``) is as it was afterwards."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def accuracies(settings, test, model, seed=0, batch_size=1000):
    """Test accuracy in percent of each classifier in ``settings`` {name: classify(x, w) -> (N, K)}.

    Runs in evaluation mode (BatchNorm running statistics) without gradients, with its own seeded random
    stream so that calling it during training leaves the training samples unchanged.
    """
    x, w, y = test
    model.distributions.eval()
    out = {}
    with torch.no_grad(), seeded(seed, x.device):
        for name, classify in settings.items():
            correct = 0
            for start in range(0, len(x), batch_size):
                end = start + batch_size
                predicted = classify(x[start:end], w[start:end]).argmax(-1)
                correct += (predicted == y[start:end].argmax(-1)).sum().item()
            out[name] = 100.0 * correct / len(x)
    return out


def write_results(out, model_name, accuracies, args, description, objective, history=None):
    """Print the accuracy table and write ``out``/results.json, results.md and results.csv.

    accuracies:  {"x": %, "w": %, "x+w": %, ...} (keys from ACCURACY_KEYS, in that order in the table).
    args:        the parsed command line, saved as the settings.
    description: the data's one-line description; objective: the LaTeX of the loss (the negative objective).
    """
    keys = [k for k in ACCURACY_KEYS if k in accuracies] + [k for k in accuracies if k not in ACCURACY_KEYS]
    return results.write(out, f"{model_name}: test accuracy (%)", {model_name: {k: accuracies[k] for k in keys}},
                         args, description, objective, history, headings=HEADINGS,
                         objective_heading="Loss (minimized, the negative objective)")
