"""The README's quick start runs as written and prints the LaTeX the README shows."""
import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_quick_start_runs_and_prints_the_latex_shown(capsys):
    quick_start = README.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", quick_start, re.S).group(1)
    shown = re.search(r"```latex\n(.*?)\n```", quick_start, re.S).group(1)
    exec(compile(code, "README.md (quick start)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == shown
    assert 400 < float(printed[1]) < 700  # -ELBO of random binary 784-d data at initialization: about 784 log 2


def test_writing_your_next_model_runs_and_prints_what_is_shown(capsys):
    section = README.split("## Writing your next model", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```latex\n(.*?)\n```", section, re.S).group(1)
    exec(compile(code, "README.md (writing your next model)", "exec"), {})
    assert capsys.readouterr().out.strip() == shown
