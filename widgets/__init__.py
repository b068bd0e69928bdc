"""gapscope widgets: anywidget/plotly views over helpers (no algorithms of their own).

``LatentMap`` (plotly FigureWidget map with contours, colouring, hover previews and
reliable box/lasso selection), ``SamplerPanel`` (low-density sampling controls),
``Labeler`` (keyboard-first batch labeling into the label store) and ``LoopDashboard``
(per-round metrics). Classes are imported lazily, so ``import widgets`` is light.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._common import WIDGETS_VERSION as __version__

_EXPORTS = {
    "LatentMap": "latent_map",
    "COLOR_BY": "latent_map",
    "SamplerPanel": "sampler",
    "Labeler": "labeler",
    "LabelerError": "labeler",
    "KEYMAP": "labeler",
    "LoopDashboard": "dashboard",
    "LoopView": "loop_view",
    "ensemble_agreement": "loop_view",
    "nearest_exemplars": "_common",
    "map_density": "_common",
    "selection_mask": "_common",
    "item_preview": "_common",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gapscope.widgets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
