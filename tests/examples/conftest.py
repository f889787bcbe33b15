"""Make the example scripts' shared helpers importable as `common` (examples/ is not a package)."""
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture
def no_loading(monkeypatch):
    """Mistakes in the options must be reported before the data is read."""
    from common import data

    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the options were checked")
    monkeypatch.setattr(data, "load", refuse)
    monkeypatch.setattr(data, "labelled_images", refuse)
