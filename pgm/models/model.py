"""``Model``: a loss, the distributions it trains and an optimizer, stepped one batch at a time."""
from __future__ import annotations

import contextlib
import os
import tempfile

import torch
from torch import nn

from ..distributions import Distribution, set_validation, validation_enabled
from ..losses import Loss


@contextlib.contextmanager
def _validation(enabled):
    before = validation_enabled()
    set_validation(enabled)
    try:
        yield
    finally:
        set_validation(before)


def atomic_save(obj, path):
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(handle, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Model:
    """Trains ``loss`` (minimized) over the parameters of ``distributions``.

    Args:
        loss: a scalar loss (reduced with ``.mean()`` or ``.sum()``) to minimize.
        distributions: the distributions whose parameters are trained.
        optimizer: a ``torch.optim.Optimizer`` class.
        optimizer_params: its keyword arguments, e.g. ``{"lr": 1e-3}``.
        clip_grad_norm / clip_grad_value: clip gradients before each step.
        test_loss: the loss :meth:`test` evaluates (default: ``loss``).
        compile: ``False`` (eager) or a compiled step; see :mod:`pgm.models`.

    Parameter checks (e.g. a negative scale) run on the first training and test step and are then off.
    """

    def __init__(self, loss, distributions, optimizer=torch.optim.Adam, optimizer_params=None,
                 clip_grad_norm=None, clip_grad_value=None, test_loss=None, compile=False):
        for name, value in (("loss", loss), ("test_loss", test_loss)):
            if value is not None and not isinstance(value, Loss):
                raise TypeError(f"Model: {name} must be a pgm loss; got {type(value).__name__}.")
        if isinstance(distributions, Distribution):
            distributions = [distributions]
        distributions = list(distributions)
        bad = [type(d).__name__ for d in distributions if not isinstance(d, nn.Module)]
        if bad or not distributions:
            raise TypeError(f"Model: distributions must be a non-empty list of pgm distributions; got {bad or 'none'}.")
        self.loss, self.test_loss = loss, test_loss if test_loss is not None else loss
        self.distributions = nn.ModuleList(distributions)
        parameters = [p for p in self.distributions.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("Model: the distributions have no trainable parameters.")
        self.optimizer = optimizer(parameters, **(optimizer_params or {}))
        self.clip_grad_norm, self.clip_grad_value = clip_grad_norm, clip_grad_value
        self.compile = compile
        self._checked = {"train": False, "test": False}

    def __repr__(self):
        lines = [f"Model(loss = {self.loss}", f"  optimizer: {type(self.optimizer).__name__}"]
        lines += [f"  {d.prob_text}: {type(d).__name__}" for d in self.distributions]
        return "\n".join(lines) + ")"

    def _evaluate(self, loss, inputs, params, mode):
        first = not self._checked[mode]
        with _validation(validation_enabled() and first):
            value = loss.eval(inputs, **params)
        if value.dim() != 0:
            raise ValueError(
                f"the loss is per example (shape {tuple(value.shape)}); reduce it over the batch with "
                f".mean() or .sum() before training, e.g. Model((...).mean(), ...)."
            )
        self._checked[mode] = True
        return value

    def train(self, inputs, **params) -> float:
        """One optimizer step on the batch ``inputs``; returns the loss before the step."""
        self.distributions.train()
        value = self._evaluate(self.loss, inputs, params, "train")
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, self.clip_grad_norm)
        if self.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(parameters, self.clip_grad_value)
        self.optimizer.step()
        return value.item()

    def test(self, inputs, **params) -> float:
        """The test loss on ``inputs`` in evaluation mode, without gradients."""
        self.distributions.eval()
        with torch.no_grad():
            return self._evaluate(self.test_loss, inputs, params, "test").item()

    def state_dict(self) -> dict:
        return {"distributions": self.distributions.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.distributions.load_state_dict(state["distributions"])
        self.optimizer.load_state_dict(state["optimizer"])

    def save(self, path):
        """Save the parameters and the optimizer state (atomically)."""
        atomic_save(self.state_dict(), path)

    def load(self, path, map_location=None):
        self.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
