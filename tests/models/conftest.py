import pytest


@pytest.fixture(autouse=True)
def _tiny_networks(one_thread):
    """Every model here is tiny: run it on one thread (see tests/conftest.py)."""
