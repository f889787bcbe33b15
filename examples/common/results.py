"""Writing a run's scores: ``<out>/results.json`` (with the settings and history), ``results.md``, ``results.csv``."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import uuid
from pathlib import Path


def _cell(value):
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    return "" if value is None else str(value)


def write_atomically(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace: a reader (or a run
    stopped mid-write) sees the old file or the new one, never half of one."""
    path = Path(path)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    # a new file with the mode any file gets (0666 less the umask), not mkstemp's private 0600
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write(out, title, table, args, description, objective, history=None, flat=True, headings=None,
          objective_heading="Objective (maximized)"):
    """Print a table of scores and write ``out``/results.json, results.md and results.csv.

    table:     {row (a model): {column (a score): float}}, columns in order of first appearance.
    flat:      with one row, results.json holds its scores at its top level ({"ELBO": ..., ...}); else one dict
               per row ({"AE": {"setting 1": ...}, ...}). Beside them: the data's description, the settings
               (``args``), the objective's LaTeX (or {name: LaTeX}) and the training history.
    headings:  {column: heading} for the Markdown table (default: the column names).
    """
    out = Path(out)
    columns = []
    for scores in table.values():
        columns.extend(c for c in scores if c not in columns)
    scores = next(iter(table.values())) if flat and len(table) == 1 else table
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record = {**scores, "model": ", ".join(table), "data": description, "labels": args.labels,
              "epochs": args.epochs, "seed": args.seed, "objective": objective, "settings": settings}
    if history is not None:
        record["history"] = history
    write_atomically(out / "results.json", json.dumps(record, indent=2, allow_nan=True) + "\n")

    headings = headings or {}
    lines = [f"| model | {' | '.join(headings.get(c, c) for c in columns)} |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {row} | {' | '.join(_cell(s.get(c)) for c in columns)} |" for row, s in table.items()]
    text = "\n".join(lines)
    objectives = objective if isinstance(objective, dict) else {"": objective}
    maths = "\n\n".join(f"{name}\n$$\n{latex}\n$$" if name else f"$$\n{latex}\n$$"
                        for name, latex in objectives.items())
    (out / "results.md").write_text(f"# {title}\n\nData: {description}.\nEpochs: {args.epochs}, seed: {args.seed}."
                                    f"\n\n{text}\n\n{objective_heading}:\n\n{maths}\n")
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["model", *columns])
        writer.writerows([row, *(s.get(c, "") for c in columns)] for row, s in table.items())
    print(f"\n{title} on {description}:\n{text}\nResults in {out}/")
    return record
