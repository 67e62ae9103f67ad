"""Fixtures shared by the library's tests."""
from __future__ import annotations

import pytest
import torch

from course_lib.config import ModelConfig


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: a second intra-op thread only adds contention on 2 shared CI cores
    (measured: test_models 69 s with 2 threads under load vs 9 s with 1). Restored afterwards.
    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(**overrides) -> ModelConfig:
    """The smallest config most tests need (vocabulary 10, d_model 8, 2 heads, 2 layers); ``overrides``
    change any field."""
    return ModelConfig(**{"vocab_size": 10, "d_model": 8, "n_heads": 2, **overrides})


@pytest.fixture
def tiny_cfg():
    """:func:`tiny_config` as a fixture: ``tiny_cfg(n_layers=3)``."""
    return tiny_config


@pytest.fixture(autouse=True)
def _fixed_thread_choice(monkeypatch):
    """The translator's command line picks its thread count by timing (``runtime.configure_threads``);
    tests that run it keep the worker's count instead, so they neither pay for the probe nor change
    the threads of the tests after them."""
    monkeypatch.setenv("COURSE_THREADS", str(torch.get_num_threads()))
