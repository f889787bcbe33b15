"""The compiled training steps behind ``Model(compile=...)``: the modes, what both compiled runners share, and the
inductor runner (the CUDA-graph runner is in ``_cudagraph.py``).

* ``"inductor"``: ``torch.compile`` of the step's pieces. Dynamo breaks the graph at ``backward()`` and (on
  purpose, see ``torch.optim.optimizer._use_grad_for_differentiable``) around ``optimizer.step()``, so one step runs
  the compiled forward with its AOT-compiled backward, then the compiled update (clipping and optimizer; with the
  device-side non-finite guard when the step is deferred).
* ``"cudagraph"``: the whole step -- forward, backward, the non-finite check and the guarded update -- captured as
  one CUDA graph and replayed on static copies of the inputs (``_cudagraph.CUDAGraphStep``).

Both run the same :class:`~pgm.models._step.StepPieces` the eager runner does, so they compute the same numbers. Both
keep :class:`~pgm.losses.Parameter` values that are numbers in 0-dim tensors filled in place, so an annealed weight
never recompiles or recaptures (a relaxed distribution's temperature is such a buffer already). The first training
step and the first test of a model run eagerly, with parameter checks on. If compiling or capturing fails, the
model warns once and gives the objective an eager runner of the same pieces.
"""
from __future__ import annotations

import inspect
import numbers
import warnings

import torch

from . import _step
from ._objective import fused
from ._checks import validation

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

    def __init__(self, environment):
        self.environment = environment
        self._compiled = _torch_compile(self._eager)

    def _eager(self, loss, inputs, params):
        env = self.environment
        return _step.evaluate_test(loss, _alias(inputs), params, env.precision, env.device)

    def __call__(self, loss, inputs, params):
        with torch.no_grad(), validation(False):
            try:
                return self._compiled(loss, inputs, params)
            except Exception as error:
                result = self._eager(loss, inputs, params)
                self.environment.compile_failed(None, error, stacklevel=6)  # the user's model.test(...) line
                return result


def boxed(pieces, inputs, params):
    """What both compiled runners do before a step: the Parameter values given are kept (the report of a bad step
    names them) and the numbers put in the model's boxes; a loaded model is checked (:func:`prime`) so that its
    first step is compiled, as the same step of the run it resumes was."""
    pieces.given = params
    params = pieces.environment.boxes(params)
    if not pieces.checked and pieces.optimizer.state:
        prime(pieces, inputs, params)
    return params


def prime(pieces, inputs, params):
    """Check a loaded model's parameters on an eager evaluation that changes nothing (evaluation mode, no gradient,
    random state put back). (A fresh model's first step is eager: it also creates the optimizer's state.)"""
    env = pieces.environment
    env.set_training(False)
    try:
        with torch.random.fork_rng(devices=[env.device] if env.device.type == "cuda" else []), torch.no_grad():
            pieces.forward(inputs, params, distributed=False)
    finally:
        env.set_training(True)
    pieces.checked = True


def keep_state(pieces):
    """The random states and the tensors a partly run step may have changed (the buffers, the non-finite record),
    to put back with :func:`put_back` before the step runs again eagerly."""
    env = pieces.environment
    tensors = list(env.modules.buffers())
    watch = pieces._watch
    if watch is not None:
        tensors += [watch.count, watch.bad_at, watch.bad_value, watch.skip]
    with torch.no_grad():
        return (torch.get_rng_state(), torch.cuda.get_rng_state(env.device) if env.device.type == "cuda" else None,
                [(t, t.clone()) for t in tensors])


def put_back(kept, device):
    rng, cuda_rng, tensors = kept
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, device)
    with torch.no_grad():
        for tensor, value in tensors:
            tensor.copy_(value)


