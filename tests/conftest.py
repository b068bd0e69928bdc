"""Shared fixtures: a fixed seed, device parametrisation, tmp run folders."""

from __future__ import annotations

import os

import numpy as np
import pytest

SEED = 20261123


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(SEED)


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


CUDA = _cuda_available()

#: Use as ``@pytest.mark.parametrize("device", DEVICES)``: "cuda" skips cleanly without CUDA.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="CUDA is not available")]),
]


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch deterministic-ish and polite on the 2-core CI machine."""
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except Exception:  # pragma: no cover
        pass
    yield
