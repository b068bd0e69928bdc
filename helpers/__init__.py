"""gapscope helpers: the library. Arrays in, arrays out; no widget or notebook code.

Installed as ``gapscope.helpers``. Submodules are imported lazily (``import
gapscope.helpers`` is fast and pulls in no torch): ``device``, ``data``, ``components`` (the
seam for the user's data, model and strategy), ``models``, ``training``, ``scoring``,
``density``, ``clustering``, ``metrics``, ``selection``, ``bandits``, ``synthesis``,
``store``, ``loop``, ``experiments``, ``report`` (the figures and tables of
``gapscope report``), ``scale`` (one round over a pool streamed from an Arrow or Parquet
file).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "device",
    "data",
    "components",
    "models",
    "training",
    "scoring",
    "density",
    "clustering",
    "metrics",
    "selection",
    "bandits",
    "synthesis",
    "store",
    "loop",
    "experiments",
    "report",
    "scale",
)

__all__ = list(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'gapscope.helpers' has no attribute {name!r}")
