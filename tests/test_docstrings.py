"""The examples in pgm's docstrings run and print what they show (so they stay in step with the code)."""
import doctest
import importlib
import pkgutil

import pytest

import pgm

MODULES = [m.name for m in pkgutil.walk_packages(pgm.__path__, "pgm.")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"
