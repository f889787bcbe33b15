import pytest
import torch

from pgm.distributions import set_validation, validation_enabled


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def validation():
    """Every test starts with validation on and leaves it as it found it."""
    before = validation_enabled()
    set_validation(True)
    yield
    set_validation(before)
