"""Running an example script as its __main__ does, for the tests of its command line, and once at a tiny size for
the tests of a module."""
import contextlib
import importlib
import io

import torch

import pytest

from common import training


def error_line(script, argv, capsys, status=2):
    """Run ``script``'s main through ``training.run``; return its one line of stderr (after checking the exit
    status)."""
    with pytest.raises(SystemExit) as exit_:
        training.run(importlib.import_module(script).main, argv)
    assert exit_.value.code == status
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def tiny_run(script, argv, out):
    """``script``'s main on ``argv`` into ``out`` on one thread (a module-scoped fixture cannot use the ``one_thread``
    fixture): ``(its record, what it printed, out)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            record = importlib.import_module(script).main(argv + ["--out", str(out)])
    finally:
        torch.set_num_threads(before)
    return record, printed.getvalue(), out
