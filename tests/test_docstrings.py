"""The examples in pgm's docstrings run and print what they show (so they stay in step with the code)."""
import doctest
import importlib
import pkgutil

import pytest

import pgm

FINDER = doctest.DocTestFinder()
MODULES = [m for m in ["pgm"] + [m.name for m in pkgutil.walk_packages(pgm.__path__, "pgm.")]
           if any(t.examples for t in FINDER.find(importlib.import_module(m)))]


def test_modules_with_examples_are_found():
    assert {"pgm", "pgm.distributions.normal", "pgm.distributions.gamma", "pgm.distributions.density",
            "pgm.losses._base", "pgm.losses._functions", "pgm.losses._terms", "pgm.visualize"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, \
        f"{result.failed} of {result.attempted} docstring examples of {name} failed"
