"""``Model``: a loss, the distributions it trains and an optimizer, stepped one batch at a time."""
from __future__ import annotations

import math
import os
import tempfile

import torch
from torch import nn

from ..distributions import Distribution, validation_enabled
from ..losses import Loss
from . import _checks, _compile, _distributed


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


def _evaluate(loss, inputs, params):
    value = loss.eval(inputs, **params)
    if value.dim() != 0:
        raise ValueError(
            f"the loss is per example (shape {tuple(value.shape)}); reduce it over the batch with "
            f".mean() or .sum() before training, e.g. Model((...).mean(), ...)."
        )
    return value


def _kind(value):
    """The names, devices and dtypes of a named data set's inputs (what the input checks depend on)."""
    if isinstance(value, dict):
        return tuple((k, v.device, v.dtype) if isinstance(v, torch.Tensor) else (k, _kind(v)) for k, v in value.items())
    return type(value)


def _unique(distributions):
    out = []
    for d in distributions:
        if all(d is not o for o in out):
            out.append(d)
    return out


def _contains(module, other):
    return any(m is other for m in module.modules())


class Model:
    """Trains ``loss`` (minimized) over the parameters of ``distributions``.

    Args:
        loss: a scalar loss (reduced with ``.mean()`` or ``.sum()``) to minimize.
        distributions: the distributions whose parameters are trained.
        optimizer: a ``torch.optim.Optimizer`` class, or any callable taking the parameters
            (e.g. ``lambda params: torch.optim.Adam([{"params": ...}, {"params": ..., "lr": 1e-4}])``).
        optimizer_params: its keyword arguments, e.g. ``{"lr": 1e-3}``.
        clip_grad_norm / clip_grad_value: clip gradients before each step.
        test_loss: the loss :meth:`test` evaluates (default: ``loss``).
        compile: ``False`` (eager), ``"inductor"`` (``torch.compile`` of the forward, backward and optimizer
            update), ``"cudagraph"`` (the whole step captured as CUDA graphs and replayed; CUDA only), or
            ``True``: ``"cudagraph"`` on CUDA, ``"inductor"`` elsewhere. :class:`~pgm.losses.Parameter` values
            and a relaxed distribution's temperature may change between steps without recompiling. If the step
            cannot be compiled, the model warns once and trains eagerly. Inductor draws random numbers with its
            own generator, so a compiled run samples differently from an eager one with the same seed
            (``torch._inductor.config.fallback_random = True`` makes them equal).
        distributed: ``True`` to train data-parallel with ``torch.distributed`` (DistributedDataParallel,
            gradients averaged over the processes), ``False`` not to, ``None`` (default) to do so when
            ``torch.distributed`` is initialized with several processes (a script launched by ``torchrun``).

    Parameter checks (e.g. a negative scale) run on the first training and test step and are then off.
    Inputs on another device or of another floating dtype than the distributions that take them are
    named in an error, checked once per kind of input. A non-finite loss raises
    :class:`NonFiniteLossError` naming the non-finite terms, before the optimizer step.
    """

    def __init__(self, loss, distributions, optimizer=torch.optim.Adam, optimizer_params=None,
                 clip_grad_norm=None, clip_grad_value=None, test_loss=None, compile=False, distributed=None):
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
        # networks of the formula that are not distributions (a learned baseline, a term's network) train too
        extra = [m for m in _unique(self.loss.modules + self.test_loss.modules)
                 if all(m is not d and not _contains(d, m) for d in distributions)]
        self.distributions = nn.ModuleList(distributions + extra)
        parameters = [p for p in self.distributions.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("Model: the distributions have no trainable parameters.")
        self.optimizer = optimizer(parameters, **(optimizer_params or {}))
        self.clip_grad_norm, self.clip_grad_value = clip_grad_norm, clip_grad_value
        self.compile = _compile.check_mode(compile)
        if distributed not in (None, True, False):
            raise ValueError(f"Model: distributed must be True, False or None (automatic); got {distributed!r}.")
        self.distributed = distributed
        self._checked = {"train": False, "test": False}
        self._reference = parameters[0]  # where the parameters live, and their dtype
        self._modules = list(self.distributions.modules())
        self._users = [d for d in _unique(self.loss.distributions + self.test_loss.distributions + distributions)
                       if isinstance(d, Distribution)]
        self._seen_inputs = set()
        self._engine, self._engine_device, self._compile_failed_once = None, None, False
        self._ddp, self._world = None, None

    def __repr__(self):
        lines = [f"Model(loss = {self.loss}", f"  optimizer: {type(self.optimizer).__name__}"]
        lines += [f"  {getattr(d, 'prob_text', 'network')}: {type(d).__name__}" for d in self.distributions]
        return "\n".join(lines) + ")"

    # ------------------------------------------------------------- stepping
    def train(self, inputs, **params) -> float:
        """One optimizer step on the batch ``inputs``; returns the loss before the step.

        With distributed training, the loss is averaged over the processes.
        """
        self._set_training(True)
        self._prepare(inputs)
        engine = self._step_engine()
        if engine is not None:
            if not self._checked["train"] and self.optimizer.state:
                self._prime(inputs, params)
            if self._checked["train"]:
                return engine.train(inputs, params)
        return self._eager_train(inputs, params)

    def test(self, inputs, **params) -> float:
        """The test loss on ``inputs`` in evaluation mode, without gradients."""
        self._set_training(False)
        self._prepare(inputs)
        engine = self._step_engine()
        if engine is not None and self._checked["test"]:
            return engine.test(inputs, params).item()
        with torch.no_grad():
            return self._evaluate(self.test_loss, inputs, params, "test").item()

    def fit(self, train_data, epochs, valid_data=None, *, checkpoint_dir=None, checkpoint_every=1, resume=None,
            keep=None, progress=True, tensorboard=None, params=None, callback=None):
        """Train for ``epochs`` epochs over ``train_data``; returns the history, one dict per epoch.

        Args:
            train_data: batches, each a dict of inputs such as ``{"x": x}`` (or of named data sets): a list, a
                DataLoader yielding dicts, or a function returning a new iterable each epoch. The torch
                generators a DataLoader (or its sampler) shuffles with, or that a function carries as
                ``.generator``, are saved and restored with the checkpoints, as are torch's, numpy's and
                Python's global ones.
            epochs: the number of epochs to have trained in all (a resumed run counts the epochs done before).
            valid_data: batches to evaluate :meth:`test` on after each epoch (``valid_loss`` in the history).
            checkpoint_dir: where checkpoints go: ``epoch-0003.pt`` after 3 epochs, every ``checkpoint_every``
                epochs and after the last. Each holds the model, the optimizer, the random states (torch, CUDA,
                numpy, Python, the data's generators), the position and the history, written atomically.
                A first Ctrl-C stops after the current step and writes ``epoch-0003-batch-000017.pt`` before
                raising :class:`~pgm.models.TrainingInterrupted` (a ``KeyboardInterrupt`` naming that
                checkpoint); a second stops at once.
            checkpoint_every: write a checkpoint every this many epochs (and after the last).
            resume: a checkpoint path, or ``"latest"`` (the furthest in ``checkpoint_dir``; none there starts
                afresh). Training continues exactly as if it had never stopped.
            keep: how many of the latest checkpoints to keep (older ones are deleted once a new one is
                written); None (default) keeps them all.
            progress: show the run's progress: a tqdm bar over the epochs with the loss and the latest
                numbers (an inner bar over the batches when an epoch is long); one line per epoch where stderr
                is not a terminal (a log file, ``TERM=dumb``) or tqdm is not installed.
            tensorboard: a log folder or a ``SummaryWriter``: logs ``loss/train`` and ``loss/valid`` per epoch,
                and the callback's numbers (a folder needs the ``tensorboard`` package).
            params: :class:`~pgm.losses.Parameter` values: a dict, or a function of the epoch (1 for the first)
                returning one, e.g. ``lambda epoch: {"beta": min(1.0, epoch / 10)}``.
            callback: called after each epoch (and its validation) with the epoch's record; a dict of numbers
                it returns (e.g. a test accuracy) is added to the record, the history, the checkpoint and
                TensorBoard.

        Returns:
            ``[{"epoch": 1, "train_loss": ..., "valid_loss": ...}, ...]``: the batch-size weighted mean losses
            (``valid_loss`` only with ``valid_data``).

        Raises:
            NonFiniteLossError: on a non-finite loss, naming the terms and the last good checkpoint, which
                it leaves as it is (no checkpoint is written after a non-finite loss).
            TrainingInterrupted: on Ctrl-C, naming the checkpoint to resume from.
        """
        from ._fit import fit
        return fit(self, train_data, epochs, valid_data, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, resume=resume, keep=keep, progress=progress,
                   tensorboard=tensorboard, params=params, callback=callback)

    def _prime(self, inputs, params):
        """Check a loaded model's parameters on an eager evaluation that changes nothing (evaluation mode, no
        gradient, random state put back), so that its first step is compiled, as the same step of the run
        it resumes was. (A fresh model's first step is eager: it also creates the optimizer's state.)"""
        device = self._reference.device
        self._set_training(False)
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
                self._forward(self.loss, inputs, params, distributed=False)
        finally:
            self._set_training(True)
        self._checked["train"] = True

    def _set_training(self, mode):
        # Module.train() walks every submodule; skip it when nothing changed (it is most of a small step)
        if any(m.training is not mode for m in self._modules):
            self.distributions.train(mode)

    def _prepare(self, inputs):
        """Once per kind of input (names, devices, dtypes): check them; once per run: join the process group."""
        if self._world is None:
            self._world = _distributed.world_size() if _distributed.resolve(self.distributed) else 1
        if not isinstance(inputs, dict):
            return
        ref = self._reference
        key = (ref.device, ref.dtype,
               *((k, v.device, v.dtype) if isinstance(v, torch.Tensor) else (k, _kind(v)) for k, v in inputs.items()))
        if key not in self._seen_inputs:
            _checks.check_inputs(inputs, self._users)
            self._seen_inputs.add(key)

    def _step_engine(self):
        if self.compile is False or self._compile_failed_once:
            return None
        device = self._reference.device
        if self._engine is None or self._engine_device != device:
            mode = _compile.resolve_mode(self.compile, device, self._world > 1)
            self._engine = _compile.build(mode, self, device, self._reference.dtype)
            self._engine_device = device
        return self._engine

    def _compile_failed(self, kind, error, stacklevel=2):
        _compile.fallback_warning(self.compile, kind, error, stacklevel=stacklevel)
        self._engine, self._compile_failed_once = None, True

    def _forward(self, loss, inputs, params, distributed=True):
        """The loss on ``inputs``: through DistributedDataParallel when training data-parallel."""
        if distributed and self._world is not None and self._world > 1:
            if self._ddp is None:
                self._ddp = _distributed.wrap(self.distributions, _evaluate, self._reference.device)
            return self._ddp(loss, inputs, params)
        return _evaluate(loss, inputs, params)

    def _evaluate(self, loss, inputs, params, mode):
        """The loss, with parameter checks as set globally on the first call of each mode and off after."""
        if not self._checked[mode] or not validation_enabled():
            value = self._forward(loss, inputs, params, distributed=mode == "train")
        else:
            with _checks.validation(False):
                value = self._forward(loss, inputs, params, distributed=mode == "train")
        self._checked[mode] = True
        return value

    def _eager_train(self, inputs, params):
        value = self._evaluate(self.loss, inputs, params, "train")
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        loss = self._loss_value(value, inputs, params)
        self._update()
        return loss

    def _loss_value(self, value, inputs, params):
        """The loss as a float (averaged over processes); a non-finite one raises before the update."""
        if self._world > 1:
            loss = _distributed.mean(value)
        else:
            loss = value.item()
        if not math.isfinite(loss):
            raise _checks.non_finite_report(self.loss, inputs, params, self._users, loss)
        return loss

    def _update(self):
        if self.clip_grad_norm is not None or self.clip_grad_value is not None:
            parameters = [p for g in self.optimizer.param_groups for p in g["params"]]
            if self.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, self.clip_grad_norm)
            if self.clip_grad_value is not None:
                torch.nn.utils.clip_grad_value_(parameters, self.clip_grad_value)
        self.optimizer.step()

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """``{"distributions": ..., "optimizer": ...}``: the networks' and the optimizer's state dicts."""
        return {"distributions": self.distributions.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        """Load what :meth:`state_dict` returned (a compiled step is rebuilt on the next call)."""
        self.distributions.load_state_dict(state["distributions"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._engine = None  # a captured step holds the old optimizer state; build it again

    def save(self, path):
        """Save the parameters and the optimizer state (atomically)."""
        atomic_save(self.state_dict(), path)

    def load(self, path, map_location=None):
        """Load what :meth:`save` wrote, or a checkpoint written by :meth:`fit`."""
        self.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
