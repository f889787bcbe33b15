"""Fixtures the whole suite shares."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread; on a busy two-core machine a second thread spins waiting for a
    core (single tests of a few hundred steps took a minute and more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
