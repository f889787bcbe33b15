"""Ctrl-C during ``fit``: the first asks the run to stop after the current step (and save a checkpoint), a second
stops it at once; either way ``fit`` raises :class:`TrainingInterrupted`, naming the checkpoint to resume from."""
from __future__ import annotations

import signal
import sys
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`Model.fit`; ``checkpoint`` is the checkpoint to resume from (None without one)."""

    def __init__(self, checkpoint=None):
        super().__init__(f"training interrupted; checkpoint: {checkpoint}" if checkpoint else "training interrupted")
        self.checkpoint = checkpoint


class _Interrupt:
    """The first Ctrl-C asks to stop after the current step (and save); a second stops at once."""

    def __init__(self, enabled):
        self.enabled, self.requested, self._previous = enabled, False, None

    def __enter__(self):
        if (self.enabled and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfit: interrupted; stopping after this step (press Ctrl-C again to stop at once).",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
