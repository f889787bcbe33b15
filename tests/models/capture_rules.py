"""CUDA-graph capture's rules, emulated on the CPU, so that a step that would fail on its first GPU fails here.

A CUDA graph records the kernels of one step and replays them with no Python: whatever the step read on the host
while it was captured is frozen into the graph, and reading a device value back to the host while capturing is an
error. ``StandInGraphs`` stands in for ``pgm.models._cudagraph.CUDAGraphs`` on the CPU: a capture runs the step once
under :class:`CaptureRules` and keeps it; a replay runs it again as the graph would, with the optimizer settings of
the capture. The rules checked:

* **No host reads while capturing** (what ``torch.cuda.set_sync_debug_mode("error")`` checks on a GPU):
  ``item()``, ``bool()``, ``float()``, ``int()`` of a tensor (ATen's ``_local_scalar_dense``, also when torch's
  own C++ calls it), ``tolist()``, ``numpy()``, ``cpu()``, data-dependent shapes (``nonzero``, ``masked_select``,
  ``unique``), and a tensor made from host data by pgm's code (``torch.tensor(0.5, device=...)`` is a copy from
  the host; ``new_full`` is a kernel).
* **Every tensor an operation reads is on the model's device.**
* **The step's own copies** of its inputs and of the Parameter values given as tensors are on the model's device
  with the model's floating dtype (a 0-dim CPU tensor would be read once, at capture, on a GPU).
* **Nothing frozen changed**: every optimizer hyper-parameter (lr, betas, weight decay, eps, momentum, ...) a graph
  was captured with is recorded; a replay fails if a Python value changed since, or if a tensor one (a capturable
  optimizer's lr) does not hold the param group's current value.
* **The optimizers' own capture health checks**: torch is made to see a CUDA accelerator whose stream is capturing
  exactly while the stand-in captures, and capturable optimizers to accept CPU tensors; so an optimizer stepped
  during capture without ``capturable=True`` raises, and one with ``capturable=True`` stepped in the warm-up
  warns (torch marks a new optimizer as warned already; the stand-in clears the mark), an error under the test
  suite's ``-W error``.
* **Autocast inside a capture has its cache off** (``cache_enabled=False``): the cache would hold casts of the
  parameters made at capture.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import os
import sys
import types
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from pgm.models import _compile, _cudagraph

aten = torch.ops.aten

HOST_READS = {
    aten._local_scalar_dense.default: "reads a value back to the host (item(), bool(), float(), int())",
    aten.nonzero.default: "has a data-dependent shape (nonzero), which reads the device",
    aten.masked_select.default: "has a data-dependent shape (masked_select), which reads the device",
    aten._unique2.default: "has a data-dependent shape (unique), which reads the device",
    aten.unique_dim.default: "has a data-dependent shape (unique), which reads the device",
    aten.unique_consecutive.default: "has a data-dependent shape (unique), which reads the device",
}
HOST_METHODS = {"tolist", "numpy", "cpu"}
# in-place operations that change a tensor's shape or strides alone: nothing to put back after a capture
METADATA_ONLY = {aten.transpose_.default, aten.t_.default, aten.squeeze_.default, aten.squeeze_.dim,
                 aten.squeeze_.dims, aten.unsqueeze_.default, aten.as_strided_.default, aten.swapdims_.default,
                 aten.swapaxes_.default}
TORCH = os.path.dirname(torch.__file__)
# torch's own layers between a Python call and the dispatch mode
PLUMBING = ("utils/_python_dispatch", "overrides.py", "_ops.py")


class CaptureRuleError(AssertionError):
    """A step broke a rule of CUDA-graph capture."""


def _direct_caller():
    """The file of the innermost frame that is neither this harness nor torch's dispatch plumbing: the code that
    made the call."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename == __file__ or (
            frame.f_code.co_filename.startswith(TORCH) and any(p in frame.f_code.co_filename for p in PLUMBING))):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else ""


