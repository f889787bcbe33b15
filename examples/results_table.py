"""Collect the test accuracies of several runs (their results.json) into one Markdown table.

    python examples/results_table.py results/ss_mvae results/ss_hmvae results/ss_hmvae_kl
    python examples/results_table.py results/*          # every run under results/

Rows keep the order of the folders given; columns are the accuracy keys any of them holds (x, w, x+w, the
iterative and zeroed variants). A folder without a results.json, or one holding no accuracies (the
unsupervised models), is named in an error.
"""
import argparse
import json
from pathlib import Path

from common.evaluation import ACCURACY_KEYS, HEADINGS


def load(folder):
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise SystemExit(f"results_table: {path} does not exist; pass folders written by the example scripts "
                         f"(their --out).")
    record = json.loads(path.read_text())
    if not any(key in record for key in ACCURACY_KEYS):
        raise SystemExit(f"results_table: {path} holds no test accuracies ({', '.join(ACCURACY_KEYS)}); only the "
                         f"semi-supervised scripts write them.")
    return record


def table(records):
    keys = [k for k in ACCURACY_KEYS if any(k in r for r in records)]
    lines = ["| model | data | epochs | " + " | ".join(HEADINGS[k] for k in keys) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in keys) + " |"]
    for r in records:
        cells = [f"{r[k]:.2f}" if k in r else "" for k in keys]
        lines.append(f"| {r['model']} | {r['data']} | {r['epochs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="results folders (the scripts' --out)")
    args = parser.parse_args(argv)
    text = table([load(folder) for folder in args.folders])
    print(text)
    return text


if __name__ == "__main__":
    main()
