"""``Model``: a loss, the distributions it trains and an optimizer, stepped one batch at a time."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..distributions import Distribution, validation_enabled
from ..losses import Loss
from .._values import check_parameter_values
from . import _checks, _compile, _distributed, _objective, _step
from ._checkpoints import atomic_save
from ._objective import Objective, unique as _unique


def _kind(value):
    """The names, devices and dtypes of a named data set's inputs (what the input checks depend on)."""
    if isinstance(value, dict):
        return tuple((k, v.device, v.dtype) if isinstance(v, torch.Tensor) else (k, _kind(v)) for k, v in value.items())
    return type(value)


def _contains(module, other):
    return any(m is other for m in module.modules())


class Model:
    """Trains ``loss`` (minimized) over the parameters of ``distributions``; or several objectives in turn.

    Args:
        loss: a scalar loss (reduced with ``.mean()`` or ``.sum()``) to minimize; or a list of
            :class:`Objective`, each with its own loss, parameters and optimizer, stepped in turn on each batch
            (a GAN's discriminator and generator, an EM-like alternation); then leave out ``distributions``
            and the optimizer arguments.
        distributions: the distributions whose parameters are trained.
        optimizer: a ``torch.optim.Optimizer`` class, or any callable taking the parameters
            (e.g. ``lambda params: torch.optim.Adam([{"params": ...}, {"params": ..., "lr": 1e-4}])``).
        optimizer_params: its keyword arguments, e.g. ``{"lr": 1e-3}``. On CUDA, Adam and AdamW are fused
            (``fused=True``) unless they name ``fused`` or ``foreach``.
        clip_grad_norm / clip_grad_value: clip gradients before each step.
        test_loss: the loss :meth:`test` evaluates (default: ``loss``; with several objectives, each of theirs).
        compile: ``False`` (eager), ``"inductor"`` (``torch.compile`` of the forward, backward and optimizer
            update), ``"cudagraph"`` (the whole step captured as one CUDA graph and replayed; CUDA only), or
            ``True``: ``"cudagraph"`` on CUDA, ``"inductor"`` elsewhere. :class:`~pgm.losses.Parameter` values
            and a relaxed distribution's temperature may change between steps without recompiling. If the step
            cannot be compiled, the model warns once and trains eagerly. Inductor draws random numbers with its
            own generator, so a compiled run samples differently from an eager one with the same seed
            (``torch._inductor.config.fallback_random = True`` makes them equal).
        distributed: ``True`` to train data-parallel with ``torch.distributed`` (DistributedDataParallel,
            gradients averaged over the processes), ``False`` not to, ``None`` (default) to do so when
            ``torch.distributed`` is initialized with several processes (a script launched by ``torchrun``).
        precision: ``"float32"`` (default) or ``"bf16"``: the forward pass under ``torch.autocast`` to
            bfloat16 (the backward pass runs each operation in the dtype its forward used); the parameters,
            their gradients and the optimizer stay in float32. On CUDA and on the CPU.

    Parameter checks (e.g. a negative scale) run on the first training and test step and are then off.
    Inputs on another device or of another floating dtype than the distributions that take them are
    named in an error, checked once per kind of input. A non-finite loss raises
    :class:`NonFiniteLossError` naming the non-finite terms (a finite loss whose gradient is not finite,
    :class:`NonFiniteGradientError`), and the parameters stay those from before the step: at once for
    ``train(inputs)``, at the next read for ``train(inputs, sync=False)``.
    """

    def __init__(self, loss, distributions=None, optimizer=torch.optim.Adam, optimizer_params=None,
                 clip_grad_norm=None, clip_grad_value=None, test_loss=None, compile=False, distributed=None,
                 precision="float32"):
        if isinstance(loss, (list, tuple)):
            objectives = self._several(loss, distributions, optimizer, optimizer_params, clip_grad_norm,
                                       clip_grad_value)
        else:
            if not isinstance(loss, Loss):
                raise TypeError(f"Model: loss must be a pgm loss; got {type(loss).__name__}. (To train several "
                                f"losses in turn, pass a list of Objective(loss, distributions, ...).)")
            if distributions is None:
                raise TypeError("Model: distributions (the distributions whose parameters are trained) is missing: "
                                "Model(loss, [q, p], ...).")
            objectives = [Objective(loss, _objective.module_list(distributions, "Model"), optimizer, optimizer_params,
                                    clip_grad_norm, clip_grad_value)]
        if test_loss is not None and not isinstance(test_loss, Loss):
            raise TypeError(f"Model: test_loss must be a pgm loss; got {type(test_loss).__name__}.")
        self.objectives = objectives
        self.loss = objectives[0].loss if len(objectives) == 1 else None
        self.test_loss = test_loss if test_loss is not None else self.loss
        self.distributions = nn.ModuleList(self._assign_modules())
        for objective in objectives:
            objective.build(_trained_by(objective))
        self.clip_grad_norm, self.clip_grad_value = objectives[0].clip_grad_norm, objectives[0].clip_grad_value
        self.compile = _compile.check_mode(compile)
        if distributed not in (None, True, False):
            raise ValueError(f"Model: distributed must be True, False or None (automatic); got {distributed!r}.")
        self.distributed = distributed
        self.precision = _step.check_precision(precision)
        self._reference = objectives[0].parameters[0]  # where the parameters live, and their dtype
        self._modules = list(self.distributions.modules())
        losses = [o.loss for o in objectives] + ([test_loss] if test_loss is not None else [])
        declared = [d for o in objectives for d in o.distributions]
        self.users = [d for d in _unique([d for loss in losses for d in loss.distributions] + declared)
                      if isinstance(d, Distribution)]
        self._warn_of_untrained(losses)
        self._seen_inputs = set()
        self._steps, self._steps_device, self._tester = None, None, None
        self._compile_failed_once, self._test_checked = False, False
        self.world, self.calls = None, 0
        self.boxes = None

    @staticmethod
    def _several(objectives, distributions, optimizer, optimizer_params, clip_grad_norm, clip_grad_value):
        objectives = list(objectives)
        bad = [type(o).__name__ for o in objectives if not isinstance(o, Objective)]
        if bad or not objectives:
            raise TypeError(f"Model: a list given as the loss must hold Objective(loss, distributions, ...) "
                            f"entries; got {bad or 'none'}.")
        given = [name for name, value, default in (
            ("distributions", distributions, None), ("optimizer", optimizer, torch.optim.Adam),
            ("optimizer_params", optimizer_params, None), ("clip_grad_norm", clip_grad_norm, None),
            ("clip_grad_value", clip_grad_value, None)) if value is not default]
        if given:
            raise TypeError(f"Model: with a list of Objective, give {', '.join(given)} to each Objective instead.")
        for i, objective in enumerate(objectives):
            if objective.name is None:
                objective.name = f"objective{i + 1}" if len(objectives) > 1 else None
        names = [o.name for o in objectives]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"Model: objective names must differ; {twice} is given more than once.")
        if any(o.modules is not None for o in objectives):
            raise ValueError("Model: an Objective belongs to one Model; create a new Objective for another model.")
        return objectives

    def _assign_modules(self):
        """What each objective trains: its distributions, and the networks in its loss (a learned baseline, a
        term's network) that are in no objective's distributions. Returns every module, in that order."""
        declared = [d for o in self.objectives for d in o.distributions]
        everything = _unique(declared)
        for i, objective in enumerate(self.objectives):
            losses = [objective.loss] + ([self.test_loss] if i == 0 and self.test_loss is not None else [])
            extra = [m for loss in losses for m in loss.modules
                     if all(m is not d and not _contains(d, m) for d in everything)]
            objective._extra = _unique(extra)
            everything += objective._extra
        if len(self.objectives) == 1:  # one objective: its distributions first, then the extra networks
            objective = self.objectives[0]
            return _unique(objective.distributions) + objective._extra
        return everything

    def _warn_of_untrained(self, losses):
        """A distribution the loss uses whose trainable parameters no objective trains (a learned prior left out of
        ``distributions``) would silently stay as initialized: say so."""
        trained = {id(p) for o in self.objectives for p in o.parameters}
        # a product (already flat) is named by the factor left out, p(z), not as p(x,z)
        left = [d.prob_text for loss in losses for top in loss.distributions for d in getattr(top, "factors", [top])
                if any(p.requires_grad and id(p) not in trained for p in d.parameters())]
        if left:
            left = list(dict.fromkeys(left))
            warnings.warn(f"Model: the loss uses {', '.join(left)}, whose parameters are not trained: "
                          f"{'it is' if len(left) == 1 else 'they are'} not in distributions. List "
                          f"{'it' if len(left) == 1 else 'them'} there to train {'it' if len(left) == 1 else 'them'} "
                          f"(a learned prior, say), or freeze {'its' if len(left) == 1 else 'their'} parameters "
                          f"(requires_grad_(False)) to keep them fixed.", stacklevel=3)

    def __repr__(self):
        if len(self.objectives) == 1:
            lines = [f"Model(loss = {self.loss}", f"  optimizer: {type(self.optimizer).__name__}"]
        else:
            lines = ["Model("] + [f"  {o.name} = {o.loss}  [{type(o.optimizer).__name__}]" for o in self.objectives]
        lines += [f"  {getattr(d, 'prob_text', 'network')}: {type(d).__name__}" for d in self.distributions]
        return "\n".join(lines) + ")"

    @property
    def optimizer(self):
        """The optimizer (of a model with one objective; ``model.optimizers`` lists those of several)."""
        if len(self.objectives) > 1:
            raise AttributeError("Model.optimizer: this model has several objectives, each with its own optimizer; "
                                 "use model.optimizers (or model.objectives[i].optimizer).")
        return self.objectives[0].optimizer

    @property
    def optimizers(self):
        """The optimizer of each objective, in order."""
        return [o.optimizer for o in self.objectives]

    @property
    def device(self):
        """The device the parameters are on."""
        return self._reference.device

    # ------------------------------------------------------------- stepping
    def train(self, inputs, sync=True, **params):
        """One optimizer step on the batch ``inputs`` (one per objective, in turn); returns the loss before it.

        With ``sync=True`` (default) the loss is a float, read before the update: a non-finite loss raises
        :class:`NonFiniteLossError` and the parameters are left as they were. With ``sync=False`` nothing
        is read back to the host: the loss is returned as a 0-dim tensor on the device, a non-finite loss
        makes the update a no-op there (and every later one until the next read, so the parameters stay
        those from before it; with several objectives, each stops at its own first non-finite loss while the
        others go on until the read), and the error is raised at the next read: :meth:`synchronize`, a synchronous
        step, or after 100 pending steps. :meth:`fit` defers on accelerators. With several objectives,
        a dict ``{name: loss}`` of the objectives stepped on this batch. With distributed training, the loss
        is averaged over the processes (read at every step).
        """
        check_parameter_values(params, "Model.train")
        self._set_training(True)
        self._prepare(inputs)
        steps = self._step_objects()
        self.calls += 1
        if self.world > 1:
            sync = True
        if len(steps) == 1:
            return steps[0].train(inputs, params, sync)
        out = {}
        for i, objective in enumerate(self.objectives):
            if (self.calls - 1) % objective.every == 0:
                out[objective.name] = self._steps[i].train(inputs, params, sync)  # (a failed compile swaps steps)
        return out

    def synchronize(self):
        """Read the pending deferred steps: raises :class:`NonFiniteLossError` for a non-finite loss among them
        (naming its terms; its ``call`` is the number of the :meth:`train` call that took it)."""
        for runner in self._steps or ():
            runner.settle()

    def test(self, inputs, **params):
        """The test loss on ``inputs`` in evaluation mode, without gradients (with several objectives and no
        ``test_loss``, a dict of each objective's loss)."""
        check_parameter_values(params, "Model.test")
        self._set_training(False)
        self._prepare(inputs)
        self._step_objects()
        if self.test_loss is not None:
            return self._test(self.test_loss, inputs, params).item()
        return {o.name: self._test(o.loss, inputs, params).item() for o in self.objectives}

    def _test(self, loss, inputs, params):
        if self._tester is not None and self._test_checked:
            return self._tester(loss, inputs, self.boxes(params))
        if self._test_checked and validation_enabled():
            with _checks.validation(False):
                value = _step.evaluate_test(loss, inputs, params, self.precision, self.device)
        else:
            value = _step.evaluate_test(loss, inputs, params, self.precision, self.device)
        self._test_checked = True
        return value

    def fit(self, train_data, epochs, valid_data=None, *, checkpoint_dir=None, checkpoint_every=1, resume=None,
            keep=None, progress=True, tensorboard=None, params=None, callback=None, sync_every=None):
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
            sync_every: read the loss back to the host every this many steps (and at the end of each epoch,
                before a checkpoint). Between reads the steps are deferred (``train(..., sync=False)``): the
                losses are summed on the device, a non-finite loss skips its update there and is reported at
                the next read, naming its terms and batch. None (default): every step on the CPU, where
                reading costs nothing, every 100 steps on an accelerator, where each read would stall the
                queue of work.

        Returns:
            ``[{"epoch": 1, "train_loss": ..., "valid_loss": ...}, ...]``: the batch-size weighted mean losses
            (``valid_loss`` only with ``valid_data``). With several objectives, ``train_loss:<name>`` (and
            ``valid_loss:<name>`` without a ``test_loss``) for each.

        Raises:
            NonFiniteLossError: on a non-finite loss, naming the terms and the last good checkpoint, which
                it leaves as it is (no checkpoint is written after a non-finite loss).
            TrainingInterrupted: on Ctrl-C, naming the checkpoint to resume from.
        """
        from ._fit import fit
        return fit(self, train_data, epochs, valid_data, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=checkpoint_every, resume=resume, keep=keep, progress=progress,
                   tensorboard=tensorboard, params=params, callback=callback, sync_every=sync_every)

    def _set_training(self, mode):
        # Module.train() walks every submodule; skip it when nothing changed (it is most of a small step)
        if any(m.training is not mode for m in self._modules):
            self.distributions.train(mode)

    def _prepare(self, inputs):
        """Once per kind of input (names, devices, dtypes): check them; once per run: join the process group."""
        if self.world is None:
            self.world = _distributed.world_size() if _distributed.resolve(self.distributed) else 1
            if self.world > 1:
                _distributed.broadcast(self.distributions)  # every process starts from the first one's state
        if not isinstance(inputs, dict):
            return
        ref = self._reference
        key = (ref.device, ref.dtype,
               *((k, v.device, v.dtype) if isinstance(v, torch.Tensor) else (k, _kind(v)) for k, v in inputs.items()))
        if key not in self._seen_inputs:
            _checks.check_inputs(inputs, self.users)
            self._seen_inputs.add(key)

    def _step_objects(self):
        """The runner of each objective's step for the current device: eager, or the compiled kind."""
        device = self.device
        if self._steps is None or self._steps_device != device:
            self.boxes = _compile.Boxes(device, self._reference.dtype)
            environment = self._environment()
            mode = False
            if self.compile is not False and not self._compile_failed_once:
                mode = _compile.resolve_mode(self.compile, device, self.world > 1)
                self._tester = _compile.CompiledTest(environment)
            self._steps = [_compile.build(mode, _step.StepPieces(o, environment)) for o in self.objectives]
            self._steps_device = device
        return self._steps

    def _environment(self):
        """What the steps need from this model (:class:`~pgm.models._step.Environment`)."""
        return _step.Environment(
            device=self.device, dtype=self._reference.dtype, precision=self.precision, world=self.world,
            modules=self.distributions, users=self.users, boxes=self.boxes, compile=self.compile,
            calls=lambda: self.calls, set_training=self._set_training, compile_failed=self._compile_failed,
            objectives=len(self.objectives))

    def _compile_failed(self, runner, error, stacklevel=2):
        """Warn once; every objective's compiled runner (and the compiled test) gives way to an eager one of the
        same pieces, which go on from where they were."""
        kind = runner.kind if runner is not None else "test"
        _compile.fallback_warning(self.compile, kind, error, stacklevel=stacklevel)
        self._compile_failed_once, self._tester = True, None
        for i, current in enumerate(self._steps or ()):
            if current.kind != "eager":
                self._steps[i] = _step.EagerStep(current.pieces)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """``{"distributions": ..., "optimizer": ..., "calls": ..., "hyperparameters": ...}``: the networks' and
        the optimizer's state dicts (with several objectives, ``"optimizers": {name: ...}``), the number of
        training calls so far (which objectives step on the next one depends on it) and the numbers each
        optimizer was built with."""
        state = {"distributions": self.distributions.state_dict()}
        if len(self.objectives) == 1:
            state["optimizer"] = self.optimizer.state_dict()
        else:
            state["optimizers"] = {o.name: o.optimizer.state_dict() for o in self.objectives}
        state["calls"] = self.calls
        state["hyperparameters"] = [dict(o.hyperparameters) for o in self.objectives]
        return state

    def load_state_dict(self, state):
        """Load what :meth:`state_dict` returned (a compiled step is rebuilt on the next call)."""
        several = len(self.objectives) > 1
        if several != ("optimizers" in state):
            raise ValueError(f"Model.load_state_dict: the state is of a model with "
                             f"{'one objective' if several else 'several objectives'}, this one has "
                             f"{'several' if several else 'one'}.")
        if several and set(state["optimizers"]) != {o.name for o in self.objectives}:
            raise ValueError(f"Model.load_state_dict: the state holds the objectives {sorted(state['optimizers'])}, "
                             f"this model has {sorted(o.name for o in self.objectives)}.")
        self.distributions.load_state_dict(state["distributions"])
        saved = state.get("hyperparameters") or [{} for _ in self.objectives]
        for objective, built_with in zip(self.objectives, saved):
            objective.optimizer.load_state_dict(state["optimizers"][objective.name] if several else state["optimizer"])
            # torch restores the checkpoint's lr, betas, ...; where this model was built with other numbers than
            # the checkpoint's model was, this model's win (resuming with a lower learning rate)
            changed = {k: v for k, v in objective.hyperparameters.items() if k in built_with and built_with[k] != v}
            for group in objective.optimizer.param_groups:
                group.update(changed)
            objective.restore_implementation()
        self.calls = state.get("calls", self.calls)
        self._steps = None  # a captured step holds the old optimizer state; build it again

    def save(self, path):
        """Save the parameters and the optimizer state (atomically)."""
        atomic_save(self.state_dict(), path)

    def load(self, path, map_location=None):
        """Load what :meth:`save` wrote, or a checkpoint written by :meth:`fit`."""
        self.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))


def _trained_by(objective):
    return _unique(objective.distributions) + objective._extra
