"""Whether a CUDA graph is being captured: shared by every layer of pgm.

While a step is captured into a CUDA graph (or traced by TorchDynamo), no value may be read back to the host:
a check that would do so (``bool(tensor.any())``) is skipped then, and runs on the eager steps instead.
"""
from __future__ import annotations

import torch


def capturing() -> bool:
    """Whether a CUDA graph is being captured (or Dynamo traces): no value may be read back to the host then."""
    if torch.compiler.is_compiling():
        return True
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()
