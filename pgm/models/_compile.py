"""The compiled training step behind ``Model(compile=...)``.

Two kinds of step, both subclasses of the eager step (``_step.EagerStep``) that compile or capture its own
pieces, so that they compute the same numbers:

* ``"inductor"``: ``torch.compile`` of the pieces. Dynamo breaks the graph at ``backward()`` and (on purpose,
  see ``torch.optim.optimizer._use_grad_for_differentiable``) around ``optimizer.step()``, so one step runs
  the compiled forward with its AOT-compiled backward, then the compiled update (clipping and optimizer;
  with the device-side non-finite guard when the step is deferred).
* ``"cudagraph"``: the whole step -- forward, backward, the non-finite check and the guarded update -- captured
  as one CUDA graph and replayed on static copies of the inputs; one graph per input signature (a last batch of
  another size gets its own). Nothing is read back to the host unless the step is synchronous.

Both keep :class:`~pgm.losses.Parameter` values that are numbers in 0-dim tensors filled in place, so an
annealed weight never recompiles or recaptures (a relaxed distribution's temperature is such a buffer
already). The first training step and the first test of a model run eagerly, with parameter checks on.
If compiling or capturing fails, the model warns once and the step object is swapped for the eager one.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import warnings

import torch

from . import _checks
from ._checks import validation
from . import _step
from ._step import EagerStep

MODES = ("inductor", "cudagraph")

# the torch.compile backend; tests substitute a cheaper or a failing one
BACKEND = "inductor"


def check_mode(compile):
    """The ``compile=`` argument as ``False``, ``True``, ``"inductor"`` or ``"cudagraph"``."""
    if compile is None or compile is False:
        return False
    if compile is True or (isinstance(compile, str) and compile in MODES):
        return compile
    raise ValueError(f"Model: compile must be False, True, 'inductor' or 'cudagraph'; got {compile!r}.")


def resolve_mode(compile, device, distributed):
    """The kind of step for ``compile`` on ``device``: True is a CUDA graph on CUDA and inductor elsewhere."""
    if compile is True:
        return "cudagraph" if device.type == "cuda" and not distributed else "inductor"
    if compile == "cudagraph":
        if device.type != "cuda":
            raise ValueError(
                f"Model(compile='cudagraph') needs the parameters on a CUDA device; they are on {device}. "
                f"Move the distributions first (q.to('cuda'), ...), or use compile='inductor' (or True)."
            )
        if distributed:
            raise ValueError(
                "Model(compile='cudagraph') cannot capture the gradient all-reduce of distributed training; "
                "use compile='inductor' (or True, which picks it when distributed)."
            )
    return compile


# torch 2.11 (the GPU image's) differs where noted: a compiled update of 0-dim parameters, a failed capture
_BEFORE_2_14 = torch.torch_version.TorchVersion(torch.__version__) < "2.14"


def _torch_compile(fn):
    kwargs = {}
    # where torch has it (2.14, not 2.11): each compiled function keeps its own recompile budget, so that many
    # models in one process (a sweep, a test suite) do not exhaust the budget of the functions they share
    # (optimizer.step); without it, Dynamo runs a frame past its budget eagerly, with a warning.
    if "isolate_recompiles" in inspect.signature(torch.compile).parameters:
        kwargs["isolate_recompiles"] = True
    return torch.compile(fn, backend=BACKEND, **kwargs)


def _reason(error):
    # Dynamo wraps a backend's error ("backend='inductor' raised:"): name the one underneath
    inner = getattr(error, "inner_exception", None)
    if isinstance(inner, BaseException):
        return _reason(inner)
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0].strip() if lines else ""
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _alias(inputs):
    """Inputs as views made inside the compiled function (free): the loss keys its per-evaluation sample
    cache by the identity of tensors, and Dynamo guards on the identity of input tensors it is asked
    about, which would recompile every new batch."""
    return _map_tensors(lambda t: t.view_as(t), inputs)


def _map_tensors(fn, inputs):
    """``inputs`` with ``fn`` applied to each tensor, into named data sets' dicts."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, dict):
        return {k: _map_tensors(fn, v) for k, v in inputs.items()}
    return inputs


