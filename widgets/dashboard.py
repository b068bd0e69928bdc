"""LoopDashboard: per-round metrics of the active-learning loop as plotly figures that
update in place when a round ends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: panel -> metric keys drawn there (first match wins; missing keys are skipped)
PANELS: dict[str, tuple[str, ...]] = {
    "quality": ("accuracy", "macro_f1", "minority_recall", "auroc"),
    "calibration": ("ece",),
    "diversity": (
        "d_score",
        "cluster_entropy",
        "diversity",
        "coverage",
        "evenness",
        "distinctiveness",
        "coverage_jsd",
        "cluster_jsd",
    ),
    "labels": ("n_labeled", "labels", "synthetic"),
}
_TITLES = (
    "accuracy / minority recall",
    "ECE",
    "diversity",
    "arm pulls (cumulative)",
    "arm mean reward",
    "labels",
)
#: panel -> its subplot axis suffix ("" for xaxis/yaxis, "2" for xaxis2, ...): the 2 x 3 grid
#: in the order of ``_TITLES``
_AXES = {
    "quality": "",
    "calibration": "2",
    "diversity": "3",
    "arm_pulls": "4",
    "arm_rewards": "5",
    "labels": "6",
}
_BANDIT_PANELS = ("arm_pulls", "arm_rewards")
#: at most this many round ticks on an axis (integers always: a round has no halves)
_MAX_TICKS = 8


def round_dtick(rounds: Any) -> int:
    """Spacing of integer round ticks: 1, or larger so that at most ``_MAX_TICKS`` show."""
    r = [int(v) for v in rounds]
    span = (max(r) - min(r)) if r else 0
    return max(1, int(np.ceil(span / _MAX_TICKS)))


def _as_records(history: Any) -> list[dict]:
    if history is None:
        return []
    if hasattr(history, "to_dict") and hasattr(history, "columns"):
        return [dict(r) for r in history.to_dict("records")]
    if isinstance(history, Mapping):
        raise TypeError("history: expected a list of per-round dicts or a DataFrame, got a dict")
    out = []
    for k, r in enumerate(history):
        if not isinstance(r, Mapping):
            raise TypeError(f"history[{k}]: expected a dict of metrics, got {type(r).__name__}")
        out.append(dict(r))
    return out


def _arm_vector(v: Any) -> dict[str, float]:
    if v is None or (isinstance(v, float) and v != v):
        return {}
    if isinstance(v, Mapping):
        return {str(k): float(x) for k, x in v.items()}
    a = np.asarray(v, dtype=np.float64).ravel()
    return {str(k): float(x) for k, x in enumerate(a)}


def _arm_vector_raw(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if isinstance(v, Mapping):
        return {str(k): x for k, x in v.items()}
    return {str(k): x for k, x in enumerate(list(v))}


class LoopDashboard:
    """Loop metrics per round: accuracy, ECE, minority recall, diversity, bandit arms.

    Parameters
    ----------
    history : list of dict or DataFrame, optional
        One entry per finished round. Recognised keys: ``round``, ``accuracy``,
        ``macro_f1``, ``minority_recall``, ``auroc``, ``ece``, ``cluster_entropy``,
        ``diversity``, ``d_score``, ``coverage``, ``evenness``, ``distinctiveness``,
        ``coverage_jsd``, ``cluster_jsd``, ``n_labeled`` / ``labels``, ``synthetic``,
        ``arm_pulls`` (pulls this round per arm: list or {arm: n}), ``arm_rewards`` (mean
        reward per arm this round). Other keys are ignored. ``helpers.loop``'s
        ``CurationLoop.results()`` has this shape; see :meth:`update_from_loop`.
    width, height : int

    Examples
    --------
    >>> dash = LoopDashboard()
    >>> dash.add_round({"round": 0, "accuracy": 0.8, "ece": 0.05, "arm_pulls": [3, 2]})
    >>> dash.rounds
    [0]
    """

    def __init__(self, history: Any = None, *, width: int = 980, height: int = 520) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=2, cols=3, subplot_titles=_TITLES, horizontal_spacing=0.07, vertical_spacing=0.16
        )
        fig.update_layout(
            width=width,
            height=height,
            margin={"l": 40, "r": 10, "t": 40, "b": 30},
            legend={"orientation": "h", "y": -0.08},
            hovermode="x unified",
        )
        self.figure = go.FigureWidget(fig)
        self._traces: dict[str, int] = {}
        cells = {"quality": (1, 1), "calibration": (1, 2), "diversity": (1, 3), "labels": (2, 3)}
        for panel, keys in PANELS.items():
            r, c = cells[panel]
            for key in keys:
                self.figure.add_trace(
                    go.Scatter(x=[], y=[], mode="lines+markers", name=key, visible=False),
                    row=r,
                    col=c,
                )
                self._traces[key] = len(self.figure.data) - 1
        self.figure.add_trace(go.Bar(x=[], y=[], name="pulls", showlegend=False), row=2, col=1)
        self._traces["arm_pulls"] = len(self.figure.data) - 1
        self.figure.add_trace(
            go.Bar(x=[], y=[], name="reward", showlegend=False, marker_color="#2ca02c"),
            row=2,
            col=2,
        )
        self._traces["arm_rewards"] = len(self.figure.data) - 1
        # arm names are categories, not numbers ("0", "1" would get a 0.5 tick otherwise)
        for panel in _BANDIT_PANELS:
            self.figure.layout[f"xaxis{_AXES[panel]}"].type = "category"
        # one note per panel, shown where the panel has nothing to draw
        for panel, ax in _AXES.items():
            self.figure.add_annotation(
                name=f"empty-{panel}",
                text="no rounds yet",
                xref=f"x{ax} domain",
                yref=f"y{ax} domain",
                x=0.5,
                y=0.5,
                showarrow=False,
                font={"color": "#888", "size": 12},
                visible=True,
            )
        self._show_empty({panel: "no rounds yet" for panel in _AXES})
        self.bandit_history: list[dict] = []
        self.history: list[dict] = []
        if history is not None:
            self.update(history)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.figure._repr_mimebundle_(**kwargs)

    @property
    def rounds(self) -> list[Any]:
        return [r.get("round", k) for k, r in enumerate(self.history)]

    def add_round(self, metrics: Mapping[str, Any]) -> None:
        """Append one finished round and redraw (use as the loop's round-end callback)."""
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics: expected a dict of metrics, got {type(metrics).__name__}")
        self.update(self.history + [dict(metrics)])

    __call__ = add_round

    def update(self, history: Any, *, bandit_history: Any = None) -> None:
        """Replace the whole history (list of dicts or DataFrame) and redraw.

        ``bandit_history``: optional list of ``{"round", "pulls", "means"}`` with cumulative
        pulls and mean rewards per arm (``CurationLoop.bandit_history``);
        it takes precedence over ``arm_pulls`` / ``arm_rewards`` in ``history``.
        Bad input raises ``TypeError`` and leaves the figures as they were.
        """
        recs = _as_records(history)
        for k, r in enumerate(recs):
            for key, v in r.items():
                if key in self._traces and key not in ("arm_pulls", "arm_rewards"):
                    if v is not None and not isinstance(v, int | float | np.number):
                        raise TypeError(f"history[{k}][{key!r}]: expected a number, got {v!r}")
        bh = [] if bandit_history is None else list(bandit_history)
        for k, b in enumerate(bh):
            if not isinstance(b, Mapping) or "pulls" not in b:
                raise TypeError(f"bandit_history[{k}]: expected a dict with 'pulls', got {b!r:.80}")
        if bh:
            pulls = _arm_vector(bh[-1]["pulls"])
            rewards = {
                a: (np.nan if m is None else float(m))
                for a, m in _arm_vector_raw(bh[-1].get("means")).items()
            }
        else:
            pulls = {}
            for r in recs:
                for arm, n in _arm_vector(r.get("arm_pulls")).items():
                    pulls[arm] = pulls.get(arm, 0.0) + n
            rewards = _arm_vector(recs[-1].get("arm_rewards")) if recs else {}
        self.history, self.bandit_history = recs, bh
        x = self.rounds
        drawn: set[str] = set()  # (read back inside batch_update, traces give old values)
        with self.figure.batch_update():
            for key, i in self._traces.items():
                if key in ("arm_pulls", "arm_rewards"):
                    continue
                ys = [r.get(key) for r in recs]
                tr = self.figure.data[i]
                have = any(y is not None and y == y for y in ys)
                tr.x, tr.y = (
                    (x, [np.nan if y is None else float(y) for y in ys]) if have else ([], [])
                )
                tr.visible = True if have else False
                if have:
                    drawn.add(key)
            bp = self.figure.data[self._traces["arm_pulls"]]
            bp.x, bp.y = list(pulls), list(pulls.values())
            br = self.figure.data[self._traces["arm_rewards"]]
            br.x, br.y = list(rewards), list(rewards.values())
            dtick = round_dtick(x)
            for panel, ax in _AXES.items():
                if panel not in _BANDIT_PANELS:
                    self.figure.layout[f"xaxis{ax}"].update(
                        tickmode="linear", tick0=0, dtick=dtick, tickformat="d"
                    )
            empty: dict[str, str] = {}
            for panel, keys in PANELS.items():
                if not drawn & set(keys):
                    empty[panel] = "no rounds yet" if not recs else "not measured in this run"
            for panel, arms in (("arm_pulls", pulls), ("arm_rewards", rewards)):
                if not arms:
                    empty[panel] = "no rounds yet" if not recs else "no bandit in this strategy"
            self._show_empty(empty)

    def _show_empty(self, empty: Mapping[str, str]) -> None:
        """Say why a panel is empty (its note) and hide its bare axes; show the others."""
        for note in self.figure.layout.annotations:
            panel = (note.name or "").removeprefix("empty-")
            if note.name and note.name.startswith("empty-"):
                note.visible = panel in empty
                if panel in empty:
                    note.text = empty[panel]
        for panel, ax in _AXES.items():
            show = panel not in empty
            for axis in (f"xaxis{ax}", f"yaxis{ax}"):
                self.figure.layout[axis].update(
                    showticklabels=show, showgrid=show, zeroline=show, showline=False
                )

    def empty_panels(self) -> dict[str, str]:
        """Panels with nothing to draw and the note each shows instead (for tests and notebooks)."""
        return {
            note.name.removeprefix("empty-"): note.text
            for note in self.figure.layout.annotations
            if note.name and note.name.startswith("empty-") and note.visible
        }

    def update_from_loop(self, loop: Any) -> None:
        """Redraw from a ``helpers.loop.CurationLoop`` (its results and bandit history)."""
        self.update(loop.results(), bandit_history=loop.bandit_history)

    def series(self, key: str) -> list[float]:
        """The plotted y values of one metric (for tests and notebooks)."""
        if key not in self._traces:
            raise ValueError(f"key: expected one of {sorted(self._traces)}, got {key!r}")
        return [float(v) for v in (self.figure.data[self._traces[key]].y or ())]
