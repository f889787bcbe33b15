"""The learning-curve figures name what they show: every axis its quantity and unit, every curve in a legend, and
values of different units (accuracies in %, log-likelihoods in nats) never on one axis."""
import pytest

from common import figures, training

EPOCHS = [1, 2, 3, 4]


def history(**monitored):
    return {"epoch": EPOCHS, "loss": [9.0, 7.5, 7.0, 6.8], "seconds": [0.1] * 4, "monitor_epoch": [2, 4],
            **monitored}


def panels(figure):
    """(y label, title, legend labels, the curves' y values) of each panel."""
    return [(axis.get_ylabel(), axis.get_title(), [text.get_text() for text in axis.get_legend().get_texts()],
             [list(line.get_ydata()) for line in axis.get_lines()]) for axis in figure.axes]


def test_the_semi_supervised_accuracies_are_labelled_as_percent():
    accuracies = {"x": [40.0, 60.5], "w": [45.0, 61.0], "x+w": [52.0, 80.25]}
    shown = panels(figures.learning_curves_figure(history(**accuracies)))
    assert len(shown) == 2
    assert shown[0] == ("loss (nats per training example)", "training loss",
                        ["training loss (minus the objective)"], [[9.0, 7.5, 7.0, 6.8]])
    assert shown[1] == ("test accuracy (%)", "test accuracy by the classifier's input",
                        ["x alone", "w alone", "x and w"], list(accuracies.values()))


def test_values_of_different_units_get_panels_of_their_own():
    shown = panels(figures.learning_curves_figure(history(**{
        "ELBO": [-30.0, -25.0], "clustering accuracy (%)": [20.0, 80.0], "MMD": [0.1, 0.01],
        "test log p(x)": [-3.5, -3.4], "codebook perplexity": [3.0, 5.0]})))
    assert [(ylabel, legend) for ylabel, _, legend, _ in shown[1:]] == [
        ("nats per test example", ["ELBO", "test log p(x)"]), ("test accuracy (%)", ["clustering accuracy (%)"]),
        ("MMD (no unit)", ["MMD"]), ("codebook perplexity", ["codebook perplexity"])]
    assert shown[1][3] == [[-30.0, -25.0], [-3.5, -3.4]]


@pytest.mark.parametrize("key, quantity", [
    ("x", "test accuracy (%)"), ("w_iterative", "test accuracy (%)"),
    ("high-quality samples (%)", "high-quality samples (%)"),
    ("test ELBO", "nats per test example"), ("test L", "nats per test example"), ("log p(x|w)", "nats per test example"),
    ("L_JMVAE", "nats per test example"), ("MMD", "MMD (no unit)"), ("seconds per epoch", "seconds per epoch")])
def test_each_monitored_name_gets_its_quantity(key, quantity):
    assert figures.quantity_of(key) == quantity


def test_the_scripts_plot_through_the_labelled_figure(tmp_path):
    path = tmp_path / "learning_curves.png"
    training.plot_learning_curves(history(x=[1.0, 2.0]), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert training.plot_learning_curves is figures.plot_learning_curves
