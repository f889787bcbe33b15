import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one thread runs them fastest, and on a busy two-core machine a second thread
    spins waiting for a core, which made single tests of a few hundred steps take a minute and more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
