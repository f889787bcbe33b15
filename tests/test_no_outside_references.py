"""The repository stands on its own: no text file in it points to a note outside the repository (the old
internal papers note, a shared folder beside the checkout) or to a relative path that does not exist in it.

Scanned: every file git tracks or would track (untracked files that are not ignored count, so a file about to
be committed is checked too) with a suffix in SUFFIXES, outside virtual environments and build folders; without
git, the files under the repository root, with the same exclusions. The model descriptions that the scripts
cite live in docs/papers.md.
"""
from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".cfg", ".toml", ".rst", ".txt"}
# folders never scanned, and never required to exist when a text names a path inside them (they hold outputs)
SKIPPED_PARTS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", ".eggs",
                 "node_modules", "site-packages", "venv", "env", "build", "dist", "_build", "results", "runs",
                 "_generated"}  # docs/_generated: the pages the docs build writes (docs/_gallery.py)

# Written in pieces so that this file does not match its own patterns.
INTERNAL_NOTE = re.compile(re.escape("PAPERS" + ".md"))
SHARED_FOLDER = re.compile(r"\.\./" + "shared" + r"\b|(?<![\w-])" + "shared" + "/")
MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*)?\)")          # [text](target "title")
MARKDOWN_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?([^\s>]+)", re.M)        # [label]: target
HTML_LINK = re.compile(r"\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']")
RST_DIRECTIVE = re.compile(r"^\s*\.\.\s+(?:image|figure|include|literalinclude)::\s*(\S+)", re.M)
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _skipped(relative: Path) -> bool:
    return any(part in SKIPPED_PARTS or part.startswith(".venv") or part.endswith(".egg-info")
               for part in relative.parts)


@lru_cache(maxsize=None)
def text_files() -> tuple[Path, ...]:
    """The repository's text files (relative paths), as described in the module docstring."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True).stdout.decode().split("\0")
        candidates = [Path(name) for name in listed if name]
    except (OSError, subprocess.CalledProcessError):  # no git, or not a git checkout (e.g. an unpacked sdist)
        candidates = [path.relative_to(ROOT) for path in ROOT.rglob("*")]
    return tuple(sorted({path for path in candidates
                         if path.suffix in SUFFIXES and not _skipped(path) and (ROOT / path).is_file()}))


def lines_of(relative: Path):
    """(line number, line) of a text file; files that are not UTF-8 text are skipped."""
    try:
        text = (ROOT / relative).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    return list(enumerate(text.splitlines(), 1))


def offences(pattern: re.Pattern) -> list[str]:
    return [f"{path}:{number}: {line.strip()}" for path in text_files() for number, line in lines_of(path)
            if pattern.search(line)]


def test_the_scan_sees_the_repository():
    names = {path.as_posix() for path in text_files()}
    assert {"README.md", "docs/papers.md", "pyproject.toml", "tests/test_no_outside_references.py"} <= names
    assert not any(name.startswith((".git/", ".venv")) or "/__pycache__/" in name for name in names)


def test_no_reference_to_the_internal_papers_note():
    found = offences(INTERNAL_NOTE)
    assert not found, ("cite docs/papers.md (same section number) instead of the internal note:\n"
                       + "\n".join(found))


def test_no_path_into_a_shared_folder_outside_the_repository():
    found = offences(SHARED_FOLDER)
    assert not found, "paths into a shared folder outside the repository:\n" + "\n".join(found)


# ---------------------------------------------------------------------------------------- relative paths
def _top_folders() -> set[str]:
    """The repository's top-level folders that hold scanned files (docs, examples, pgm, tests, ...)."""
    return {path.parts[0] for path in text_files() if len(path.parts) > 1} | {"docs"}


def _resolves(target: str, base: Path) -> bool:
    """Whether ``target`` (a relative path, possibly with a glob, an #anchor or a ?query) names something in
    the repository, relative to ``base``; a path inside an output folder (build, results, ...) always passes."""
    target = target.split("#", 1)[0].split("?", 1)[0]
    if not target:
        return True  # a pure #anchor
    path = (ROOT / target.lstrip("/")) if target.startswith("/") else (base / target)
    try:
        relative = path.resolve().relative_to(ROOT)
    except ValueError:
        return False  # it leaves the repository
    if _skipped(relative):
        return True
    if any(char in target for char in "*?["):
        return any(ROOT.glob(relative.as_posix()))
    return (ROOT / relative).exists()


def _links(path: Path, text: str) -> list[str]:
    """The link targets that a Markdown or reStructuredText file resolves relative to its own folder."""
    if path.suffix == ".md":
        patterns = (MARKDOWN_LINK, MARKDOWN_REFERENCE, HTML_LINK)
    elif path.suffix == ".rst":
        patterns = (RST_DIRECTIVE,)
    else:
        return []
    return [match.group(1) for pattern in patterns for match in pattern.finditer(text)]


def test_links_to_relative_paths_resolve():
    found = []
    for path in text_files():
        for number, line in lines_of(path):
            for target in _links(path, line):
                if URL_SCHEME.match(target) or target.startswith("//"):
                    continue  # a URL, mailto: and the like
                if not _resolves(target, (ROOT / path).parent):
                    found.append(f"{path}:{number}: {target}")
    assert not found, "links to paths that do not exist in the repository:\n" + "\n".join(found)


def test_mentioned_repository_paths_exist():
    """A path written from the repository root, such as docs/papers.md, examples/vae.py or
    examples/common/*.py, names a file or folder of the repository (a path under an output folder passes)."""
    mention = re.compile(r"(?<![\w./~-])((?:" + "|".join(map(re.escape, sorted(_top_folders())))
                         + r")/[\w*][\w./*-]*)")
    found = []
    for path in text_files():
        for number, line in lines_of(path):
            for match in mention.finditer(line):
                target = match.group(1).rstrip(".-/")
                if not _resolves(target, ROOT):
                    found.append(f"{path}:{number}: {target}")
    assert not found, "paths that do not exist in the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("target, ok", [("docs/papers.md", True), ("docs/papers.md#3-jmvae-kl", True),
                                        ("examples/common/*.py", True), ("docs/_build/html", True), ("docs/_generated/gallery.rst", True),
                                        ("docs/" + "no_such_page.md", False), ("../outside.md", False)])
def test_path_resolution(target, ok):
    assert _resolves(target, ROOT) is ok
