"""The documentation stays in step with the code: every public name is in the API reference and has a docstring,
the examples on the concept pages run and print what they show, and the examples page lists every script.

Sphinx itself is not run here; CI builds the site separately (``python -m sphinx -W ... docs docs/_build/html``).
"""
import doctest
import importlib
import inspect
import re
from pathlib import Path

import pytest

import pgm

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ["pgm", "pgm.distributions", "pgm.losses", "pgm.models", "pgm.visualize"]
_DIRECTIVE = re.compile(r"^\.\. (auto(?:module|class|function|data|exception|attribute)|currentmodule)::\s*(\S+)",
                        re.M)


def public_names(module):
    """``__all__``, or for a module without one, the classes and functions it defines without a leading ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, value in vars(module).items() if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module.__name__]


def documented():
    """The dotted names the API reference pages document with autodoc directives."""
    names = set()
    for page in sorted((DOCS / "api").glob("*.rst")):
        current = None
        for directive, target in _DIRECTIVE.findall(page.read_text()):
            if directive == "currentmodule":
                current = target
            elif directive == "automodule" or "." in target and target.split(".")[0] == "pgm":
                names.add(target)
            else:
                names.add(f"{current}.{target}" if current else target)
    return names


def test_the_api_reference_pages_are_found():
    names = documented()
    assert {"pgm.Context", "pgm.distributions.Normal", "pgm.losses.KL", "pgm.models.Model",
            "pgm.visualize.draw_graphical_model"} <= names


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_in_the_api_reference(package):
    module = importlib.import_module(package)
    names = documented()
    missing = [name for name in public_names(module) if f"{package}.{name}" not in names]
    assert not missing, f"{package}: {missing} are public but missing from docs/api/*.rst; add an autodoc directive"


def _own_doc(cls, name, value):
    """The docstring a member shows in the reference: its own, or the one it overrides (as autodoc inherits)."""
    if isinstance(value, property):
        return value.__doc__ or next((getattr(base, name).__doc__ for base in cls.__mro__[1:]
                                      if isinstance(getattr(base, name, None), property)
                                      and getattr(base, name).__doc__), None)
    return inspect.getdoc(getattr(cls, name))


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_class_and_function_has_a_docstring(package):
    module = importlib.import_module(package)
    undocumented = []
    for name in public_names(module):
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value)):
            continue
        if not (value.__doc__ or "").strip():  # the object's own docstring, not one inherited from a base class
            undocumented.append(name)
        if inspect.isclass(value):
            for member, attribute in vars(value).items():
                if member.startswith("_") or member in ("forward", "extra_repr"):  # nn.Module's hooks
                    continue
                if inspect.isfunction(attribute) or isinstance(attribute, (property, classmethod, staticmethod)):
                    if not (_own_doc(value, member, attribute) or "").strip():
                        undocumented.append(f"{name}.{member}")
    assert not undocumented, f"{package}: {undocumented} have no docstring"


def test_pgm_has_an_overview_for_help():
    lines = pgm.__doc__.strip().splitlines()
    assert 10 <= len(lines) <= 40
    assert all(f"pgm.{name}" in pgm.__doc__ for name in ("distributions", "losses", "models"))


PAGES = sorted(page.name for page in DOCS.glob("*.rst") if ">>> " in page.read_text())


def test_concept_pages_with_examples_are_found():
    assert {"distributions.rst", "losses.rst", "estimators.rst", "extending.rst", "training.rst"} <= set(PAGES)


@pytest.mark.parametrize("page", PAGES)
def test_the_examples_on_a_page_run_and_print_what_they_show(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False, optionflags=doctest.ELLIPSIS,
                              encoding="utf-8")
    assert result.attempted > 0 and result.failed == 0, f"{result.failed} of {result.attempted} examples of {page} failed"


def test_the_examples_page_lists_every_script():
    text = (DOCS / "examples.rst").read_text()
    scripts = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
    missing = [s for s in scripts if f"examples/{s}" not in text]
    assert not missing, f"docs/examples.rst does not mention {missing}"


def test_the_index_links_every_page():
    index = (DOCS / "index.rst").read_text()
    pages = [p.stem for p in DOCS.glob("*.rst") if p.stem != "index"] + ["papers", "changelog", "api/index"]
    missing = [p for p in pages if not re.search(rf"^\s+{re.escape(p)}\s*$", index, re.M)]
    assert not missing, f"docs/index.rst's toctrees do not list {missing}"
