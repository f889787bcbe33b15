"""The CUDA-graph runner behind ``Model(compile="cudagraph")`` (and ``compile=True`` on CUDA): the whole training
step -- forward, backward, the non-finite check and the guarded update -- captured as one CUDA graph and replayed on
static copies of the inputs; one graph per input signature, all in one memory pool. Nothing is read back to the host
unless the step is synchronous.

What a graph freezes is watched: the Parameter values given as tensors are copied into the graph's own device
tensors before each replay, as the inputs are; lr is a device tensor filled before each replay for optimizers that
read it there (Adam, AdamW); any other optimizer setting a scheduler changes is baked into the graph, so a change
captures the step again, with a warning from the second change on. ``tests/models/capture_rules.py`` checks the
runner against capture's rules on the CPU.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import torch

from ._checks import validation
from ._compile import _BEFORE_2_14, _copy_into, _layout, _map_tensors, boxed, keep_state, put_back
from ._objective import place_steps

class CUDAGraphs:
    """The CUDA calls of a capture, in one place (tests stand in for them on the CPU)."""

    capturable = True  # set ``capturable=True`` on optimizers that have the option

    def __init__(self, device):
        self.device = device

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


class CUDAGraphStep:
    """The runner that captures the whole step of its pieces as one CUDA graph per input signature, and replays it.
    A synchronous step reads the loss after the replay: a non-finite one (or a non-finite gradient) has already
    made the update a no-op on the device, and raises."""

    kind = "cudagraph"
    warmup_steps = 2
    max_graphs = 16  # input signatures captured

    def __init__(self, pieces, graphs=None):
        self.pieces = pieces
        pieces.autocast_cache = False  # a cache inside a graph would hold the casts made while capturing
        self.graphs = graphs if graphs is not None else CUDAGraphs(pieces.environment.device)
        self.captured = {}
        self._lr = []  # [param group, 0-dim lr tensor the graph reads, value it holds]
        self._tensor_lr_ok = isinstance(pieces.optimizer, TENSOR_LR)
        self._settings = None  # the optimizer's settings the graphs froze
        self._recaptures = 0  # captures made again because a setting changed
        self._pool = None
        self._warned_too_many = False

    def train(self, inputs, params, sync=True):
        pieces = self.pieces
        params = boxed(pieces, inputs, params)
        return self.compiled_train(inputs, params, sync) if pieces.checked else pieces.first(inputs, params)

    def settle(self):
        self.pieces.settle()

    def _tensor_values(self):
        """The Parameter values the user gave as tensors: copied into the graph's own before each replay, as the
        inputs are (numbers are in the model's boxes already)."""
        return {k: v for k, v in (self.pieces.given or {}).items() if isinstance(v, torch.Tensor)}

    def _signature(self, inputs, params):
        return _layout(inputs), tuple(sorted(params)), _layout(self._tensor_values())

    def _static_copy(self, tensor):
        """A copy the graph reads, on the model's device and, if floating, in its dtype: a 0-dim CPU tensor would be
        read once, when the graph is captured."""
        env = self.pieces.environment
        dtype = env.dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.detach().to(device=env.device, dtype=dtype, copy=True)

    def compiled_train(self, inputs, params, sync):
        pieces = self.pieces
        eager = pieces.forward_backward, pieces.update, pieces.guarded_update
        if not pieces.deferrable():
            return pieces.first(inputs, params)
        self._check_settings()
        key = self._signature(inputs, params)
        captured = self.captured.get(key)
        if captured is None and len(self.captured) >= self.max_graphs:
            self._too_many_graphs()
            return pieces.run(inputs, params, sync, *eager)
        if captured is None:
            try:
                captured = self._capture(inputs, params, key)
            except Exception as error:
                pieces.zero_grad()
                loss = pieces.run(inputs, params, sync, *eager)
                pieces.environment.compile_failed(self, error, stacklevel=6)  # the user's model.train(...) line
                return loss
        if sync:
            pieces.settle()
        _copy_into(captured.inputs, inputs)
        _copy_into(captured.params, self._tensor_values())
        self._fill_lr()
        parameters = pieces.parameters
        if any(p.grad is not g for p, g in zip(parameters, captured.grads)):
            for p, g in zip(parameters, captured.grads):  # the gradients this graph writes (another shape's,
                p.grad = g                                 # or an eager step's, were there before)
        captured.graph.replay()
        if not sync:
            return pieces.defer(captured.loss.clone(), inputs, params)
        watch = pieces.watch()
        watch.host_count += 1
        loss, skipped = torch.stack((captured.loss, watch.skip.to(captured.loss.dtype))).tolist()  # one read
        if not math.isfinite(loss) or skipped:
            watch.reset()
            pieces.raise_if_non_finite(loss, skipped, inputs, params)
        return loss

    def _check_settings(self):
        """Drop the graphs if an optimizer setting they froze has changed since (a scheduler's), so that the step
        is captured again with the new one; warn from the second time on, since each costs a capture."""
        settings = _frozen(self.pieces.optimizer, self._tensor_lr_ok)
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
                f"Model(compile={self.pieces.environment.compile!r}): the optimizer's {', '.join(changed)} changed "
                f"again; a CUDA graph freezes it, so the training step is captured again at each change, which is "
                f"slower than not capturing when it changes every step. To keep one graph, {advice}; or use "
                f"compile='inductor'.", UserWarning, stacklevel=5)  # the user's model.train(...) line

    def _capture(self, inputs, params, key):
        pieces, graphs = self.pieces, self.graphs
        watch = pieces.watch()
        if self._pool is None:
            self._pool = graphs.pool()
        captured = _Captured()
        captured.inputs = _map_tensors(lambda t: t.detach().clone(), inputs)
        captured.params = {**params, **{k: self._static_copy(v) for k, v in self._tensor_values().items()}}

        def forward_backward():
            # Python only during capture; on the CPU stand-in it makes replay overwrite the gradients,
            # as a CUDA graph does
            pieces.zero_grad()
            value = pieces.forward(captured.inputs, captured.params, distributed=False)
            pieces.backward(value)
            return value.detach()

        def step():
            captured.loss = forward_backward()
            pieces.guarded_update(captured.loss)

        # the warm-up runs the whole step, the update's kernels too, but must not train: its updates are no-ops
        # (as after a non-finite loss); BatchNorm statistics, the random state and the record are put back whether
        # or not the warm-up and the capture get through (an eager step follows a failure)
        kept = keep_state(pieces)  # the random states, the buffers and the non-finite record
        had_state = set(pieces.optimizer.state)
        pieces.forget_state_tensors()
        try:
            with validation(False), self._tensor_lr(), self._capturable():
                watch.bad_at.fill_(0)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_UNCAPTURED)
                    graphs.warmup(step, self.warmup_steps)
                self._put_back_after_warmup(kept, had_state)
                pieces.zero_grad()
                pieces.forget_state_tensors()  # the state tensors, those just made included
                captured.graph = graphs.capture(step, pool=self._pool)
        except BaseException:
            self._put_back_after_warmup(kept, had_state)
            pieces.forget_state_tensors()
            raise
        captured.grads = [p.grad for p in pieces.parameters]
        if self._settings is None:
            self._settings = _frozen(pieces.optimizer, self._tensor_lr_ok)
        self.captured[key] = captured
        return captured

    def _put_back_after_warmup(self, kept, had_state):
        put_back(kept, self.pieces.environment.device)
        optimizer = self.pieces.optimizer
        with torch.no_grad():
            # state the warm-up created (a parameter without a gradient until now) starts as it would have:
            # zeros, made here rather than inside the graph, which would make them again at every replay
            for p in set(optimizer.state) - had_state:
                for value in optimizer.state[p].values():
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
        for group in self.pieces.optimizer.param_groups:
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
        if not self._warned_too_many:
            self._warned_too_many = True
            warnings.warn(
                f"Model(compile={self.pieces.environment.compile!r}): {self.max_graphs} input shapes are captured "
                f"already (one CUDA graph each); steps on other shapes run eagerly. Pad or bucket the batches to a "
                f"few shapes (sequence lengths) to keep every step captured.",
                UserWarning, stacklevel=5)  # the user's model.train(...) line

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
        optimizer = self.pieces.optimizer
        before = [(group, group["capturable"]) for group in optimizer.param_groups if "capturable" in group]
        make_capturable(optimizer)
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
    place_steps(optimizer)