class InductorStep:
    """The runner that compiles the step's pieces (``torch.compile``): the forward and backward pass, the update."""

    kind = "inductor"

    def __init__(self, pieces):
        self.pieces = pieces
        self._compiled_layouts = set()  # (compiled function, argument layout) of the calls that compiled
        self._forward_backward = _torch_compile(self._forward_backward_eager)
        self._update = _torch_compile(pieces.update)
        self._guarded_update = _torch_compile(pieces.guarded_update)
        # torch.compile of an optimizer's step leaves 0-dim float64 parameters (a planar flow's bias) unchanged
        # in torch 2.11 (not in 2.14): there the update of a model with 0-dim parameters runs eagerly
        self._eager_update = _BEFORE_2_14 and any(p.dim() == 0 for p in pieces.parameters)

    def train(self, inputs, params, sync=True):
        pieces = self.pieces
        params = boxed(pieces, inputs, params)
        if not pieces.checked:
            return pieces.first(inputs, params)
        return pieces.run(inputs, params, sync, self.forward_backward, self.update, self.guarded_update)

    def settle(self):
        self.pieces.settle()

    def _forward_backward_eager(self, inputs, params):
        # StepPieces.forward_backward written out: Dynamo breaks the graph at backward(), and a break inside a
        # called function would make Dynamo trace that function's frame anew, guarding on the aliased inputs
        pieces = self.pieces
        value = pieces.forward(_alias(inputs), params)
        detached = value.detach()
        value.backward(inputs=pieces.parameters)
        return detached

    def _retry_forward_backward(self, inputs, params):
        self.pieces.zero_grad()  # the failed attempt may have left gradients
        return self._forward_backward_eager(inputs, params)

    def forward_backward(self, inputs, params):
        return self._run(self._forward_backward, self._retry_forward_backward, inputs, params)

    def update(self):
        if self._eager_update:
            self.pieces.update()
        else:
            self._run(self._update, self.pieces.update)

    def guarded_update(self, value):
        pieces = self.pieces
        if self._eager_update or fused(pieces.optimizer):
            # a fused optimizer's update is one kernel already, and Dynamo does not pass it the found-inf flag
            pieces.guarded_update(value)
        else:
            self._run(self._guarded_update, pieces.guarded_update, value)

    def _run(self, compiled, eager, *args):
        """``compiled(*args)``; if it fails, ``eager(*args)``: its error is the user's, else compiling failed.

        A compiled call fails mostly while it compiles, and by then part of it may have run (the forward pass
        before a failing backward: its draws, BatchNorm's statistics, the non-finite record). On a call that
        compiles (arguments of a layout not seen yet) the random state and those buffers are kept first and put
        back before the eager retry, so that the step runs once, as the eager step would have."""
        key = (id(compiled),) + tuple(_layout(a) if isinstance(a, dict) else _layout({"": a}) for a in args)
        kept = None
        if key not in self._compiled_layouts:
            kept = keep_state(self.pieces)
        try:
            result = compiled(*args)
        except Exception as error:
            if kept is not None:
                put_back(kept, self.pieces.environment.device)
            result = eager(*args)
            self.pieces.environment.compile_failed(self, error, stacklevel=8)  # the user's model.train(...) line
            return result
        self._compiled_layouts.add(key)
        return result


def build(mode, pieces, graphs=None):
    """The runner of ``pieces`` for ``mode`` (False: eager; ``graphs``: the CUDA calls of a capture, which tests
    stand in for)."""
    if mode == "cudagraph":
        from ._cudagraph import CUDAGraphStep
        return CUDAGraphStep(pieces, graphs)
    if mode == "inductor":
        return InductorStep(pieces)
    return _step.EagerStep(pieces)


def fallback_warning(compile, kind, error, stacklevel=2):
    warnings.warn(
        f"Model(compile={compile!r}): could not {'capture' if kind == 'cudagraph' else 'compile'} the training "
        f"step ({_reason(error)}); the model trains in eager mode from now on.",
        UserWarning,
        stacklevel=stacklevel,
    )
