"""Running an example script as its __main__ does, for the tests of its command line."""
import importlib

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