def _caller_outside_torch():
    """The innermost frame outside torch, as ``file:line``."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(TORCH) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""


class CaptureRules(TorchDispatchMode):
    """The rules of a capture, checked on every ATen operation while it is active."""

    def __init__(self, device, undo=None):
        super().__init__()
        self.device, self.undo = device, undo

    def _keep(self, func, args, kwargs):
        """The first value of each tensor ``func`` writes (a capture runs nothing: it is put back after)."""
        if func in METADATA_ONLY:
            return
        for number, argument in enumerate(func._schema.arguments):
            if argument.alias_info is None or not argument.alias_info.is_write:
                continue
            value = args[number] if number < len(args) else kwargs.get(argument.name)
            for tensor in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(tensor, torch.Tensor) and all(tensor is not t for t, _ in self.undo):
                    self.undo.append((tensor, tensor.clone()))

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.undo is not None:
            self._keep(func, args, kwargs)
        why = HOST_READS.get(func)
        if why is not None:
            raise CaptureRuleError(f"{func} during capture ({_caller_outside_torch()}): it {why}")
        # pgm's own torch.tensor(number) (torch's internals wrap numbers this way where a GPU fills them in a kernel:
        # t[mask] = inf in its KL formulas)
        if func is aten.lift_fresh.default and "pgm" in _direct_caller().split(os.sep):
            raise CaptureRuleError(f"torch.tensor/as_tensor of host data during capture ({_caller_outside_torch()}): "
                                   f"a copy from the host; make constants with new_full/full_like on the device")
        for value in torch.utils._pytree.tree_leaves((args, kwargs)):
            if isinstance(value, torch.Tensor) and value.device != self.device:
                raise CaptureRuleError(f"{func} during capture reads a tensor on {value.device}; the model is on "
                                       f"{self.device}")
        return func(*args, **kwargs)


class FunctionRules(TorchFunctionMode):
    """The rules seen above ATen: the host reads of Tensor methods, and autocast (applied before dispatch)."""

    def __init__(self, device):
        super().__init__()
        self.device = device

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.one_hot:
            # the CPU kernel checks the classes' range on the host; the CUDA one, given num_classes, does not
            x, n = args[0], args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
            if n > 0:
                with torch._C.DisableTorchFunction():
                    return torch.zeros(*x.shape, n, dtype=x.dtype, device=x.device).scatter_(-1, x.unsqueeze(-1), 1)
        if getattr(func, "__name__", None) in HOST_METHODS:
            raise CaptureRuleError(f"Tensor.{func.__name__}() during capture ({_caller_outside_torch()}) reads the "
                                   f"device back to the host")
        if torch.is_autocast_enabled(self.device.type) and torch.is_autocast_cache_enabled():
            raise CaptureRuleError("autocast with its cache on during capture: give cache_enabled=False")
        return func(*args, **kwargs)


class _Stream:
    def __init__(self, graphs):
        self.graphs = graphs

    def is_capturing(self):
        return self.graphs.capturing


def _frozen(groups):
    """The param groups' settings, as a capture freezes them (tensors by identity)."""
    return [{k: v if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in g.items() if k != "params"}
            for g in groups]


