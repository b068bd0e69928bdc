"""LatentMap: a WebGL scatter of the 2-D map with density contours, colouring, hover
previews and reliable box / lasso selection (a view over arrays and the label store)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._common import (
    ITEM_KINDS,
    map_density,
    png_data_uri,
    selection_mask,
    sparkline_svg,
    svg_data_uri,
)

_BLANK_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNk"
    "YAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
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
_CONTINUOUS_SCALE = {"density": "Viridis", "uncertainty": "Inferno", "error": "Reds"}


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


class LatentMap:
    """Interactive 2-D map of a pool (plotly ``FigureWidget``, i.e. an anywidget).

    Parameters
    ----------
    xy : array of shape (n, 2)
        Map coordinates (UMAP, PCA, ...), one row per item.
    ids : sequence of length n
        Item ids (as in the label store).
    color_by : {"density", "uncertainty", "cluster", "label", "source", "error"}
        Initial colouring. "density" is the KDE of the map itself (KDEpy ``FFTKDE``).
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
        Draw KDE contour lines of the map under the points.
    bandwidth : float or "scott"
        KDE bandwidth in standardised map units (see ``widgets._common.map_density``).
    webgl : bool
        ``Scattergl`` (smooth at 100k points) rather than SVG ``Scatter``.
    hover : bool
        Show hover previews. Selection is read from ``layout.selections`` (a separate
        synced trait), so it stays reliable with hover on.
    width, height : int
        Figure size in pixels.

    Notes
    -----
    plotly's ``FigureWidget`` sends hover and selection events through one synced trait,
    and ipywidgets merges pending changes of one trait: with hover on, most
    ``plotly_selected`` events never reach Python. This map therefore derives the
    selection from ``layout.selections`` (rectangles and lasso paths in data units).
    """

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
        webgl: bool = True,
        hover: bool = True,
        width: int = 760,
        height: int = 540,
        title: str = "",
    ) -> None:
        import plotly.graph_objects as go

        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2:
            raise ValueError(f"xy: expected shape (n >= 2, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError("xy: expected finite map coordinates, got NaN or inf")
        n = xy.shape[0]
        ids = [str(i) for i in ids]
        if len(ids) != n:
            raise ValueError(f"ids: expected {n} ids (one per row of xy), got {len(ids)}")
        if len(set(ids)) != n:
            raise ValueError("ids: expected unique item ids, got duplicates")
        if kind not in ITEM_KINDS:
            raise ValueError(f"kind: expected one of {ITEM_KINDS}, got {kind!r}")
        self.xy, self.ids, self.n = xy, ids, n
        self._pos = {i: k for k, i in enumerate(ids)}
        self.store, self.content, self.kind = store, content, kind
        self._values: dict[str, np.ndarray] = {}
        for name, v in (("uncertainty", uncertainty), ("error", error)):
            if v is not None:
                self._values[name] = self._check_values(v, name)
        if cluster is not None:
            self._values["cluster"] = np.asarray(cluster).ravel()
            if self._values["cluster"].shape != (n,):
                raise ValueError(f"cluster: expected shape ({n},), got {np.shape(cluster)}")
        self._labels_arg = None if labels is None else self._check_seq(labels, "labels")
        self._source_arg = None if source is None else self._check_seq(source, "source")
        self.grid_x, self.grid_y, self.grid_z, dens = map_density(xy, bandwidth=bandwidth)
        self._values["density"] = dens
        self._select_callbacks: list[Callable[[list[str]], Any]] = []
        self._selected: list[str] = []
        self._last_sel_key: Any = None
        self._hover_callbacks: list[Callable[[str], Any]] = []
        self.hovered: str | None = None

        trace = go.Scattergl if webgl else go.Scatter
        data = []
        if contours:
            data.append(
                go.Contour(
                    x=self.grid_x,
                    y=self.grid_y,
                    z=self.grid_z,
                    name="density",
                    contours={"coloring": "lines", "showlabels": False},
                    ncontours=8,
                    line={"width": 1},
                    colorscale=[[0, "#c9d3e0"], [1, "#5b6b82"]],
                    showscale=False,
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        self._i_points = len(data)
        data.append(
            trace(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers",
                name="items",
                marker={"size": 6, "opacity": 0.85},
                text=ids,
                hovertemplate="%{text}<extra></extra>",
                showlegend=False,
            )
        )
        self._i_labeled = len(data)
        data.append(
            trace(
                x=[],
                y=[],
                mode="markers",
                name="labeled",
                hoverinfo="skip",
                marker={
                    "symbol": "circle-open",
                    "size": 10,
                    "color": "#111",
                    "line": {"width": 1.5},
                },
            )
        )
        self._i_synth = len(data)
        data.append(
            trace(
                x=[],
                y=[],
                mode="markers",
                name="synthetic",
                hoverinfo="skip",
                marker={
                    "symbol": "diamond-open",
                    "size": 12,
                    "color": "#ff7f0e",
                    "line": {"width": 2},
                },
            )
        )
        self._i_selected = len(data)
        data.append(
            trace(
                x=[],
                y=[],
                mode="markers",
                name="selected",
                hoverinfo="skip",
                marker={
                    "symbol": "circle-open",
                    "size": 13,
                    "color": "#e3007a",
                    "line": {"width": 2.5},
                },
            )
        )
        self._i_proposal = len(data)
        data.append(
            trace(
                x=[],
                y=[],
                mode="markers",
                name="proposal",
                hoverinfo="skip",
                marker={"symbol": "x", "size": 9, "color": "#d62728"},
            )
        )
        layout = {
            "width": width,
            "height": height,
            "title": {"text": title} if title else None,
            "dragmode": "select",
            "hovermode": "closest" if hover else False,
            "margin": {"l": 40, "r": 10, "t": 30 if title else 10, "b": 30},
            "legend": {"orientation": "h", "y": -0.08, "x": 0},
            "xaxis": {"domain": [0, 1], "zeroline": False},
            "yaxis": {"domain": [0, 1], "zeroline": False},
            # the hover preview is a layout image: changing it is a relayout that leaves
            # the user's selection alone (restyling a trace would make plotly.js drop it)
            "images": [
                {
                    "source": _BLANK_PNG,
                    "xref": "paper",
                    "yref": "paper",
                    "x": 1.0,
                    "y": 1.0,
                    "sizex": 0.2,
                    "sizey": 0.2,
                    "xanchor": "right",
                    "yanchor": "top",
                    "sizing": "contain",
                    "layer": "above",
                    "visible": False,
                    "name": "preview",
                }
            ],
            "selectionrevision": 0,
        }
        self.figure = go.FigureWidget(
            data=data, layout={k: v for k, v in layout.items() if v is not None}
        )
        self.figure.layout.on_change(self._on_selections, "selections")
        if hover:
            self.figure.data[self._i_points].on_hover(self._on_hover)
        self._hover_base = list(self.ids)
        if kind == "text" and content is not None:  # text items: the text is the preview
            self._hover_base = [
                f"{i}<br>{str(self._content_at(k))[:80]}" for k, i in enumerate(self.ids)
            ]
        self._color_by = ""
        self.color_by = color_by
        self.refresh()

    # ---------------------------------------------------------------- validation helpers
    def _check_values(self, v: Any, name: str) -> np.ndarray:
        a = np.asarray(v, dtype=np.float64).ravel()
        if a.shape != (self.n,):
            raise ValueError(f"{name}: expected shape ({self.n},), got {np.shape(v)}")
        return a

    def _check_seq(self, v: Sequence[Any], name: str) -> list[Any]:
        v = list(np.asarray(v, dtype=object).ravel())
        if len(v) != self.n:
            raise ValueError(f"{name}: expected {self.n} entries, got {len(v)}")
        return v

    # ---------------------------------------------------------------- display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.figure._repr_mimebundle_(**kwargs)

    # ---------------------------------------------------------------- colouring
    @property
    def color_by(self) -> str:
        return self._color_by

    @color_by.setter
    def color_by(self, by: str) -> None:
        if by not in COLOR_BY:
            raise ValueError(f"color_by: expected one of {COLOR_BY}, got {by!r}")
        if by in ("uncertainty", "error", "cluster") and by not in self._values:
            raise ValueError(f"color_by: {by!r} needs `{by}=` values; none were given")
        self._color_by = by
        self._recolor()

    def set_values(self, **values: Any) -> None:
        """Replace per-item values (``uncertainty=``, ``error=``, ``cluster=``) and redraw."""
        for name, v in values.items():
            if name not in ("uncertainty", "error", "cluster"):
                raise ValueError(f"{name}: expected uncertainty, error or cluster")
            self._values[name] = (
                self._check_values(v, name) if name != "cluster" else np.asarray(v).ravel()
            )
        self._recolor()

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

    def _recolor(self) -> None:
        by = self._color_by
        pts = self.figure.data[self._i_points]
        with self.figure.batch_update():
            if by in _CATEGORICAL:
                cats = self._categories(by)
                uniq = sorted({str(c) for c in cats})
                cmap = {
                    c: ("#cfcfcf" if c in ("unlabeled", "-1") else _PALETTE[k % len(_PALETTE)])
                    for k, c in enumerate(uniq)
                }
                pts.marker.color = [cmap[str(c)] for c in cats]
                pts.marker.showscale = False
                pts.marker.colorscale = None
                self._legend = cmap
                pts.text = [
                    f"{t}<br>{by}: {c}" for t, c in zip(self._hover_base, cats, strict=True)
                ]
                pts.hovertemplate = "%{text}<extra></extra>"
            else:
                v = self._values[by]
                pts.marker.color = v
                pts.marker.colorscale = _CONTINUOUS_SCALE[by]
                pts.marker.showscale = True
                pts.marker.colorbar = {
                    "title": {"text": by},
                    "thickness": 10,
                    "len": 0.6,
                    "x": 1.0,
                    "y": 0.3,
                }
                self._legend = {}
                pts.text = self._hover_base
                pts.hovertemplate = "%{text}<br>" + by + " %{marker.color:.3g}<extra></extra>"

    # ---------------------------------------------------------------- marks
    def refresh(self) -> None:
        """Re-read labels and sources (from the store when given) and redraw the marks."""
        labeled = np.array([v is not None for v in self.labels()], dtype=bool)
        synth = np.array([str(s) == "synthetic" for s in self.sources()], dtype=bool)
        with self.figure.batch_update():
            for i, m in ((self._i_labeled, labeled), (self._i_synth, synth)):
                self.figure.data[i].x = self.xy[m, 0]
                self.figure.data[i].y = self.xy[m, 1]
            if self._color_by in ("label", "source"):
                self._recolor()

    def show_proposal(self, xy: Any) -> None:
        """Draw proposed points (e.g. from :class:`SamplerPanel`) on the map; ``xy`` (k, 2)."""
        p = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        tr = self.figure.data[self._i_proposal]
        with self.figure.batch_update():
            tr.x, tr.y = p[:, 0], p[:, 1]

    def proposal_xy(self) -> np.ndarray:
        tr = self.figure.data[self._i_proposal]
        x = np.asarray(tr.x if tr.x is not None else [], dtype=np.float64)
        y = np.asarray(tr.y if tr.y is not None else [], dtype=np.float64)
        return np.column_stack([x, y])

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
        return list(self._selected)

    def select(self, item_ids: Sequence[Any]) -> list[str]:
        """Make ``item_ids`` the current selection (as a box drag would) and notify."""
        ids = [str(i) for i in item_ids]
        unknown = [i for i in ids if i not in self._pos]
        if unknown:
            raise ValueError(f"item_ids: {len(unknown)} ids are not on the map: {unknown[:5]}")
        self._set_selection([self._pos[i] for i in ids])
        return self.selected_ids

    def _on_selections(self, layout: Any, selections: Any) -> None:
        # plotly (7.1) leaves the ``layout.selections`` objects stale after a relayout from
        # the browser; the raw layout dict holds what plotly.js sent.
        raw = self.figure._layout.get("selections")
        if raw is None:
            raw = [s.to_plotly_json() for s in (selections or ())]
        sels = [dict(s) for s in raw]
        key = repr(sels)
        if key == self._last_sel_key:  # the same shapes echoed back: nothing new
            return
        self._last_sel_key = key
        mask = selection_mask(self.xy, sels)
        # plotly.js already highlights a selection drawn in the browser; restyling a trace
        # now would make plotly.js drop the selection box (and send an empty selection)
        self._set_selection(np.flatnonzero(mask).tolist(), draw=False)

    def _set_selection(self, idx: list[int], *, draw: bool = True) -> None:
        self._selected = [self.ids[k] for k in idx]
        tr = self.figure.data[self._i_selected]
        if draw:
            with self.figure.batch_update():
                tr.x, tr.y = self.xy[idx, 0], self.xy[idx, 1]
        elif tr.x is not None and len(tr.x):
            pass  # a programmatic selection stays drawn until the next select()
        for cb in list(self._select_callbacks):
            cb(self.selected_ids)

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

    def preview_uri(self, item_id: Any) -> str | None:
        """The data URI the hover preview shows for ``item_id`` (None without content)."""
        k = self._pos.get(str(item_id))
        if k is None:
            raise ValueError(f"item_id: {item_id!r} is not on the map")
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
        return svg_data_uri(
            sparkline_svg(np.asarray(x, dtype=np.float64).ravel(), width=160, height=80)
        )

    def show_item(self, item_id: Any) -> None:
        """Show one item in the preview corner (what hovering does)."""
        uri = self.preview_uri(item_id)
        k = self._pos[str(item_id)]
        if uri is not None:
            img = self.figure.layout.images[0]
            with self.figure.batch_update():
                img.source = uri
                img.visible = True
        self.hovered = self.ids[k]
        for cb in list(self._hover_callbacks):
            cb(self.ids[k])

    def _on_hover(self, trace: Any, points: Any, state: Any) -> None:
        inds = list(getattr(points, "point_inds", []) or [])
        if inds:
            self.show_item(self.ids[int(inds[0])])
