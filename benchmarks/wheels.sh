#!/usr/bin/env bash
# Fetch Pixyz 0.3.3 and Pyro 1.9.2 (the versions of the timings in docs/papers.md) as wheels into .whl/ in the
# checkout (git-ignored), for a GPU machine that has torch but cannot reach a package index:
#
#     bash benchmarks/wheels.sh          # here, with internet; then carry .whl/ to the GPU machine
#     bash benchmarks/gpu.sh OUT ...     # there: installs .whl/*.whl into a temporary folder before the benchmarks
#
# Only what the GPU image lacks is fetched (it has torch, numpy, scipy, sympy, networkx, tqdm, opt-einsum,
# pygments, psutil and typing-extensions): Pixyz needs IPython at import, so IPython and its pure-Python needs come
# too. PY_VERSION (default 3.12, the GPU image's Python) picks the wheels' Python. Pixyz 0.3.3's metadata is
# refused by pip 24.1 and later, so it is fetched with an older pip in a throwaway virtual environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$ROOT/.whl"
PY_VERSION="${PY_VERSION:-3.12}"
mkdir -p "$WHEELS"
export PIP_CONSTRAINT=  # a machine-wide cap on torch must not stop a download that fetches no torch

download() {  # pure-Python wheels for the GPU image's Python, no dependencies resolved
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "$@"
}

download pyro-ppl==1.9.2 pyro-api==0.1.2
download ipython==9.18.1 ipython-pygments-lexers==1.1.1 traitlets==5.16.1 jedi==0.20.1 parso==0.8.7 \
    matplotlib-inline==0.2.2 pexpect==4.9.0 ptyprocess==0.7.0 prompt-toolkit==3.0.53 wcwidth==0.9.4 \
    stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure-eval==0.2.4 decorator==5.2.1

old_pip="$(mktemp -d)"
trap 'rm -rf "$old_pip"' EXIT
python3 -m venv "$old_pip"
"$old_pip/bin/python" -m pip install -q "pip<24.1"
"$old_pip/bin/python" -m pip download -q --no-deps -d "$WHEELS" pixyz==0.3.3

ls -1 "$WHEELS"
du -sh "$WHEELS"
