"""Learning curves: the training loss and the monitored test scores per epoch, each axis naming its quantity and
unit.

The monitored values of a run are grouped by what they measure (:func:`quantity_of`), one panel per group, so
that accuracies in % and log-likelihoods in nats never share an axis.
"""
from __future__ import annotations

from .evaluation import ACCURACY_KEYS, HEADINGS

NATS = "nats per test example"
ACCURACY = "test accuracy (%)"
# the classifier's inputs (evaluation.ACCURACY_KEYS) as a legend names them
INPUTS = {**HEADINGS, "x": "x alone", "w": "w alone", "x+w": "x and w"}


def quantity_of(key):
    """The y-axis label of a monitored value named ``key``: its quantity and unit.

    Accuracies (the classifier inputs of evaluation.ACCURACY_KEYS, or a name with "accuracy") are in %; ELBOs,
    log-likelihoods and the other objectives ("ELBO", "log p(...)", "L") in nats per test example; an MMD has no
    unit. Any other name is its own label, which then states its unit if it has one ("high-quality samples (%)").
    """
    if key in ACCURACY_KEYS or "accuracy" in key:
        return ACCURACY
    if "MMD" in key:
        return "MMD (no unit)"
    words = key.removeprefix("test ").split()
    if words and (words[0] in ("ELBO", "L") or words[0].startswith(("log", "L_"))):
        return NATS
    return key


def learning_curves_figure(history):
    """The figure of a training history: the mean training loss per epoch, then one panel per quantity monitored.

    history: {"epoch": [...], "loss": [...], "monitor_epoch": [...], <monitored name>: [...]} as
    ``training.train`` returns it (other keys, e.g. "seconds", are left out). Returns a matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    monitored = [k for k in history if k not in ("epoch", "loss", "seconds", "monitor_epoch")]
    panels = {}
    for key in monitored:
        panels.setdefault(quantity_of(key), []).append(key)
    figure, axes = plt.subplots(1, 1 + len(panels), figsize=(5 + 4.5 * len(panels), 3.5), squeeze=False)
    axes = axes[0]
    axes[0].plot(history["epoch"], history["loss"], label="training loss (minus the objective)")
    axes[0].set(xlabel="epoch", ylabel="loss (nats per training example)", title="training loss")
    axes[0].legend(fontsize=8)
    for axis, (quantity, keys) in zip(axes[1:], panels.items()):
        for key in keys:
            label = INPUTS.get(key, key) if quantity == ACCURACY else key
            axis.plot(history["monitor_epoch"], history[key], marker="o", markersize=3, label=label)
        title = "test accuracy by the classifier's input" if quantity == ACCURACY else "test scores"
        axis.set(xlabel="epoch", ylabel=quantity, title=title)
        axis.legend(fontsize=8)
    for axis in axes:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure


def plot_learning_curves(history, path):
    """Save :func:`learning_curves_figure` of ``history`` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    figure = learning_curves_figure(history)
    figure.savefig(path, dpi=100)
    plt.close(figure)
