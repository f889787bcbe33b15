"""Every formula pgm shows renders in a real TeX renderer: KaTeX, strict (``throwOnError``, ``strict: "error"``).

Checked: the formulas of README.md (its ``latex`` blocks and its inline code that is LaTeX), of docs/*.rst and
docs/*.md (``:math:``, ``.. math::``, ``$...$``, ``$$...$$`` and what their examples print with
``print(....latex())``), of every docstring in pgm (the same), every term the library can print
(docs/_formulas.py's table) and every example script's objectives at tiny sizes. Each group goes to one node
process (tests/katex.py); without KaTeX the tests fail with the command that installs it.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import pgm
from katex import INSTALL, render

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
if str(DOCS) not in sys.path:
    sys.path.insert(0, str(DOCS))

import _formulas  # noqa: E402

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
INLINE_CODE = re.compile(r"`([^`]+)`")
MATH_ROLE = re.compile(r":math:`([^`]+)`")
MATH_DIRECTIVE = re.compile(r"^([ \t]*)\.\. math::[ \t]*(.*)$")
DISPLAY_DOLLARS = re.compile(r"\$\$(.+?)\$\$", re.S)
# MyST's dollarmath: no space just inside the dollars, no digit just after the closing one
INLINE_DOLLARS = re.compile(r"(?<![\\$])\$(?![\s$])(.+?)(?<![\s\\])\$(?!\d)")
PRINTED_LATEX = re.compile(r"^\s*(?:>>> )?print\([\w.\[\]\"'()]+\.latex\(\)\)\s*$")


def _line(text, offset):
    return text.count("\n", 0, offset) + 1


def _equations(tex):
    """A display block's equations as Sphinx's MathJax output has them: split at blank lines, a part with ``\\\\``
    wrapped in ``split``."""
    parts = [part.strip() for part in tex.split("\n\n") if part.strip()]
    return [rf"\begin{{split}}{part}\end{{split}}" if "\\\\" in part and r"\begin" not in part else part
            for part in parts]


def _printed_outputs(lines, where, first_line=1):
    """The lines a doctest shows after ``print(x.latex())``: each is a formula."""
    found = []
    for i, line in enumerate(lines):
        if PRINTED_LATEX.match(line):
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].lstrip().startswith((">>>", "...")):
                found.append((f"{where}:{first_line + j}", lines[j].strip(), False))
                j += 1
    return found


def rst_formulas(text, where):
    """(where, tex, display) of each ``:math:`` role, ``.. math::`` block and printed LaTeX in reStructuredText
    (a page, or a docstring)."""
    found = [(f"{where}:{_line(text, m.start())}", m.group(1), False) for m in MATH_ROLE.finditer(text)]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        directive = MATH_DIRECTIVE.match(line)
        if not directive:
            continue
        indent, body, j = len(directive.group(1)), [directive.group(2)], i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            if not lines[j].strip().startswith(":"):  # the directive's options (:label:, :nowrap:)
                body.append(lines[j].strip())
            j += 1
        found += [(f"{where}:{i + 1}", tex, True) for tex in _equations("\n".join(body))]
    return found + _printed_outputs(lines, where)


def markdown_formulas(text, where):
    """(where, tex, display) of each ``$$...$$``, ``$...$``, ```` ```latex ```` or ```` ```{math} ```` block
    and, where ``latex_code`` LaTeX is also written as inline code starting with a command (README.md), those."""
    found = []
    for fence in FENCE.finditer(text):
        if fence.group(1) == "latex":
            found += [(f"{where}:{_line(text, fence.start(2)) + k}", line, True)
                      for k, line in enumerate(fence.group(2).splitlines()) if line.strip()]
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # code blocks out, line numbers kept
    for code in INLINE_CODE.finditer(prose):
        if re.match(r"\\[A-Za-z]", code.group(1)):
            found.append((f"{where}:{_line(prose, code.start())}", code.group(1), False))
    prose = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), prose)
    for math in DISPLAY_DOLLARS.finditer(prose):
        found.append((f"{where}:{_line(prose, math.start())}", math.group(1).strip(), True))
    prose = DISPLAY_DOLLARS.sub(lambda m: "\n" * m.group(0).count("\n"), prose)
    found += [(f"{where}:{_line(prose, m.start())}", m.group(1), False) for m in INLINE_DOLLARS.finditer(prose)]
    return found


def page_formulas():
    """The formulas of README.md and of every page under docs/ (not the generated gallery, checked below)."""
    found = markdown_formulas((ROOT / "README.md").read_text(), "README.md")
    for page in sorted(DOCS.glob("*.rst")):
        found += rst_formulas(page.read_text(), f"docs/{page.name}")
    for page in sorted(DOCS.glob("*.md")):
        found += markdown_formulas(page.read_text(), f"docs/{page.name}")
    return found


def docstring_formulas():
    """The formulas of every docstring in pgm: modules, classes, functions, methods and properties."""
    modules = [pgm] + [importlib.import_module(info.name)
                       for info in pkgutil.walk_packages(pgm.__path__, "pgm.")]
    found, seen = [], set()

    def visit(obj, name):
        doc = inspect.getdoc(obj) if not isinstance(obj, property) else obj.__doc__
        if doc and doc not in seen:  # an inherited docstring is checked once
            seen.add(doc)
            found.extend(rst_formulas(inspect.cleandoc(doc), name))

    for module in modules:
        visit(module, module.__name__)
        for attribute, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                visit(value, f"{module.__name__}.{attribute}")
            elif inspect.isclass(value):
                visit(value, f"{module.__name__}.{attribute}")
                for member, inner in vars(value).items():
                    inner = inner.__func__ if isinstance(inner, (classmethod, staticmethod)) else inner
                    if inspect.isfunction(inner) or isinstance(inner, property):
                        visit(inner, f"{module.__name__}.{attribute}.{member}")
    return found


def rejected(formulas):
    """'where: tex\\n    KaTeX's error' for each (where, tex, display) KaTeX rejects."""
    errors = render([(tex, display) for _, tex, display in formulas])
    return [f"{where}: {tex}\n    {error}" for (where, tex, _), error in zip(formulas, errors) if error]


