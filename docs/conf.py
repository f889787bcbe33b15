"""Sphinx configuration of pgm's documentation.

Build it (from the repository root) with warnings as errors, offline::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Two pages are made while it builds, so that neither can drift from the code: the formula gallery
(``docs/_gallery.py`` writes ``docs/_generated/gallery.rst``, running each example script at tiny sizes) and the
getting-started notebook, executed afresh by myst-nb (an error in a cell fails the build).

Links into the documentation of Python, PyTorch and NumPy (intersphinx) need their inventories from the
network: they are used only when ``PGM_DOCS_INTERSPHINX=1`` is set, and then only those that answer, so that
an offline build (CI) passes either way.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the working tree's pgm, installed or not

import pgm  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _gallery  # noqa: E402

project = "pgm"
author = "pgm developers"
copyright = "2026, pgm developers"
release = pgm.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown pages (it includes myst_parser) and the notebook
]

# ------------------------------------------------------------------ intersphinx (opt-in: needs the network)
INVENTORIES = {
    "python": "https://docs.python.org/3",
    "torch": "https://pytorch.org/docs/stable",
    "numpy": "https://numpy.org/doc/stable",
}


def _reachable(url, timeout=5.0):
    """Whether ``url/objects.inv`` answers: an unreachable inventory is left out, not a (fatal) warning."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/objects.inv", timeout=timeout) as response:
            return response.status == 200
    except Exception as error:  # no network, DNS, proxy, HTTP error: build without that inventory
        print(f"intersphinx: leaving out {url} ({type(error).__name__})")
        return False


if os.environ.get("PGM_DOCS_INTERSPHINX", "").lower() in ("1", "true", "yes"):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {name: (url, None) for name, url in INVENTORIES.items() if _reachable(url)}
    intersphinx_timeout = 10

# ------------------------------------------------------------------ sources
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
# _generated holds what docs/gallery.rst includes, not pages of their own
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path = []

# ------------------------------------------------------------------ pages made from the code at build time
_gallery.write()
# the notebook runs at every build, never from a cache or its saved outputs, and a cell that raises fails the build
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 120

# Markdown pages (papers.md, the changelog): $...$ math, ::: fences, and #anchors for headings
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# ------------------------------------------------------------------ autodoc
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "mixed"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
add_module_names = False

# ------------------------------------------------------------------ HTML
html_theme = "alabaster"
html_title = f"pgm {release}"
html_static_path = []
html_theme_options = {
    "description": "Deep generative models written the way they are written on paper",
    "fixed_sidebar": True,
    "show_related": True,
    "page_width": "1240px",   # room for 110-column code
    "sidebar_width": "230px",
}