def _copy_into(static, inputs):
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            static[k].copy_(v, non_blocking=True)
        elif isinstance(v, dict):
            _copy_into(static[k], v)


def _layout(inputs):
    return tuple((k, v.shape, v.dtype, v.device) if isinstance(v, torch.Tensor)
                 else (k, _layout(v)) if isinstance(v, dict) else (k, v) for k, v in inputs.items())


class Boxes:
    """0-dim tensors holding the numeric Parameter values, filled in place at each step."""

    def __init__(self, device, dtype):
        self.device, self.dtype, self.boxes = device, dtype, {}

    def __call__(self, params):
        out = {}
        for name, value in params.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                box = self.boxes.get(name)
                if box is None:
                    box = self.boxes[name] = torch.tensor(float(value), dtype=self.dtype, device=self.device)
                else:
                    box.fill_(value)
                value = box
            out[name] = value
        return out


class CompiledTest:
    """The test loss, compiled (one per model); numeric Parameters in 0-dim tensors."""

    def __init__(self, model):
        self.model = model
        self._compiled = _torch_compile(self._eager)

    def _eager(self, loss, inputs, params):
        return self.model._evaluate_test(loss, _alias(inputs), params)

    def __call__(self, loss, inputs, params):
        with torch.no_grad(), validation(False):
            try:
                return self._compiled(loss, inputs, params)
            except Exception as error:
                result = self._eager(loss, inputs, params)
                self.model._compile_failed(None, "test", error, stacklevel=6)  # the user's model.test(...) line
                return result


class _CompiledStep(EagerStep):
    """What both compiled steps share: numeric Parameters in tensors, a loaded model's first step."""

    def __init__(self, model, objective):
        super().__init__(model, objective)
        self._compiled_layouts = set()  # (compiled function, argument layout) of the calls that compiled

    def train(self, inputs, params, sync=True):
        self.given = params  # as the user gave them: the boxes are refilled at the next step
        params = self.model.boxes(params)
        if not self.checked and self.optimizer.state:
            self.prime(inputs, params)
        return self.compiled_train(inputs, params, sync) if self.checked else self.first(inputs, params)

    def compiled_train(self, inputs, params, sync):
        return EagerStep.train(self, inputs, params, sync)

    def prime(self, inputs, params):
        """Check a loaded model's parameters on an eager evaluation that changes nothing (evaluation mode, no
        gradient, random state put back), so that its first step is compiled, as the same step of the run
        it resumes was. (A fresh model's first step is eager: it also creates the optimizer's state.)"""
        model = self.model
        device = model.device
        model._set_training(False)
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
                EagerStep.forward(self, inputs, params, distributed=False)
        finally:
            model._set_training(True)
        self.checked = True

    def _run(self, compiled, eager, *args):
        """``compiled(*args)``; if it fails, ``eager(*args)``: its error is the user's, else compiling failed.

        A compiled call fails mostly while it compiles, and by then part of it may have run (the forward pass
        before a failing backward: its draws, BatchNorm's statistics, the non-finite record). On a call that
        compiles (arguments of a layout not seen yet) the random state and those buffers are kept first and put
        back before the eager retry, so that the step runs once, as the eager step would have."""
        key = (id(compiled),) + tuple(_layout(a) if isinstance(a, dict) else _layout({"": a}) for a in args)
        kept = None
        if key not in self._compiled_layouts:
            kept = self._keep()
        try:
            result = compiled(*args)
        except Exception as error:
            if kept is not None:
                self._put_back(kept)
            result = eager(*args)
            self.model._compile_failed(self, self.kind, error, stacklevel=9)  # the user's model.train(...) line
            return result
        self._compiled_layouts.add(key)
        return result

    def _keep(self):
        model, device = self.model, self.model.device
        tensors = list(model.distributions.buffers())
        if self._watch is not None:
            watch = self._watch
            tensors += [watch.count, watch.bad_at, watch.bad_value, watch.skip]
        with torch.no_grad():
            return (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    [(t, t.clone()) for t in tensors])

    def _put_back(self, kept):
        rng, cuda_rng, tensors = kept
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, self.model.device)
        with torch.no_grad():
            for tensor, value in tensors:
                tensor.copy_(value)