# ------------------------------------------------------------------------------------------- the renderer

def test_katex_renders_valid_tex_and_rejects_what_tex_rejects():
    errors = render([(r"\mathbb{E}_{q(z|x)}\left[\log p(x|z)\right]", False), (r"\left[x", True),
                     (r"\frac{1}", False), ("\\log p(x|z) – 1", False), (r"\begin{split}a &= b \\ c &= d\end{split}",
                                                                       True), (r"\undefinedmacro{x}", False)])
    assert errors[0] is None and errors[4] is None
    assert "Expected '\\right'" in errors[1]
    assert "Expected group" in errors[2] or "end of input" in errors[2]
    assert "strict" in errors[3]  # an en dash in math: KaTeX draws it, LaTeX would not; strict mode says so
    assert "Undefined control sequence" in errors[5]


def test_without_katex_the_tests_fail_saying_how_to_install_it(tmp_path):
    message = re.escape(f"KaTeX is not installed in {tmp_path}: run `{INSTALL}`")
    with pytest.raises(pytest.fail.Exception, match=message):
        render([("x", False)], modules=tmp_path)
    assert INSTALL.startswith("npm install") and "katex@" in INSTALL


# ---------------------------------------------------------------------------------- the sources are found

def test_the_formulas_of_a_page_are_found_and_a_bad_one_is_caught():
    page = ("Text :math:`\\log p(x)` and\n\n.. math::\n   :label: elbo\n\n   a &= b \\\\\n   c &= d\n\n"
            "   \\left[x\n\n>>> print(loss.latex())\n\\mathcal{H}\\left[q\\right]\n\nEnd.\n")
    found = rst_formulas(page, "page.rst")
    assert [(where, tex) for where, tex, _ in found] == [
        ("page.rst:1", r"\log p(x)"), ("page.rst:3", r"\begin{split}a &= b \\" + "\n" + r"c &= d\end{split}"),
        ("page.rst:3", r"\left[x"), ("page.rst:12", r"\mathcal{H}\left[q\right]")]
    assert rejected(found) == ["page.rst:3: \\left[x\n    KaTeX parse error: Expected '\\right', got 'EOF' at end "
                               "of input: \\left[x"]
    markdown = "A $x^2$ and $$\\sum_k\n k$$ not $5 or `\\alpha` and\n```latex\n\\beta\n```\n"
    assert [(tex, display) for _, tex, display in markdown_formulas(markdown, "page.md")] == [
        (r"\beta", True), (r"\alpha", False), (r"\sum_k" + "\n k", True), ("x^2", False)]


