"""The one way gapscope writes a file: atomically (a reader or a resume never sees half of it).

:func:`atomic_write` writes through ``write(tmp_path)`` to a unique temporary file beside
``path``, flushes it to disk and renames it over ``path``; on failure the temporary file is
removed and ``path`` is left as it was.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "write_binary", "atomic_write_json", "atomic_savez", "json_default"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file that replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the suffix is kept, so writers that append one (np.save, np.savez) write to tmp itself
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def json_default(o: Any) -> Any:
    """``json.dump`` default for numpy scalars and arrays."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (numpy values become Python values)."""
    text = json.dumps(obj, default=json_default, indent=indent)
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_savez(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez`` to ``path`` atomically."""
    return atomic_write(path, lambda p: np.savez(p, **arrays))


def write_binary(target: Any, write: Callable[[Any], Any]) -> None:
    """``write(fh)`` into a binary file object, or atomically into a path.

    ``target`` may be an open binary file (``io.BytesIO``, say), written as it is, or a path,
    written through :func:`atomic_write`.
    """
    if hasattr(target, "write"):
        write(target)
        return

    def to_path(p: Path) -> None:
        with open(p, "wb") as fh:
            write(fh)

    atomic_write(target, to_path)
