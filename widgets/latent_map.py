"""LatentMap: a canvas scatter of a 2-D map for 10^2 .. 10^6 points, with density shading,
colouring with a legend, hover previews beside the plot and box / lasso selection.

The front end (``static/map.js``) gets the points as binary traits and draws them into one
canvas image per frame; this class owns colours, legend, marks and the selection's meaning.
It is a view over arrays and the label store: it stores nothing itself.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ._common import (
    ITEM_KINDS,
    WIDGETS_VERSION,
    map_density,
    png_data_uri,
    points_in_polygon,
    sparkline_svg,
    svg_data_uri,
)

_STATIC = Path(__file__).parent / "static"
COLOR_BY = ("density", "uncertainty", "cluster", "label", "source", "error")
_CATEGORICAL = {"cluster", "label", "source"}
_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
]
_MISSING = "#cfcfcf"  # unlabeled items, cluster noise (-1)
# continuous colour scales as stops (matplotlib's viridis / inferno, ColorBrewer's Reds)
_SCALES = {
    "density": ["#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863", "#aadc32", "#fde725"],
    "uncertainty": ["#000004", "#1f0c48", "#550f6d", "#88226a", "#ba3655", "#e35933", "#f98c0a", "#f9c932", "#fcffa4"],
    "error": ["#fff5f0", "#fee0d2", "#fcbba1", "#fc9272", "#fb6a4a", "#ef3b2c", "#cb181d", "#a50f15", "#67000d"],
}
FLAG_LABELED, FLAG_SYNTHETIC, FLAG_BATCH = 1, 2, 4
# the density contours drawn over the points: the lines that enclose these fractions of them
CONTOUR_MASS = (0.25, 0.5, 0.75, 0.95)


def _hex_rgb(c: str) -> tuple[int, int, int]:
    c = c.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def continuous_rgba(v: np.ndarray, stops: Sequence[str], lo: float, hi: float) -> np.ndarray:
    """RGBA bytes (n, 4) of values ``v`` on a piecewise-linear scale from ``lo`` to ``hi``.

    Values outside [lo, hi] take the end colours; NaN is drawn grey.
    """
    v = np.asarray(v, dtype=np.float64)
    rgb = np.array([_hex_rgb(s) for s in stops], dtype=np.float64)
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.nan_to_num(v, nan=lo) - lo) / span, 0.0, 1.0) * (len(stops) - 1)
    k = np.minimum(t.astype(np.int64), len(stops) - 2)
    f = (t - k)[:, None]
    out = np.empty((v.size, 4), dtype=np.uint8)
    out[:, :3] = np.round(rgb[k] * (1 - f) + rgb[k + 1] * f).astype(np.uint8)
    out[:, 3] = 255
    out[np.isnan(v), :3] = _hex_rgb(_MISSING)
    return out


def contour_lines(
    gx: np.ndarray, gy: np.ndarray, z: np.ndarray, at_points: np.ndarray, mass: Sequence[float] = CONTOUR_MASS
) -> np.ndarray:
    """Density contours as one float32 array of (x, y) vertices, polylines separated by NaN rows.

    The level for a fraction ``p`` in ``mass`` is the density that ``p`` of the points exceed
    (so its line encloses about that fraction of them: a highest-density region). Lines come
    from contourpy (matplotlib's contouring engine); without it there are none.

    Parameters
    ----------
    gx, gy : arrays of shape (g,) and (h,)
        Grid coordinates (map units).
    z : array of shape (h, g)
        Density on the grid, ``z[j, i]`` at ``(gx[i], gy[j])``.
    at_points : array of shape (n,)
        Density at each point.

    Returns
    -------
    array of float32, shape (k, 2)
    """
    try:
        import contourpy
    except ImportError:  # contours are an extra: the shading still shows the density
        return np.zeros((0, 2), dtype=np.float32)
    d = np.asarray(at_points, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or not np.isfinite(z).all() or float(z.max()) <= 0:
        return np.zeros((0, 2), dtype=np.float32)
    gen = contourpy.contour_generator(gx, gy, z)
    parts = []
    sep = np.full((1, 2), np.nan)
    for level in np.unique(np.quantile(d, 1.0 - np.asarray(mass, dtype=np.float64))):
        for line in gen.lines(float(level)):
            if len(line) >= 2:
                parts += [np.asarray(line, dtype=np.float64), sep]
    if not parts:
        return np.zeros((0, 2), dtype=np.float32)
    return np.concatenate(parts[:-1]).astype(np.float32)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _labels_from_store(store: Any, ids: list[str]) -> list[Any]:
    cur = store.current_labels()
    if hasattr(cur, "to_dict") and hasattr(cur, "index"):  # Series / DataFrame
        if hasattr(cur, "columns"):
            col = "label" if "label" in cur.columns else cur.columns[-1]
            key = "item_id" if "item_id" in cur.columns else None
            m = (
                dict(zip(cur[key].astype(str), cur[col], strict=True))
                if key
                else {str(k): v for k, v in cur[col].items()}
            )
        else:
            m = {str(k): v for k, v in cur.items()}
    else:
        m = {str(k): v for k, v in dict(cur).items()}
    return [m.get(i) for i in ids]


def _sources_from_store(store: Any, ids: list[str]) -> list[Any]:
    items = store.items()
    if hasattr(items, "columns"):
        key = "item_id" if "item_id" in items.columns else items.columns[0]
        m = dict(zip(items[key].astype(str), items["source"], strict=True))
    else:
        m = {str(r["item_id"]): r.get("source") for r in items}
    return [m.get(i, "real") for i in ids]


class LatentMap(anywidget.AnyWidget):
    """Interactive 2-D map of a pool (an anywidget: display it, or ``mo.ui.anywidget(it)``).

    Parameters
    ----------
    xy : array of shape (n, 2)
        Map coordinates (UMAP, PCA, ...), one row per item.
    ids : sequence of length n
        Item ids (as in the label store).
    color_by : {"density", "uncertainty", "cluster", "label", "source", "error"}
        Initial colouring (the map's own dropdown changes it too). "density" is the KDE of
        the map itself (KDEpy ``FFTKDE``), coloured on a log scale.
    uncertainty, error : array of shape (n,), optional
        Continuous per-item values for colouring.
    cluster : array of shape (n,), optional
        Cluster ids (-1 = noise).
    labels : sequence of length n, optional
        Current labels (None or -1 = unlabeled). Ignored when ``store`` is given:
        labels then come from ``store.current_labels()``.
    source : sequence of length n, optional
        "real" / "synthetic" per item; from ``store.items()`` when ``store`` is given.
    store : helpers.store.LabelStore, optional
        Read-only here: labels and sources for colouring and the labeled / synthetic marks.
    content : mapping, callable or array of length n, optional
        The items themselves, for the hover preview (``content[i]`` by position when an
        array, else ``content[id]`` / ``content(id)``).
    kind : {"image", "signal", "vector", "text"}
        Hover preview: a thumbnail for images, a sparkline for signals and vectors.
    contours : bool
        Shade the map's KDE (8 levels) under the points and draw its contours over them: the
        lines that enclose 25, 50, 75 and 95% of the points (see :func:`contour_lines`).
    bandwidth : float or "scott"
        KDE bandwidth in standardised map units (see ``widgets._common.map_density``).
    hover : bool
        Send hovered points to Python for the preview beside the plot.
    width : int
        Plot width in pixels; 0 (default) fills the notebook's width.
    height : int
        Plot height in pixels.

    Notes
    -----
    In the browser: drag = box (or lasso, from the toolbar), shift adds to the selection,
    the wheel zooms, Pan mode or alt-drag moves, double-click or Escape clears.
    Each selection arrives in Python as one custom message with a bitmask of the points
    inside (computed in the browser, where the points are); ``last_select_ms`` is the time
    from mouse-up in the page to the selection in Python.
    """

    _esm = (_STATIC / "map.js").read_text(encoding="utf-8")
    _css = (_STATIC / "map.css").read_text(encoding="utf-8")

    xy_bytes = traitlets.Bytes(b"").tag(sync=True)
    colors = traitlets.Bytes(b"").tag(sync=True)
    flags = traitlets.Bytes(b"").tag(sync=True)
    selection = traitlets.Bytes(b"").tag(sync=True)
    selection_rev = traitlets.Int(0).tag(sync=True)
    density_grid = traitlets.Bytes(b"").tag(sync=True)
    contours_xy = traitlets.Bytes(b"").tag(sync=True)
    density = traitlets.Dict().tag(sync=True)
    proposal: traitlets.List = traitlets.List().tag(sync=True)
    legend = traitlets.Dict().tag(sync=True)
    color_by = traitlets.Unicode("density").tag(sync=True)
    color_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    hover_info = traitlets.Dict().tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    width = traitlets.Int(0).tag(sync=True)
    height = traitlets.Int(420).tag(sync=True)
    version = traitlets.Unicode(WIDGETS_VERSION).tag(sync=True)

    def __init__(
        self,
        xy: Any,
        ids: Sequence[Any],
        *,
        color_by: str = "density",
        uncertainty: Any = None,
        error: Any = None,
        cluster: Any = None,
        labels: Sequence[Any] | None = None,
        source: Sequence[Any] | None = None,
        store: Any = None,
        content: Any = None,
        kind: str = "vector",
        contours: bool = True,
        bandwidth: float | str = "scott",
        hover: bool = True,
        width: int = 0,
        height: int = 420,
        title: str = "",
    ) -> None:
        if kind not in ITEM_KINDS:
            raise ValueError(f"kind: expected one of {ITEM_KINDS}, got {kind!r}")
        if int(width) < 0 or int(height) < 80:
            raise ValueError(f"width, height: expected width >= 0 (0 = fill) and height >= 80, got {width}, {height}")
        super().__init__(width=int(width), height=int(height), title=title)
        self.store, self.content, self.kind = store, content, kind
        self.contours, self.bandwidth, self.hover = bool(contours), bandwidth, bool(hover)
        self._select_callbacks: list[Callable[[list[str]], Any]] = []
        self._hover_callbacks: list[Callable[[str], Any]] = []
        self.hovered: str | None = None
        self.n_selections = 0
        self.last_select_ms: float | None = None
        self.last_selection_shape: dict = {}
        self._values: dict[str, np.ndarray] = {}
        self._batch: set[str] = set()
        self._set_points(xy, ids)
        for name, v in (("uncertainty", uncertainty), ("error", error)):
            if v is not None:
                self._values[name] = self._check_values(v, name)
        if cluster is not None:
            self._values["cluster"] = self._check_cluster(cluster)
        self._labels_arg = None if labels is None else self._check_seq(labels, "labels")
        self._source_arg = None if source is None else self._check_seq(source, "source")
        self._check_color_by(color_by)
        with self.hold_sync():
            self._send_points()
            if color_by != self.color_by:
                self.color_by = color_by  # recolours (the observer)
            else:
                self._recolor()
            self.refresh()
        self.on_msg(self._on_frontend_msg)

    # ---------------------------------------------------------------- points
    def _set_points(self, xy: Any, ids: Sequence[Any] | None) -> None:
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2:
            raise ValueError(f"xy: expected shape (n >= 2, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError("xy: expected finite map coordinates, got NaN or inf")
        if ids is None:
            if xy.shape[0] != self.n:
                raise ValueError(f"xy: expected {self.n} rows (one per item on the map), got {xy.shape[0]}")
        else:
            distinct = isinstance(ids, range)  # a range has no repeats: no need for the set
            ids = [str(i) for i in ids]
            if len(ids) != xy.shape[0]:
                raise ValueError(f"ids: expected {xy.shape[0]} ids (one per row of xy), got {len(ids)}")
            if not distinct and len(set(ids)) != len(ids):
                raise ValueError("ids: expected unique item ids, got duplicates")
            self.ids: list[str] = ids
            self.n: int = len(ids)
            self._pos_cache: dict[str, int] | None = None
            self._selected_idx = np.zeros(0, dtype=np.int64)
        self.xy = xy
        self.grid_x, self.grid_y, self.grid_z, dens = map_density(xy, bandwidth=self.bandwidth)
        self._values["density"] = dens

    @property
    def _pos(self) -> dict[str, int]:
        if self._pos_cache is None:
            self._pos_cache = {i: k for k, i in enumerate(self.ids)}
        return self._pos_cache

    def _send_points(self) -> None:
        self.xy_bytes = np.ascontiguousarray(self.xy, dtype=np.float32).tobytes()
        if self.contours:
            z = self.grid_z
            top = float(z.max()) if z.size else 0.0
            levels = np.zeros_like(z) if top <= 0 else np.floor(z / top * 8.0)
            self.density_grid = np.clip(levels, 0, 8).astype(np.uint8).tobytes()
            lines = contour_lines(self.grid_x, self.grid_y, z, self._values["density"])
            self.contours_xy = np.ascontiguousarray(lines, dtype=np.float32).tobytes()
            self.density = {
                "size": int(z.shape[0]),
                "extent": [float(self.grid_x[0]), float(self.grid_x[-1]), float(self.grid_y[0]), float(self.grid_y[-1])],
                "mass": list(CONTOUR_MASS) if len(lines) else [],
            }
        else:
            self.density_grid, self.contours_xy, self.density = b"", b"", {}

    def update(self, xy: Any = None, **values: Any) -> None:
        """Change the map in place: new coordinates (same items, e.g. a retrained model's
        embedding) and/or new per-item values (``uncertainty=``, ``error=``, ``cluster=``),
        then one redraw in the page. The selection is kept (same items)."""
        for name in values:
            if name not in ("uncertainty", "error", "cluster", "title"):
                raise ValueError(f"{name}: expected xy, uncertainty, error, cluster or title")
        with self.hold_sync():
            if xy is not None:
                self._set_points(xy, None)
                self._send_points()
            for name, v in values.items():
                if name == "title":
                    self.title = str(v)
                elif name == "cluster":
                    self._values[name] = self._check_cluster(v)
                else:
                    self._values[name] = self._check_values(v, name)
            self._recolor()
            self.refresh()

    # ---------------------------------------------------------------- validation helpers
    def _check_values(self, v: Any, name: str) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64).ravel()
        if a.shape != (self.n,):
            raise ValueError(f"{name}: expected shape ({self.n},), got {np.shape(v)}")
        return a

    def _check_cluster(self, v: Any) -> np.ndarray:
        a = np.asarray(v).ravel()
        if a.shape != (self.n,):
            raise ValueError(f"cluster: expected shape ({self.n},), got {np.shape(v)}")
        return a

    def _check_seq(self, v: Sequence[Any], name: str) -> list[Any]:
        v = list(np.asarray(v, dtype=object).ravel())
        if len(v) != self.n:
            raise ValueError(f"{name}: expected {self.n} entries, got {len(v)}")
        return v

    def _check_color_by(self, by: str) -> None:
        if by not in COLOR_BY:
            raise ValueError(f"color_by: expected one of {COLOR_BY}, got {by!r}")
        if by in ("uncertainty", "error", "cluster") and by not in self._values:
            raise ValueError(f"color_by: {by!r} needs `{by}=` values; none were given")

    # ---------------------------------------------------------------- colouring
    @traitlets.validate("color_by")
    def _validate_color_by(self, proposal: Any) -> str:
        by = proposal["value"]
        if getattr(self, "_values", None) is not None:
            self._check_color_by(by)
        return by

    @traitlets.observe("color_by")
    def _on_color_by(self, _change: Any) -> None:
        if getattr(self, "_values", None) is not None and hasattr(self, "xy"):
            self._recolor()

    def set_values(self, **values: Any) -> None:
        """Replace per-item values (``uncertainty=``, ``error=``, ``cluster=``) and redraw."""
        self.update(**values)

    def labels(self) -> list[Any]:
        """Current label per item (None when unlabeled), from the store when there is one."""
        if self.store is not None:
            return _labels_from_store(self.store, self.ids)
        if self._labels_arg is None:
            return [None] * self.n
        return [None if (v is None or v == -1 or v != v) else v for v in self._labels_arg]

    def sources(self) -> list[Any]:
        if self.store is not None:
            return _sources_from_store(self.store, self.ids)
        return self._source_arg if self._source_arg is not None else ["real"] * self.n

    def _categories(self, by: str) -> list[Any]:
        if by == "label":
            return ["unlabeled" if v is None else v for v in self.labels()]
        if by == "source":
            return list(self.sources())
        return list(self._values["cluster"])

    def color_values(self) -> np.ndarray:
        """What the points are coloured by now: the values (continuous) or the categories."""
        by = self.color_by
        if by in _CATEGORICAL:
            return np.asarray([str(c) for c in self._categories(by)], dtype=object)
        return self._values[by].copy()

    def point_colors(self) -> np.ndarray:
        """The RGBA bytes (n, 4) the page draws, one row per item."""
        return np.frombuffer(self.colors, dtype=np.uint8).reshape(-1, 4)

    def _recolor(self) -> None:
        by = self.color_by
        self.color_options = [c for c in COLOR_BY if c in _CATEGORICAL - {"cluster"} or c in self._values]
        if by in _CATEGORICAL:
            import pandas as pd

            raw = self._categories(by)
            if by == "cluster" and np.issubdtype(np.asarray(raw).dtype, np.number):
                codes, uniq_raw = pd.factorize(np.asarray(raw))
                uniq = np.asarray([str(u) for u in uniq_raw], dtype=object)
            else:
                codes, uniq = pd.factorize(pd.Series(raw, dtype=object).astype(str))
                uniq = np.asarray(uniq, dtype=object)
            inv = codes
            counts = np.bincount(codes, minlength=len(uniq))
            real = [u for u in uniq if u not in ("unlabeled", "-1")]
            try:  # numeric categories in numeric order
                real = sorted(real, key=float)
            except ValueError:
                real = sorted(real)
            cmap = {c: _PALETTE[k % len(_PALETTE)] for k, c in enumerate(real)}
            cmap.update({c: _MISSING for c in uniq if c in ("unlabeled", "-1")})
            table = np.array([(*_hex_rgb(cmap[u]), 255) for u in uniq], dtype=np.uint8)
            rgba = table[inv.ravel()]
            cnt = dict(zip(uniq, counts.tolist(), strict=True))
            order = real + [c for c in uniq if c in ("unlabeled", "-1")]
            self.legend = {
                "kind": "categorical",
                "title": by,
                "items": [[c, cmap[c], int(cnt[c])] for c in order[:40]],
            }
        else:
            v = self._values[by]
            log = by == "density"  # densities span orders of magnitude: a linear scale shows one peak
            if log:
                pos = v[np.isfinite(v) & (v > 0)]
                v = np.log(np.maximum(v, pos.min() if pos.size else 1e-300))
            fin = v[np.isfinite(v)]
            lo, hi = (float(np.percentile(fin, 1)), float(np.percentile(fin, 99))) if fin.size else (0.0, 1.0)
            rgba = continuous_rgba(v, _SCALES[by], lo, hi)
            show = np.exp if log else float
            self.legend = {
                "kind": "continuous",
                "title": by,
                "colors": _SCALES[by],
                "lo": f"≤ {_fmt(show(lo))}",
                "hi": f"≥ {_fmt(show(hi))}",
                "scale": "log" if log else "linear",
            }
        self.colors = np.ascontiguousarray(rgba).tobytes()

    # ---------------------------------------------------------------- marks
    def refresh(self) -> None:
        """Re-read labels and sources (from the store when given) and redraw the marks."""
        f = np.zeros(self.n, dtype=np.uint8)
        if self.store is not None or self._labels_arg is not None:  # else none is labeled
            f[[v is not None for v in self.labels()]] |= FLAG_LABELED
        if self.store is not None or self._source_arg is not None:  # else all are real
            f[[str(s) == "synthetic" for s in self.sources()]] |= FLAG_SYNTHETIC
        if self._batch:
            f[[i in self._batch for i in self.ids]] |= FLAG_BATCH
        with self.hold_sync():
            self.flags = f.tobytes()
            if self.color_by in ("label", "source"):
                self._recolor()

    def mark_batch(self, item_ids: Sequence[Any]) -> None:
        """Outline the items of the current batch (blue squares)."""
        ids = {str(i) for i in item_ids}
        unknown = [i for i in ids if i not in self._pos]
        if unknown:
            raise ValueError(f"item_ids: {len(unknown)} ids are not on the map: {sorted(unknown)[:5]}")
        self._batch = ids
        self.refresh()

    def show_proposal(self, xy: Any) -> None:
        """Draw proposed points (e.g. from :class:`SamplerPanel`) on the map; ``xy`` (k, 2)."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(p).all():
            raise ValueError("xy: expected finite proposal coordinates, got NaN or inf")
        self.proposal = p.tolist()

    def proposal_xy(self) -> np.ndarray:
        return np.asarray(self.proposal, dtype=np.float64).reshape(-1, 2)

    # ---------------------------------------------------------------- selection
    def on_select(self, callback: Callable[[list[str]], Any], *, remove: bool = False) -> None:
        """Register ``callback(item_ids)``, called after every box / lasso selection
        (an empty list when the selection is cleared)."""
        if remove:
            self._select_callbacks.remove(callback)
        else:
            self._select_callbacks.append(callback)

    @property
    def selected_ids(self) -> list[str]:
        return [self.ids[k] for k in self._selected_idx]

    def select(self, item_ids: Sequence[Any]) -> list[str]:
        """Make ``item_ids`` the current selection (drawn in the page) and notify."""
        ids = [str(i) for i in item_ids]
        unknown = [i for i in ids if i not in self._pos]
        if unknown:
            raise ValueError(f"item_ids: {len(unknown)} ids are not on the map: {unknown[:5]}")
        idx = np.unique(np.asarray([self._pos[i] for i in ids], dtype=np.int64))
        self._push_selection(idx)
        self._set_selection(idx)
        return self.selected_ids

    def select_polygon(self, poly: Any) -> list[str]:
        """Select the points inside a polygon (k, 2) in map units, as a lasso would."""
        P = np.asarray(poly, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != 2 or P.shape[0] < 3:
            raise ValueError(f"poly: expected shape (k >= 3, 2), got {P.shape}")
        idx = np.flatnonzero(points_in_polygon(self.xy, P))
        self._push_selection(idx)
        self._set_selection(idx)
        return self.selected_ids

    def _push_selection(self, idx: np.ndarray) -> None:
        mask = np.zeros(self.n, dtype=bool)
        mask[idx] = True
        with self.hold_sync():
            self.selection = np.packbits(mask, bitorder="little").tobytes()
            self.selection_rev += 1

    def _set_selection(self, idx: np.ndarray) -> None:
        self._selected_idx = np.asarray(idx, dtype=np.int64)
        self.n_selections += 1
        for cb in list(self._select_callbacks):
            cb(self.selected_ids)

    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, Mapping):
            return
        kind = content.get("type")
        if kind == "select":
            bits = base64.b64decode(content.get("bits") or "")
            mask = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")[: self.n]
            idx = np.flatnonzero(mask)
            self.last_selection_shape = {"kind": content.get("kind"), "shape": content.get("shape") or []}
            t = content.get("t")
            if isinstance(t, int | float):  # set before the callbacks run, so they can read it
                self.last_select_ms = time.time() * 1000.0 - float(t)
            self._set_selection(idx)
        elif kind == "hover" and self.hover:
            i = content.get("index")
            if isinstance(i, int) and 0 <= i < self.n:
                self._show(i)

    # ---------------------------------------------------------------- hover
    def on_hover(self, callback: Callable[[str], Any]) -> None:
        """Register ``callback(item_id)`` for hovered items."""
        self._hover_callbacks.append(callback)

    def _content_at(self, k: int) -> Any:
        c = self.content
        if c is None:
            return None
        if isinstance(c, np.ndarray):
            return c[k]
        if callable(c):
            return c(self.ids[k])
        if isinstance(c, Mapping):
            return c[self.ids[k]]
        return c[k]

    def _index_of(self, item_id: Any) -> int:
        k = self._pos.get(str(item_id))
        if k is None:
            raise ValueError(f"item_id: {item_id!r} is not on the map")
        return k

    def preview_uri(self, item_id: Any) -> str | None:
        """The data URI the hover preview shows for ``item_id`` (None without content)."""
        return self._preview_at(self._index_of(item_id))

    def _preview_at(self, k: int) -> str | None:
        x = self._content_at(k)
        if x is None or self.kind == "text":
            return None
        if self.kind == "image":
            a = np.asarray(x, dtype=np.float64)
            if a.ndim == 1:
                s = int(round(np.sqrt(a.size)))
                a = a.reshape(s, s)
            if a.ndim == 3:
                a = a.mean(-1)
            rep = max(1, 64 // max(a.shape))  # upscale: browsers blur tiny images
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 1:
                a = (a - lo) / (hi - lo if hi > lo else 1.0)
            return png_data_uri(np.kron(a, np.ones((rep, rep))))
        return svg_data_uri(sparkline_svg(np.asarray(x, dtype=np.float64).ravel(), width=160, height=80))

    def show_item(self, item_id: Any) -> None:
        """Show one item in the preview beside the plot (what hovering does)."""
        self._show(self._index_of(item_id))

    def _label_source_at(self, k: int) -> tuple[Any, Any]:
        """(label or None, source) of the item at position k; O(1) without a store (a hover
        at 10^6 points must not copy per-item lists: the kernel would hold later messages)."""
        if self.store is not None:
            return self.labels()[k], self.sources()[k]
        v = None if self._labels_arg is None else self._labels_arg[k]
        label = None if (v is None or v == -1 or v != v) else v
        return label, "real" if self._source_arg is None else self._source_arg[k]

    def _show(self, k: int) -> None:
        lines = []
        for name, v in zip(("label", "source"), self._label_source_at(k), strict=True):
            lines.append(f"{name}: {'—' if v is None else v}")
        for name in ("uncertainty", "error", "cluster", "density"):
            if name in self._values:
                v = self._values[name][k]
                lines.append(f"{name}: {_fmt(float(v)) if name != 'cluster' else v}")
        info: dict[str, Any] = {"id": self.ids[k], "index": k, "lines": lines}
        uri = self._preview_at(k)
        if uri is not None:
            info["src"] = uri
        elif self.kind == "text" and self.content is not None:
            info["text"] = str(self._content_at(k))[:300]
        self.hover_info = info
        self.hovered = self.ids[k]
        for cb in list(self._hover_callbacks):
            cb(self.ids[k])