def test_the_readme_docs_and_docstrings_hold_the_formulas_they_are_known_to():
    pages, docstrings = page_formulas(), docstring_formulas()
    readme = [tex for where, tex, _ in pages if where.startswith("README.md")]
    assert any(tex.startswith(r"\mathbb{E}_{p_{data}(x)}\left[D_{KL}") for tex in readme)  # the quick start's
    assert any(tex.startswith(r"\log \sum_{y_{1:T}}") for tex in readme)                   # inline code
    assert {where.split(":")[0] for where, _, _ in pages} >= {"docs/losses.rst", "docs/papers.md",
                                                              "docs/estimators.rst", "docs/sequential.rst"}
    assert sum(display for _, _, display in pages) > 20
    assert any(where.startswith("pgm.losses._adversarial") and display for where, _, display in docstrings)
    assert len(docstrings) > 100


# ---------------------------------------------------------------------------------------- the renderings

def test_every_formula_in_the_readme_and_the_docs_renders():
    failures = rejected(page_formulas())
    assert not failures, "KaTeX rejects these formulas:\n" + "\n".join(failures)


def test_every_formula_in_a_docstring_renders():
    failures = rejected(docstring_formulas())
    assert not failures, "KaTeX rejects these docstring formulas:\n" + "\n".join(failures)


# Names of pgm.losses that print no formula of their own (bases, registries, helpers, a Term's inputs) or only
# inside another.
NOT_TERMS = {"Loss", "Constant", "Estimator", "register_estimator", "score_term", "register_kl",
             "AdversarialDivergence", "ParametersOf", "TorchDistributionOf"}


def test_the_term_table_has_every_term_the_library_prints():
    import pgm.losses

    lines = " ".join(line for _, line in _formulas.TERMS)
    missing = [name for name in pgm.losses.__all__ if name not in NOT_TERMS
               and not re.search(rf"\b{re.escape(name)}\(", lines)]
    assert not missing, f"docs/_formulas.py's TERMS use no {missing}: add a line for each"
    for name in ("Mixture(", "Mixture.at(", "Flow(", "ProductOfNormal(", ".marginalize_var(", ".mean(\"labelled\")",
                 "analytic=False", "enumerate=True", "estimator=\"stratified\"", "marginalize=\"y\"",
                 ".discriminator_loss"):
        assert name in lines, name


def test_every_term_the_library_prints_renders():
    table = _formulas.term_table()
    failures = rejected([(f"docs/_formulas.py: {line}", tex, True) for _, line, tex in table])
    assert not failures, "KaTeX rejects what these terms print:\n" + "\n".join(failures)
    assert all(tex.strip() for _, _, tex in table)


def test_every_example_script_has_a_tiny_run():
    scripts = {path.stem for path in (ROOT / "examples").glob("*.py")}
    runs = {script for script, _ in _formulas.EXAMPLE_RUNS.values()}
    assert scripts - _formulas.NOT_MODELS == runs, (
        f"examples without a run in docs/_formulas.py's EXAMPLE_RUNS: {sorted(scripts - _formulas.NOT_MODELS - runs)}"
        f"; runs of no script: {sorted(runs - scripts)}")


@pytest.mark.usefixtures("one_thread")
def test_every_example_objective_renders():
    objectives = _formulas.example_objectives()
    formulas = [(f"examples/{script}.py {' '.join(argv)}", tex, True)
                for script, argv, _, printed in objectives.values() for tex in printed]
    assert all(printed for *_, printed in objectives.values()), [k for k, v in objectives.items() if not v[3]]
    assert all(code for _, _, code, _ in objectives.values()), [k for k, v in objectives.items() if not v[2]]
    failures = rejected(formulas)
    assert not failures, "KaTeX rejects these example objectives:\n" + "\n".join(failures)
