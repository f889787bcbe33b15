"""The compiled training step behind ``Model(compile=...)``.

Two kinds of step, both built from the model's own eager pieces so that they compute the same numbers:

* ``"inductor"``: ``torch.compile`` of the step. Dynamo breaks the graph at ``backward()`` and (on purpose,
  see ``torch.optim.optimizer._use_grad_for_differentiable``) around ``optimizer.step()``, so one step runs
  the compiled forward with its AOT-compiled backward, then the compiled update (clipping and optimizer).
* ``"cudagraph"``: the eager step captured as two CUDA graphs, forward+backward and update, replayed on
  static copies of the inputs; one pair per input signature (a last batch of another size gets its own).

Both keep :class:`~pgm.losses.Parameter` values that are numbers in 0-dim tensors filled in place, so an
annealed weight never recompiles or recaptures (a relaxed distribution's temperature is such a buffer
already). The loss is read between the two halves, so a non-finite loss stops before the update.
The first training step and the first test of a model run eagerly, with parameter checks on.
If compiling or capturing fails, the model warns once and trains eagerly from then on.
"""
from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings

import torch

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


def _torch_compile(fn):
    kwargs = {}
    # torch >= 2.10: each compiled function keeps its own recompile budget, so that many models in one
    # process (a sweep, a test suite) do not exhaust the budget of the functions they share (optimizer.step).
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


class _Boxes:
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


class _Step:
    """What both compiled steps share: numeric Parameters in tensors, a compiled test, the eager fallback."""

    kind = None

    def __init__(self, model, device, dtype):
        self.model = model
        self.boxes = _Boxes(device, dtype)
        self._test = _torch_compile(self._test_eager)

    def _test_eager(self, inputs, params):
        inputs = _alias(inputs)
        return self.model._forward(self.model.test_loss, inputs, params, distributed=False)

    def _run(self, compiled, eager, *args):
        """``compiled(*args)``; if it fails, ``eager(*args)``: its error is the user's, else compiling failed."""
        try:
            return compiled(*args)
        except Exception as error:
            result = eager(*args)
            self.model._compile_failed(self.kind, error, stacklevel=6)  # the user's model.train(...) line
            return result

    def test(self, inputs, params):
        with torch.no_grad(), validation(False):
            return self._run(self._test, self._test_eager, inputs, self.boxes(params))


class InductorStep(_Step):
    kind = "inductor"

    def __init__(self, model, device, dtype):
        super().__init__(model, device, dtype)
        self._forward_backward = _torch_compile(self._forward_backward_eager)
        self._update = _torch_compile(model._update)

    def _forward_backward_eager(self, inputs, params):
        inputs = _alias(inputs)
        value = self.model._forward(self.model.loss, inputs, params)
        detached = value.detach()  # before backward: after the graph break Dynamo would wrap a non-leaf `value`
        value.backward()
        return detached

    def _retry_forward_backward(self, inputs, params):
        self.model.optimizer.zero_grad(set_to_none=True)  # the failed attempt may have left gradients
        return self._forward_backward_eager(inputs, params)

    def train(self, inputs, params):
        model = self.model
        boxed = self.boxes(params)
        model.optimizer.zero_grad(set_to_none=True)
        with validation(False):
            value = self._run(self._forward_backward, self._retry_forward_backward, inputs, boxed)
        loss = model._loss_value(value, inputs, params)
        self._run(self._update, model._update)
        return loss


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
        # on a side stream, as torch.cuda.graph's documentation asks (cuBLAS handles, autograd's lazy setup)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(times):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(stream)

    def capture(self, fn, pool=None):
        graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread may call CUDA while we capture
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            fn()
        return graph


class _Captured:
    __slots__ = ("inputs", "output", "forward_backward", "update")


