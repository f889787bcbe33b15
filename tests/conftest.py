"""Fixtures the whole suite shares."""
import inspect

import pytest
import torch

from pgm.models import Model


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread; on a busy two-core machine a second thread spins waiting for a
    core (single tests of a few hundred steps took a minute and more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_SHARED_RECOMPILE_BUDGET = "isolate_recompiles" not in inspect.signature(torch.compile).parameters


@pytest.fixture(autouse=True)
def _fresh_dynamo_caches():
    """Where torch.compile has no ``isolate_recompiles`` (torch 2.11), every model compiled in one process shares
    the recompile budget (8) of pgm's step functions and the optimizers' code, so a suite of compiled models would
    run out of it; there each test starts with empty caches, as a fresh process would."""
    yield
    if _SHARED_RECOMPILE_BUDGET:
        torch._dynamo.reset()


@pytest.fixture
def built_models(monkeypatch):
    """``built_models(module)``: a list that collects the pgm ``Model``s ``module`` (a script, which imports
    ``Model`` by name) builds from then on, for checks on the trained models."""
    def record(module):
        built = []

        class Recorded(Model):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                built.append(self)

        monkeypatch.setattr(module, "Model", Recorded)
        return built
    return record
