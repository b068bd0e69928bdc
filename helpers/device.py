"""The one place that picks a device, a dtype and chunk sizes.

Every other module asks this one: ``resolve_device("auto")`` gives CUDA when it is
available and the CPU otherwise; ``chunk_rows`` sizes blocks from the free memory of the
device the data lives on, so a pool larger than memory is streamed instead of
materialised. Elsewhere the device follows the data: a function given CUDA tensors
computes on that GPU.
"""

from __future__ import annotations

import functools
import os
from typing import Any

__all__ = ["resolve_device", "device_of", "free_memory_bytes", "chunk_rows", "default_dtype"]

#: Never let one working buffer take more than this share of free memory.
MEMORY_FRACTION = 0.25
#: Cap for CPU working buffers: beyond ~256 MiB, tiles stop fitting in cache and page faults dominate.
CPU_BUFFER_CAP = 256 * 2**20


@functools.lru_cache(maxsize=1)
def _auto_device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: Any = "auto"):
    """Return a ``torch.device`` for ``device``.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default "auto"
        ``"auto"`` is resolved once per process: CUDA if available, else CPU.
        The environment variable ``GAPSCOPE_DEVICE`` overrides ``"auto"``.

    Raises
    ------
    ValueError
        If a CUDA device is asked for and none is available, or the name is unknown.
    """
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        name = device
        if name == "auto":
            name = os.environ.get("GAPSCOPE_DEVICE", "") or _auto_device_name()
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    else:
        raise TypeError(f"device: expected a str or torch.device, got {type(device).__name__}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected a CPU or CUDA device, got {device!r}")
    return dev


def device_of(x: Any, default: Any = "auto"):
    """The device of tensor ``x``; for numpy input, ``resolve_device(default)``."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.device
    return resolve_device(default)


def free_memory_bytes(device: Any = "auto") -> int:
    """Free memory on ``device`` in bytes (CUDA: ``mem_get_info``; CPU: MemAvailable)."""
    import torch

    dev = resolve_device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return 4 * 2**30  # pragma: no cover - conservative fallback


def chunk_rows(
    bytes_per_row: int,
    *,
    device: Any = "auto",
    min_rows: int = 256,
    max_rows: int = 1 << 20,
    fraction: float = MEMORY_FRACTION,
) -> int:
    """How many rows of ``bytes_per_row`` bytes one working block may hold on ``device``.

    The block takes at most ``fraction`` of free memory (and on the CPU at most
    ``CPU_BUFFER_CAP`` bytes, where larger tiles only add page faults), clipped to
    ``[min_rows, max_rows]``. ``GAPSCOPE_CHUNK_ROWS`` overrides the result (for tests).
    """
    override = os.environ.get("GAPSCOPE_CHUNK_ROWS")
    if override:
        return max(1, int(override))
    if bytes_per_row <= 0:
        raise ValueError(f"bytes_per_row: expected a positive int, got {bytes_per_row}")
    dev = resolve_device(device)
    budget = free_memory_bytes(dev) * fraction
    if dev.type == "cpu":
        budget = min(budget, CPU_BUFFER_CAP)
    rows = int(budget // bytes_per_row)
    return int(max(min_rows, min(max_rows, rows)))


def default_dtype(device: Any = "auto"):
    """float32 everywhere: the compute dtype for scoring, KDE and k-means."""
    import torch

    return torch.float32
