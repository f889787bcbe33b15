"""KaTeX as the tests' TeX renderer: every formula of a batch rendered in one node process, strictly.

KaTeX is a pinned npm package in ``node_modules/`` at the repository root (git-ignored), installed by ``.ci/run``
with :data:`INSTALL`. Without it, or without node, :func:`render` fails the calling test with the command to run:
a check that silently skipped would pass on a machine that checks nothing.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("katex_render.js")
VERSION = "0.19.1"
INSTALL = f"npm install --no-save --no-package-lock katex@{VERSION}"
MODULES = ROOT / "node_modules"


def render(formulas, modules=MODULES):
    """KaTeX's error message for each formula (None where it renders), in display or inline mode.

    formulas: a list of (tex, display) pairs, ``display`` True for a display formula (``.. math::``, ``$$``).
    Returns a list of the same length. Fails the test (it does not skip) when node or KaTeX is missing.
    """
    if shutil.which("node") is None:
        pytest.fail("The LaTeX tests render with KaTeX under node, and `node` is not on the PATH: install Node.js "
                    f"(apt-get install nodejs npm), then run `{INSTALL}` in {ROOT}.", pytrace=False)
    if not (Path(modules) / "katex" / "package.json").is_file():
        pytest.fail(f"KaTeX is not installed in {modules}: run `{INSTALL}` in {ROOT} (.ci/run does), then run the "
                    "tests again.", pytrace=False)
    request = json.dumps([{"tex": tex, "display": bool(display)} for tex, display in formulas])
    finished = subprocess.run(["node", str(SCRIPT), str(Path(modules) / "katex")], input=request,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, f"node {SCRIPT.name} failed:\n{finished.stderr}"
    answer = json.loads(finished.stdout)
    assert answer["version"] == VERSION, (f"node_modules holds KaTeX {answer['version']}, the tests pin {VERSION}: "
                                          f"run `{INSTALL}` in {ROOT}.")
    return answer["results"]