class InductorStep(_CompiledStep):
    """``torch.compile`` of the eager step's pieces: the forward and backward pass, and the update."""

    kind = "inductor"

    def __init__(self, model, objective):
        super().__init__(model, objective)
        self._forward_backward = _torch_compile(self._forward_backward_eager)
        self._update = _torch_compile(lambda: EagerStep.update(self))
        self._guarded_update = _torch_compile(lambda value: EagerStep.guarded_update(self, value))
        # torch.compile of an optimizer's step leaves 0-dim float64 parameters (a planar flow's bias) unchanged
        # in torch 2.11 (not in 2.14): there the update of a model with 0-dim parameters runs eagerly
        self._eager_update = _BEFORE_2_14 and any(p.dim() == 0 for p in self.objective.parameters)

    def _forward_backward_eager(self, inputs, params):
        # EagerStep.forward_backward written out: Dynamo breaks the graph at backward(), and a break inside a
        # called function would make Dynamo trace that function's frame anew, guarding on the aliased inputs
        value = EagerStep.forward(self, _alias(inputs), params)
        detached = value.detach()
        value.backward(inputs=self.objective.parameters)
        return detached

    def _retry_forward_backward(self, inputs, params):
        self.zero_grad()  # the failed attempt may have left gradients
        return self._forward_backward_eager(inputs, params)

    def forward_backward(self, inputs, params):
        return self._run(self._forward_backward, self._retry_forward_backward, inputs, params)

    def update(self):
        if self._eager_update:
            EagerStep.update(self)
        else:
            self._run(self._update, lambda: EagerStep.update(self))

    def guarded_update(self, value):
        if self._eager_update or _step.fused(self.optimizer):
            # a fused optimizer's update is one kernel already, and Dynamo does not pass it the found-inf flag
            EagerStep.guarded_update(self, value)
        else:
            self._run(self._guarded_update, lambda v: EagerStep.guarded_update(self, v), value)


class CUDAGraphs:
    """The CUDA calls of a capture, in one place (tests stand in for them on the CPU)."""

    capturable = True  # set ``capturable=True`` on optimizers that have the option

    def __init__(self, device):
        self.device = device

    def get_rng_state(self):
        return torch.cuda.get_rng_state(self.device)

    def set_rng_state(self, state):
        torch.cuda.set_rng_state(state, self.device)

    def warmup(self, fn, times):
        # on a side stream, as torch.cuda.graph's documentation asks (cuBLAS handles, autograd's lazy setup); the
        # default stream waits for it whether or not the warm-up got through
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(stream):
                for _ in range(times):
                    fn()
        finally:
            torch.cuda.current_stream(self.device).wait_stream(stream)

    def pool(self):
        """A memory pool the graphs of one step share (they never run at once)."""
        return torch.cuda.graph_pool_handle()

    def capture(self, fn, pool=None):
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream(self.device)
        raised = []

        def run():
            try:
                fn()
            except BaseException as error:
                raised.append(error)
                raise

        try:
            # thread_local: a DataLoader's pin-memory thread may call CUDA while we capture
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                run()
        except BaseException as error:
            # a failed capture leaves torch.cuda.graph's side stream current, and (torch 2.11) the CUDA
            # generator marked as capturing, so that the eager step after it could not draw: both are put back.
            # The error the step raised is the one to report, not capture_end's "previous error during capture".
            torch.cuda.set_stream(stream)
            _end_generator_capture(self.device)
            raise (raised[0] if raised and raised[0] is not error else error)
        return graph