class StandInGraphs:
    """CUDA-graph calls on the CPU: capturing runs the step under :class:`CaptureRules` and keeps it, replaying
    runs it again with the optimizer settings of the capture (as a graph would), after checking none changed.

    ``optimizers``: those of the steps captured here, ``modules``: the networks (``with_stand_in_graphs`` gives
    the model's).
    """

    capturable = True

    def __init__(self, device=torch.device("cpu"), optimizers=(), modules=None):
        self.device, self.optimizers, self.modules = device, list(optimizers), modules
        self.captures, self.warmups, self.replays, self.pools = 0, 0, 0, []
        self.capturing = False

    def warmup(self, fn, times):
        self.warmups += times
        for optimizer in self.optimizers:  # torch warns once per optimizer; this one warns every time
            optimizer._warned_capturable_if_run_uncaptured = False
        with accelerator(self):
            for _ in range(times):
                fn()

    def pool(self):
        return object()  # a distinct handle, as torch.cuda.graph_pool_handle() gives

    def _rules(self, undo=None):
        graphs = self

        class Rules:
            def __enter__(self):
                graphs.capturing = True
                self.modes = [CaptureRules(graphs.device, undo), FunctionRules(graphs.device)]
                for mode in self.modes:
                    mode.__enter__()

            def __exit__(self, *error):
                for mode in reversed(self.modes):
                    mode.__exit__(*error)
                graphs.capturing = False
        return Rules()

    def capture(self, fn, pool=None):
        self.captures += 1
        self.pools.append(pool)
        # a capture records the step without running it: what the check ran is put back
        # (BatchNorm's running statistics are written by an operation that does not declare it)
        undo = [(b, b.clone()) for b in (self.modules.buffers() if self.modules is not None else ())]
        rng = torch.get_rng_state()
        try:
            with accelerator(self), self._rules(undo):
                fn()
        finally:
            with torch.no_grad():
                for tensor, value in undo:
                    tensor.copy_(value)
            torch.set_rng_state(rng)
        settings = [(optimizer, _frozen(optimizer.param_groups)) for optimizer in self.optimizers]
        graph = types.SimpleNamespace()

        def replay():
            self.replays += 1
            now = []
            for optimizer, frozen in settings:
                for number, (group, captured) in enumerate(zip(optimizer.param_groups, frozen)):
                    for key, value in captured.items():
                        current = group[key]
                        if key == "capturable":
                            continue  # the step sets it for the capture alone, as it should
                        if isinstance(value, torch.Tensor):
                            if not isinstance(current, torch.Tensor) and value.item() != torch.tensor(
                                current, dtype=value.dtype).item():
                                raise CaptureRuleError(f"{type(optimizer).__name__} param group {number}: its {key} "
                                                       f"is {current} but the graph reads {float(value)}: the tensor "
                                                       f"was not refilled before the replay")
                        elif current != value:
                            raise CaptureRuleError(f"{type(optimizer).__name__} param group {number}: {key} changed "
                                                   f"from {value!r} to {current!r} since the capture, which froze it")
                    now.append((group, {k: group[k] for k in captured}))
                    group.update(captured)  # the replay runs as captured
            try:
                # a graph runs no Python: no parameter checks
                with _compile.validation(False), accelerator(self), self._rules():
                    fn()
            finally:
                for group, values in now:
                    group.update(values)
        graph.replay = replay
        return graph


@contextlib.contextmanager
def accelerator(graphs):
    """torch sees a CUDA accelerator whose stream captures while ``graphs`` does, and capturable optimizers take
    CPU tensors: the optimizers' health checks run as on a GPU."""
    supported = lambda supports_xla=True: ["cuda", "cpu"]  # noqa: E731
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(torch.accelerator, "current_accelerator",
                                              lambda check_available=False: torch.device("cuda")))
        stack.enter_context(mock.patch.object(torch.accelerator, "current_stream", lambda device=None: _Stream(graphs)))
        stack.enter_context(mock.patch.object(torch.cuda, "is_current_stream_capturing", lambda: graphs.capturing))
        stack.enter_context(mock.patch.object(torch.cuda, "is_initialized", lambda: True))
        for name in ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adamax", "nadam", "radam", "asgd"):
            module = importlib.import_module(f"torch.optim.{name}")
            if hasattr(module, "_get_capturable_supported_devices"):
                stack.enter_context(mock.patch.object(module, "_get_capturable_supported_devices", supported))
        yield


def check_static_copies(environment, captured):
    """The captured step's copies of its inputs and Parameter tensors: on the model's device, floating ones in the
    model's dtype."""
    tensors = [v for v in torch.utils._pytree.tree_leaves((captured.inputs, captured.params))
               if isinstance(v, torch.Tensor)]
    for tensor in tensors:
        if tensor.device != environment.device or (tensor.is_floating_point() and tensor.dtype != environment.dtype):
            raise CaptureRuleError(f"the captured step reads a copy on {tensor.device} in {tensor.dtype}; the model "
                                   f"is on {environment.device} in {environment.dtype}")


def stand_in_runner(pieces, graphs):
    """A ``CUDAGraphStep`` of ``pieces`` captured by ``graphs`` (a :class:`StandInGraphs`), its copies checked."""
    runner = _cudagraph.CUDAGraphStep(pieces, graphs=graphs)
    capture = runner._capture

    def checked(*args):
        captured = capture(*args)
        check_static_copies(pieces.environment, captured)
        return captured
    runner._capture = checked
    return runner


def with_stand_in_graphs(model):
    """``model`` with its steps captured by :class:`StandInGraphs` under the capture rules."""
    model.world = 1
    model.compile, model._steps = False, None  # its eager runners first (CUDA graphs need CUDA), then their pieces
    runners = model._step_objects()
    graphs = StandInGraphs(optimizers=model.optimizers, modules=model.distributions)
    model.compile = runners[0].pieces.environment.compile = "cudagraph"
    model._steps = [stand_in_runner(runner.pieces, graphs) for runner in runners]
    return model, graphs
