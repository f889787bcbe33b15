"""The random states training uses (torch on the CPU and CUDA, numpy, Python, the data's own generators), read
and put back together: a run resumed from a checkpoint draws what it would have drawn had it gone on."""
from __future__ import annotations

import random

import numpy as np
import torch


def _generators(data):
    """The torch generators a DataLoader shuffles with, if it was given its own."""
    out = []
    for owner in (data, getattr(data, "sampler", None), getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not o for o in out):
            out.append(g)
    return out


def get_rng_state(generators=()):
    """Every random state training uses: torch (CPU and CUDA), numpy, Python, and the data's generators."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "data": [g.get_state() for g in generators],
    }


def set_rng_state(state, generators=()):
    """Put back what :func:`get_rng_state` read (CUDA's only on as many devices as it was read on)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for g, s in zip(generators, state["data"]):
        g.set_state(s)