class CUDAGraphStep(_Step):
    """Whole training step as CUDA graphs: forward+backward, then (after the loss is read) the update."""

    kind = "cudagraph"
    warmup_steps = 2

    def __init__(self, model, device, dtype, graphs=None):
        super().__init__(model, device, dtype)
        self.graphs = graphs if graphs is not None else CUDAGraphs(device)
        self.captured = {}
        self._lr = []  # [param group, 0-dim lr tensor the update graph reads, value it holds]
        if self.graphs.capturable:
            make_capturable(model.optimizer, device)

    def _signature(self, inputs, params):
        parts = [_layout(inputs), tuple(sorted(params))]
        # optimizers without tensor-lr support bake lr into the graph: recapture when it changes
        parts.append(tuple(g["lr"] for g in self.model.optimizer.param_groups if "capturable" not in g))
        return tuple(parts)

    def train(self, inputs, params):
        model = self.model
        key = self._signature(inputs, params)
        captured = self.captured.get(key)
        boxed = self.boxes(params)
        if captured is None:
            try:
                captured = self._capture(inputs, boxed, key)
            except Exception as error:
                loss = model._eager_train(inputs, params)
                model._compile_failed(self.kind, error, stacklevel=5)
                return loss
        _copy_into(captured.inputs, inputs)
        self._fill_lr()
        captured.forward_backward.replay()
        loss = model._loss_value(captured.output["loss"], inputs, params)
        captured.update.replay()
        return loss

    def _capture(self, inputs, boxed, key):
        model = self.model
        graphs = self.graphs
        if len(self.captured) and key[-1] != next(iter(self.captured))[-1]:
            self.captured.clear()  # lr changed for an optimizer that bakes it in: the old graphs are stale
        captured = _Captured()
        captured.inputs = _map_tensors(lambda t: t.detach().clone(), inputs)
        captured.output = {}

        def forward_backward():
            # Python only during capture; on the CPU stand-in it makes replay overwrite the gradients,
            # as a CUDA graph does
            model.optimizer.zero_grad(set_to_none=True)
            value = model._forward(model.loss, captured.inputs, boxed)
            value.backward()
            captured.output["loss"] = value.detach()

        # warming up must not train: BatchNorm statistics and the random state are put back afterwards
        buffers = [(b, b.detach().clone()) for b in model.distributions.buffers()]
        rng = graphs.get_rng_state()
        with validation(False):
            graphs.warmup(forward_backward, self.warmup_steps)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        graphs.set_rng_state(rng)
        model.optimizer.zero_grad(set_to_none=True)
        with validation(False):
            captured.forward_backward = graphs.capture(forward_backward)
        with self._tensor_lr():
            captured.update = graphs.capture(model._update, pool=_pool(captured.forward_backward))
        self.captured[key] = captured
        return captured

    @contextlib.contextmanager
    def _tensor_lr(self):
        """Capture the update reading lr from a tensor (filled before each replay), so schedulers work.

        Only for optimizers with a ``capturable`` option, which accept a tensor lr; the param group keeps
        its float outside the capture, so the state dict is unchanged.
        """
        known = {id(entry[0]) for entry in self._lr}
        for group in self.model.optimizer.param_groups:
            if "capturable" in group and not isinstance(group["lr"], torch.Tensor) and id(group) not in known:
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

    def _fill_lr(self):
        for entry in self._lr:
            group, tensor, last = entry
            if group["lr"] != last:
                tensor.fill_(group["lr"])
                entry[2] = group["lr"]


def _pool(graph):
    pool = getattr(graph, "pool", None)
    return pool() if callable(pool) else None


def make_capturable(optimizer, device):
    """Turn on ``capturable`` where the optimizer has it, moving step counters to the parameters' device."""
    for group in optimizer.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = True
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor) and step.device != p.device:
                state["step"] = step.to(p.device)


def build(mode, model, device, dtype):
    if mode == "cudagraph":
        return CUDAGraphStep(model, device, dtype)
    return InductorStep(model, device, dtype)


def fallback_warning(compile, kind, error, stacklevel=2):
    warnings.warn(
        f"Model(compile={compile!r}): could not {'capture' if kind == 'cudagraph' else 'compile'} the training "
        f"step ({_reason(error)}); the model trains in eager mode from now on.",
        UserWarning,
        stacklevel=stacklevel,
    )
