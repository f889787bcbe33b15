"""The formula gallery's body, written at every docs build from the library itself so that it cannot go stale.

``conf.py`` calls :func:`write` before Sphinx reads the sources; ``docs/gallery.rst`` includes what it writes,
``docs/_generated/gallery.rst`` (git-ignored). The formulas come from ``docs/_formulas.py``, which
``tests/test_latex_render.py`` renders with KaTeX: what the gallery shows is what the tests check.

Run by hand (``python docs/_gallery.py``) it writes the same file and says how long it took.
"""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
if str(DOCS) not in sys.path:
    sys.path.insert(0, str(DOCS))

import _formulas  # noqa: E402

TARGET = DOCS / "_generated" / "gallery.rst"


def _heading(text, underline):
    return [text, underline * len(text), ""]


def _code(lines, indent=""):
    body = "\n".join(lines)
    return [f"{indent}.. code-block:: python", ""] + [f"{indent}   {line}" for line in body.splitlines()] + [""]


def _math(latex, indent=""):
    return [f"{indent}.. math::", "", f"{indent}   {latex}", ""]


def terms_section(table):
    """The rst of the term table: for each group, a two-column table of a line of Python and the formula it prints.

    table: (group, line, latex) triples, as :func:`_formulas.term_table` returns them.
    """
    lines = _heading("Terms", "-")
    lines += ["Each line below is evaluated after this set-up (small networks: only the formulas matter here):", ""]
    lines += _code(_formulas.SETUP.rstrip().splitlines())
    groups = list(dict.fromkeys(group for group, _, _ in table))
    for group in groups:
        lines += _heading(group, "~")
        lines += [".. list-table::", "   :header-rows: 1", "   :widths: 45 55", ""]
        lines += ["   * - Python", "     - prints"]
        for _, code, latex in (row for row in table if row[0] == group):
            lines += [f"   * - ``{code}``", f"     - :math:`{latex}`"]
        lines.append("")
    return lines


def examples_section(objectives):
    """The rst of the examples' objectives: per run, its command, the lines of the script that build the loss and
    each formula the run printed, in display.

    objectives: {run id: (script, argv, lines, [latex, ...])}, as :func:`_formulas.example_objectives` returns.
    """
    lines = _heading("The example scripts' objectives", "-")
    lines += ["Each script below ran at tiny sizes (the options shown) while the docs were built; the code is the "
              "script's own, the formulas the LaTeX that run printed and saved in its ``results.json``.", ""]
    for run_id, (script, argv, code, formulas) in objectives.items():
        lines += _heading(f"examples/{script}.py" + run_id.removeprefix(script), "~")
        lines += ["::", "", f"   python examples/{script}.py {' '.join(argv)}", ""]
        lines += _code(code) if code else []
        for latex in formulas:
            lines += _math(latex)
    return lines


def write(target=TARGET):
    """Write the gallery's body (the term table, then every example's objectives) to ``target``; returns the
    number of formulas written."""
    table = _formulas.term_table()
    objectives = _formulas.example_objectives()
    lines = [".. This file is written by docs/_gallery.py at every docs build; edit that instead.", ""]
    lines += terms_section(table) + examples_section(objectives)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines).rstrip() + "\n"
    if not target.exists() or target.read_text() != text:  # an unchanged file keeps Sphinx's cached pages valid
        target.write_text(text)
    return len(table) + sum(len(formulas) for *_, formulas in objectives.values())


if __name__ == "__main__":
    start = time.perf_counter()
    count = write()
    print(textwrap.fill(f"{TARGET}: {count} formulas in {time.perf_counter() - start:.1f} s"))
