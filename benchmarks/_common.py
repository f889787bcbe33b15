"""What the benchmark scripts share: arguments, timing (interleaved rounds, medians) and the table."""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def configurations(default):
    """The ``--configs`` type: comma-separated configurations of as many positive integers joined by ``x`` as
    ``default`` has (``10x400,30x2000``), as a list of tuples of ints."""
    fields = len(default.split(",")[0].split("x"))

    def parse(text):
        try:
            configs = [tuple(int(n) for n in c.lower().split("x")) for c in text.split(",")]
        except ValueError:
            configs = []
        if not configs or any(len(c) != fields or min(c) <= 0 for c in configs):
            raise argparse.ArgumentTypeError(
                f"each configuration is {fields} positive integer{'s joined by x' if fields > 1 else ''}, "
                f"comma-separated, e.g. {default}; got {text!r}")
        return configs
    return parse


def parser(description, configs):
    """The shared options; ``configs`` is the default of ``--configs`` (``args.configs``: tuples of ints)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--steps", type=int, default=200,
                   help="timed steps per implementation, rounded down to a multiple of --rounds (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=20,
                   help="untimed steps first, compilation included (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5,
                   help="the timed steps are split into this many rounds that visit the implementations in turn, "
                        "so that a slow spell of the machine hits them all alike (default: 5)")
    p.add_argument("--configs", default=configs, type=configurations(configs),
                   help=f"configurations to run (default: {configs})")
    p.add_argument("--impls", default=None,
                   help="comma-separated subset of the implementations (default: every one that can run here)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args):
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the same arithmetic for every implementation
        torch.backends.cudnn.allow_tf32 = False
    return device


def describe(device):
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    import platform
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, torch {torch.__version__}"


def chosen(args, impls):
    """The implementations ``--impls`` names (all of ``impls`` without it); an unknown name stops the script."""
    if args.impls is None:
        return impls
    names = [s.strip() for s in args.impls.split(",")]
    unknown = [n for n in names if n not in impls]
    if unknown:
        raise SystemExit(f"--impls: {', '.join(map(repr, unknown))} not among the implementations that run here: "
                         f"{', '.join(impls)}")
    return {name: build for name, build in impls.items() if name in names}


def _wait(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(steps, args, device):
    """``steps``: name -> a function running one training step and returning its loss (a float, or a tensor
    left on the device: nothing forces a step to wait for the host). Each round runs ``--steps / --rounds``
    steps of one implementation and waits for the device at its end. Returns name -> (median over the rounds
    of the ms per step, seconds of the warm-up steps, mean loss of the timed steps: every implementation sees
    the same batches, so these should agree up to sampling noise)."""
    warm = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for i in range(args.warmup):
            step(i)
        _wait(device)
        warm[name] = time.perf_counter() - start
    times = {name: [] for name in steps}
    losses = {name: [] for name in steps}
    per_round = max(1, args.steps // max(1, args.rounds))
    counter = args.warmup
    for _ in range(max(1, args.rounds)):
        for name, step in steps.items():
            out = []
            start = time.perf_counter()
            for _ in range(per_round):
                out.append(step(counter))
                counter += 1
            _wait(device)
            times[name].append((time.perf_counter() - start) / per_round)
            losses[name] += [float(loss) for loss in out]
    return {name: (1e3 * statistics.median(t), warm[name], statistics.fmean(losses[name])) for name, t in times.items()}


def table(rows, reference):
    """rows: (configuration, implementation, median ms, warm-up s, mean loss); ratios are to ``reference``."""
    base = {c: ms for c, impl, ms, *_ in rows if impl == reference}
    lines = ["| configuration | implementation | median ms / step | ratio to " + reference
             + " | warm-up s | mean loss |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for config, impl, ms, warm, loss in rows:
        ratio = f"{ms / base[config]:.2f}x" if config in base else "n/a"
        lines.append(f"| {config} | {impl} | {ms:.2f} | {ratio} | {warm:.1f} | {loss:.4g} |")
    return "\n".join(lines)


REFERENCE = "pytorch eager"


def hand_written(loss_fn, parameters, inputs_of, lr, compiled=False):
    """A hand-written training step: Adam on ``parameters`` minimizing ``loss_fn(*inputs_of(i))``; with
    ``compiled``, the loss function and the optimizer step each under ``torch.compile``, as PyTorch's tutorials
    compile a model and its optimizer. Returns the loss without reading it."""
    optimizer = torch.optim.Adam(list(parameters), lr=lr)
    forward = torch.compile(loss_fn) if compiled else loss_fn
    update = torch.compile(optimizer.step) if compiled else optimizer.step

    def step(i):
        loss = forward(*inputs_of(i))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        update()
        return loss.detach()
    return step


def sync(device):
    """How pgm's steps are timed: read at every step on the CPU (free there), deferred on a GPU, as fit does."""
    return device.type == "cpu"


def implementations(device, pytorch_eager, pytorch_cuda_graph, pgm_model, pytorch_compiled=None):
    """What the benchmarks time, in table order: hand-written PyTorch (eager, under ``torch.compile``, and on
    CUDA captured by hand as one CUDA graph), pgm eager and ``compile=True`` (named by the step pgm picks on
    ``device``), and on CUDA also pgm's inductor step. ``pgm_model(compile)`` builds a pgm step for a
    ``compile=`` value."""
    from pgm.models._compile import resolve_mode

    impls = {REFERENCE: pytorch_eager}
    if pytorch_compiled is not None:
        impls["pytorch torch.compile"] = pytorch_compiled
    if device.type == "cuda":
        impls["pytorch cuda graph (by hand)"] = pytorch_cuda_graph
    impls["pgm eager"] = pgm_model(False)
    impls[f"pgm compile=True ({resolve_mode(True, device, distributed=False)})"] = pgm_model(True)
    if device.type == "cuda":
        impls["pgm compile='inductor'"] = pgm_model("inductor")
    return impls


def capture_step(loss_fn, optimizer, static_inputs, device, warmup=3):
    """The whole step (forward, backward, capturable optimizer) as one CUDA graph, by hand, as in
    torch.cuda.graph's documentation; returns a step function copying new inputs into the static ones."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(*static_inputs).backward()
            optimizer.step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = loss_fn(*static_inputs)
        static_loss.backward()
        optimizer.step()

    def step(*inputs):
        for static, value in zip(static_inputs, inputs):
            static.copy_(value, non_blocking=True)
        graph.replay()
        return static_loss.clone()  # not read: the caller decides when to wait
    return step