def _end_generator_capture(device):
    if _BEFORE_2_14:  # torch < 2.14: one capturing flag per generator, cleared by capture_end alone
        index = device.index if device.index is not None else torch.cuda.current_device()
        generator = torch.cuda.default_generators[index]
        try:
            generator.graphsafe_set_state(generator.clone_state())  # a clone is not capturing
        except (AttributeError, RuntimeError):
            pass


class _Captured:
    __slots__ = ("inputs", "params", "loss", "graph", "grads")


# torch warns when an optimizer built (here: made) capturable steps outside a capture, as the warm-up must
_UNCAPTURED = r"This instance was constructed with capturable=True"

# optimizers whose capturable update reads a tensor lr on the device (the others read it on the host: .item())
TENSOR_LR = (torch.optim.Adam, torch.optim.AdamW)


def _frozen(optimizer, tensor_lr):
    """What a capture freezes of the optimizer's settings: every hyper-parameter of every param group (lr too,
    unless it is read from a tensor), as a comparable tuple."""
    def plain(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", id(value))  # the user's own tensor, read on the device at each replay
        if isinstance(value, (list, tuple)):
            return tuple(plain(v) for v in value)
        return value
    return tuple(tuple(sorted((k, plain(v)) for k, v in group.items()
                              if k not in ("params", "capturable") and not (k == "lr" and tensor_lr)))
                 for group in optimizer.param_groups)


def _changed(before, after):
    """The names of the hyper-parameters that differ between two ``_frozen`` settings."""
    names = set()
    for old, new in zip(before, after):
        old, new = dict(old), dict(new)
        names |= {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    return sorted(names)


class CUDAGraphStep(_CompiledStep):
    """The whole training step (forward, backward, the non-finite check and the guarded update) as one CUDA
    graph, replayed on static copies of the inputs; one graph per input signature (a last batch of another size
    gets its own), all in one memory pool. A synchronous step reads the loss after the replay: a non-finite one
    (or a non-finite gradient) has already made the update a no-op on the device, and raises.

    What a graph freezes is watched: the Parameter values given as tensors are copied into the graph's own before
    each replay, as the inputs are; lr is a device tensor filled before each replay for optimizers that read it
    there (Adam, AdamW); any other optimizer setting a scheduler changes (SGD's lr, betas, momentum, weight decay)
    is baked into the graph, so a change recaptures the step, with a warning from the second change on.
    """

    kind = "cudagraph"
    autocast_cache = False  # a cache inside a graph would hold the casts made while capturing
    warmup_steps = 2
    max_graphs = 16  # input signatures captured

    def __init__(self, model, objective, graphs=None):
        super().__init__(model, objective)
        self.graphs = graphs if graphs is not None else CUDAGraphs(model.device)
        self.captured = {}
        self._lr = []  # [param group, 0-dim lr tensor the graph reads, value it holds]
        self._tensor_lr_ok = isinstance(self.optimizer, TENSOR_LR)
        self._settings = None  # the optimizer's settings the graphs froze
        self._recaptures = 0  # captures made again because a setting changed
        self._pool = None

    def _tensor_values(self):
        """The Parameter values the user gave as tensors: copied into the graph's own before each replay, as the
        inputs are (numbers are in the model's boxes already)."""
        return {k: v for k, v in (self.given or {}).items() if isinstance(v, torch.Tensor)}

    def _signature(self, inputs, params):
        return _layout(inputs), tuple(sorted(params)), _layout(self._tensor_values())

    def _static_copy(self, tensor):
        """A copy the graph reads, on the model's device and, if floating, in its dtype: a 0-dim CPU tensor would be
        read once, when the graph is captured."""
        reference = self.model._reference
        dtype = reference.dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.detach().to(device=reference.device, dtype=dtype, copy=True)

    def compiled_train(self, inputs, params, sync):
        if not self.deferrable():
            return self.first(inputs, params)
        self._check_settings()
        key = self._signature(inputs, params)
        captured = self.captured.get(key)
        if captured is None and len(self.captured) >= self.max_graphs:
            self._too_many_graphs()
            return EagerStep.train(self, inputs, params, sync)
        if captured is None:
            try:
                captured = self._capture(inputs, params, key)
            except Exception as error:
                self.zero_grad()
                loss = EagerStep.train(self, inputs, params, sync)
                self.model._compile_failed(self, self.kind, error, stacklevel=6)
                return loss
        if sync:
            self.settle()
        _copy_into(captured.inputs, inputs)
        _copy_into(captured.params, self._tensor_values())
        self._fill_lr()
        parameters = self.objective.parameters
        if any(p.grad is not g for p, g in zip(parameters, captured.grads)):
            for p, g in zip(parameters, captured.grads):  # the gradients this graph writes (another shape's,
                p.grad = g                                 # or an eager step's, were there before)
        captured.graph.replay()
        if not sync:
            return self.defer(captured.loss.clone(), inputs, params)
        watch = self._watch
        watch.host_count += 1
        loss, skipped = torch.stack((captured.loss, watch.skip.to(captured.loss.dtype))).tolist()  # one read
        if not math.isfinite(loss):
            watch.reset()
            raise _checks.non_finite_report(self.loss, inputs, params, self.model.users, loss)
        if skipped:
            watch.reset()
            raise _checks.non_finite_gradient_report(loss, self.model.distributions, parameters)
        return loss

    def _check_settings(self):
        """Drop the graphs if an optimizer setting they froze has changed since (a scheduler's), so that the step
        is captured again with the new one; warn from the second time on, since each costs a capture."""
        settings = _frozen(self.optimizer, self._tensor_lr_ok)
        if self._settings is None or settings == self._settings:
            self._settings = settings
            return
        changed = _changed(self._settings, settings)
        self._settings = settings
        self.captured.clear()
        self._recaptures += 1
        if self._recaptures == 2:
            advice = ("schedule only lr, with Adam or AdamW (whose lr the graph reads from the device; "
                      "OneCycleLR(..., cycle_momentum=False))" if self._tensor_lr_ok
                      else "use Adam or AdamW, whose lr the graph reads from the device")
            warnings.warn(
                f"Model(compile={self.model.compile!r}): the optimizer's {', '.join(changed)} changed again; a CUDA "
                f"graph freezes it, so the training step is captured again at each change, which is slower than "
                f"not capturing when it changes every step. To keep one graph, {advice}; or use "
                f"compile='inductor'.", UserWarning, stacklevel=6)

    def _capture(self, inputs, params, key):
        graphs = self.graphs
        self.watch()
        if self._pool is None:
            self._pool = graphs.pool()
        captured = _Captured()
        captured.inputs = _map_tensors(lambda t: t.detach().clone(), inputs)
        captured.params = {**params, **{k: self._static_copy(v) for k, v in self._tensor_values().items()}}

        def forward_backward():
            # Python only during capture; on the CPU stand-in it makes replay overwrite the gradients,
            # as a CUDA graph does
            self.zero_grad()
            value = EagerStep.forward(self, captured.inputs, captured.params, distributed=False)
            EagerStep.backward(self, value)
            return value.detach()

        def step():
            captured.loss = forward_backward()
            EagerStep.guarded_update(self, captured.loss)

        # the warm-up runs the whole step, the update's kernels too, but must not train: its updates are no-ops
        # (as after a non-finite loss); BatchNorm statistics, the random state and the record are put back whether
        # or not the warm-up and the capture get through (an eager step follows a failure)
        model, watch = self.model, self._watch
        kept = [(b, b.detach().clone()) for b in model.distributions.buffers()]
        kept += [(t, t.clone()) for t in (watch.count, watch.bad_at, watch.bad_value, watch.skip)]
        rng = graphs.get_rng_state()
        had_state = set(self.optimizer.state)
        self._tensors = None
        try:
            with validation(False), self._tensor_lr(), self._capturable():
                watch.bad_at.fill_(0)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_UNCAPTURED)
                    graphs.warmup(step, self.warmup_steps)
                self._put_back_after_warmup(kept, had_state)
                graphs.set_rng_state(rng)
                self.zero_grad()
                self._tensors = None  # the state tensors, those just made included
                captured.graph = graphs.capture(step, pool=self._pool)
        except BaseException:
            self._put_back_after_warmup(kept, had_state)
            graphs.set_rng_state(rng)
            self._tensors = None
            raise
        captured.grads = [p.grad for p in self.objective.parameters]
        if self._settings is None:
            self._settings = _frozen(self.optimizer, self._tensor_lr_ok)
        self.captured[key] = captured
        return captured

    def _put_back_after_warmup(self, kept, had_state):
        with torch.no_grad():
            for tensor, saved in kept:
                tensor.copy_(saved)
            # state the warm-up created (a parameter without a gradient until now) starts as it would have:
            # zeros, made here rather than inside the graph, which would make them again at every replay
            for p in set(self.optimizer.state) - had_state:
                for value in self.optimizer.state[p].values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()

    @contextlib.contextmanager
    def _tensor_lr(self):
        """Capture the update reading lr from a tensor (filled before each replay), so schedulers work.

        Only for optimizers whose capturable update reads a tensor lr on the device (Adam, AdamW); the param group
        keeps its float outside the capture, so the state dict is unchanged.
        """
        if not self._tensor_lr_ok:
            yield
            return
        known = {id(entry[0]) for entry in self._lr}
        for group in self.optimizer.param_groups:
            if not isinstance(group["lr"], torch.Tensor) and id(group) not in known:
                tensor = torch.tensor(float(group["lr"]), dtype=torch.float32, device=group["params"][0].device)
                self._lr.append([group, tensor, float(group["lr"])])
        floats = []
        for group, tensor, _ in self._lr:
            floats.append(group["lr"])
            group["lr"] = tensor
        try:
            yield
        finally:
            for (group, _, _), value in zip(self._lr, floats):
                group["lr"] = value

    def _too_many_graphs(self):
        if not getattr(self, "_warned_too_many", False):
            self._warned_too_many = True
            warnings.warn(
                f"Model(compile={self.model.compile!r}): {self.max_graphs} input shapes are captured already (one "
                f"CUDA graph each); steps on other shapes run eagerly. Pad or bucket the batches to a few shapes "
                f"(sequence lengths) to keep every step captured.",
                UserWarning, stacklevel=6)

    @contextlib.contextmanager
    def _capturable(self):
        """Capture the update of an optimizer that has a ``capturable`` option with it on (its step counters
        move to the parameters' device for good: the graph updates them there).

        Only while capturing: a replay runs no Python, so the flag matters to the capture alone, and outside it
        the optimizer is the user's (its state dict, a checkpoint loaded on the CPU, an eager step after a
        fallback).
        """
        if not self.graphs.capturable:
            yield
            return
        before = [(group, group["capturable"]) for group in self.optimizer.param_groups if "capturable" in group]
        make_capturable(self.optimizer)
        try:
            yield
        finally:
            for group, value in before:
                group["capturable"] = value

    def _fill_lr(self):
        for entry in self._lr:
            group, tensor, last = entry
            if group["lr"] != last:
                tensor.fill_(group["lr"])
                entry[2] = group["lr"]


def make_capturable(optimizer):
    """Turn on ``capturable`` where the optimizer has it, moving step counters to the parameters' device."""
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    _step.place_steps(optimizer)


def build(mode, model, objective):
    """The step of ``objective`` for ``mode`` (False: eager)."""
    if mode == "cudagraph":
        return CUDAGraphStep(model, objective)
    if mode == "inductor":
        return InductorStep(model, objective)
    return EagerStep(model, objective)


def fallback_warning(compile, kind, error, stacklevel=2):
    warnings.warn(
        f"Model(compile={compile!r}): could not {'capture' if kind == 'cudagraph' else 'compile'} the training "
        f"step ({_reason(error)}); the model trains in eager mode from now on.",
        UserWarning,
        stacklevel=stacklevel,
    )
