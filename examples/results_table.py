"""Collect the test accuracies of several runs (their results.json) into one Markdown table.

    python examples/results_table.py results/ss_mvae results/ss_hmvae results/ss_hmvae_kl
    python examples/results_table.py results/*          # every run under results/

Rows keep the order of the folders given; columns are the accuracy keys any of them holds (x, w, x+w, the
iterative and zeroed variants). A folder without a readable results.json, or one holding no accuracies (the
unsupervised models), is named in one line ``error: ...`` (exit status 2).
"""
import argparse
import json
from pathlib import Path

from common import training
from common.errors import UsageError
from common.evaluation import ACCURACY_KEYS, HEADINGS

COLUMNS = ("model", "data", "epochs")  # besides the accuracies, every record must hold these


def load(folder):
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise UsageError(f"{path} does not exist; pass folders written by the example scripts (their --out).")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path} ({error}); pass folders written by the example scripts "
                         f"(their --out).") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                         f"run the script again to rewrite it, or leave that folder out.") from None
    if not isinstance(record, dict) or not any(key in record for key in ACCURACY_KEYS):
        raise UsageError(f"{path} holds no test accuracies ({', '.join(ACCURACY_KEYS)}); only the "
                         f"semi-supervised scripts write them.")
    missing = [key for key in COLUMNS if key not in record]
    bad = [key for key in ACCURACY_KEYS if key in record and not _is_number(record[key])]
    if missing or bad:
        what = "; ".join(part for part in (f"it lacks {', '.join(missing)}" if missing else "",
                                           f"{', '.join(bad)} not numbers" if bad else "") if part)
        raise UsageError(f"{path} is not a results file of the example scripts ({what}); run the script again "
                         f"to rewrite it, or leave that folder out.")
    return record


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table(records):
    keys = [k for k in ACCURACY_KEYS if any(k in r for r in records)]
    lines = ["| model | data | epochs | " + " | ".join(HEADINGS[k] for k in keys) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in keys) + " |"]
    for r in records:
        cells = [f"{r[k]:.2f}" if k in r else "" for k in keys]
        lines.append(f"| {r['model']} | {r['data']} | {r['epochs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    """Print the table of the folders in ``argv``; a folder without a usable results.json is a UsageError
    (``training.run`` prints it as one line ``error: ...``, exit status 2)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.error = training._one_line_error.__get__(parser)
    parser.add_argument("folders", nargs="+", help="results folders (the scripts' --out)")
    args = parser.parse_args(argv)
    text = table([load(folder) for folder in args.folders])
    print(text)
    return text


if __name__ == "__main__":
    training.run(main)
