"""Shared input validation and randomness helpers (private).

Every public function in :mod:`helpers` validates its input once at the boundary with
these helpers, so error messages have one shape: the argument's name, what was expected
and what arrived.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_random_state",
    "check_array",
    "check_positive",
    "check_in_range",
    "check_choice",
    "torch_generator",
    "is_torch",
]


def check_random_state(random_state: Any) -> np.random.Generator:
    """Normalise ``random_state`` (None, int or ``numpy.random.Generator``) to a Generator.

    None gives fresh OS entropy; an int seeds a new ``PCG64`` generator; a Generator is
    returned as is (so a caller can thread one generator through several calls).
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if int(random_state) < 0:
            raise ValueError(f"random_state: expected a non-negative int, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state: expected None, a non-negative int or numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def torch_generator(random_state: Any, device: Any = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded from ``random_state`` (see check_random_state)."""
    import torch

    rng = check_random_state(random_state)
    g = torch.Generator(device=device)
    g.manual_seed(int(rng.integers(0, 2**63 - 1)))
    return g


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def check_array(
    x: Any,
    *,
    name: str,
    ndim: int | tuple[int, ...] | None = None,
    min_rows: int = 1,
    finite: bool = True,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Validate a numeric array-like and return it as a numpy array of ``dtype``.

    Raises ``TypeError`` for non-numeric input and ``ValueError`` for a wrong rank, too few
    rows, or NaN/inf entries (when ``finite``), naming ``name`` in the message.
    Torch tensors are accepted and copied to host memory.
    """
    if is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name}: expected an array-like of numbers, got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(
                f"{name}: expected an array with ndim in {allowed}, got shape {arr.shape}"
            )
    if arr.ndim >= 1 and arr.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} row(s), got shape {arr.shape}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).reshape(arr.shape[0], -1).any(axis=1).sum()) if arr.ndim else 1
        raise ValueError(f"{name}: expected finite values, got NaN or inf in {bad} row(s)")
    return arr


def check_positive(value: Any, *, name: str, strict: bool = True) -> float:
    """A real number > 0 (or >= 0 when ``strict`` is False), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or (v <= 0 if strict else v < 0):
        op = "> 0" if strict else ">= 0"
        raise ValueError(f"{name}: expected a finite number {op}, got {value!r}")
    return v


def check_in_range(value: Any, *, name: str, low: float, high: float) -> float:
    """A real number in the closed interval [low, high], else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if not (low <= v <= high):
        raise ValueError(f"{name}: expected a number in [{low}, {high}], got {value!r}")
    return v


def check_choice(value: Any, *, name: str, choices: Any) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing the valid ones."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(map(str, choices))}, got {value!r}")
    return value
