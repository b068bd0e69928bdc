"""Figures and tables of the report on a run folder (what ``gapscope report DIR`` renders).

``compare.ipynb`` calls these on the tidy table of :func:`gapscope.helpers.experiments.collect`;
they are plain functions on that table, usable in a notebook of one's own:

- :func:`prepare_table` names what a grid left unnamed (no ``dataset`` or ``strategy``
  parameter), so every run is counted in some group;
- :func:`learning_curve_figure` and :func:`savings_forest_figure` draw matplotlib figures,
  :func:`save_figure` writes each one as PNG and SVG under stable names;
- :func:`final_table`, :func:`labels_to_target_table`, :func:`savings_table`,
  :func:`aulc_table`, :func:`claims_display` and :func:`problems_table` turn the analysis
  tables into tidy ones (readable names, "0.912 ± 0.013", only the columns that hold data);
  :func:`style_table` and :func:`style_claims` render them without the index.

Intervals are 95% t-intervals over seeds (``± half-width``); with one seed there is none.
"""

from __future__ import annotations

import base64
import html
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .claims import COLUMNS as _CLAIM_COLUMNS

__all__ = [
    "NO_DATASET",
    "NO_STRATEGY",
    "CURVE_METRICS",
    "METRIC_LABELS",
    "prepare_table",
    "format_estimate",
    "format_interval",
    "strategy_colors",
    "learning_curve_figure",
    "savings_forest_figure",
    "save_figure",
    "file_slug",
    "clear_figures",
    "figure_row_html",
    "final_table",
    "labels_to_target_table",
    "savings_table",
    "aulc_table",
    "claims_display",
    "problems_table",
    "runs_table",
    "style_table",
    "style_claims",
    "note_html",
]

#: The group name of runs whose grid named no dataset / no strategy.
NO_DATASET = "(no dataset)"
NO_STRATEGY = "(no strategy)"

#: The metrics drawn as learning curves, in this order, where the runs report them.
CURVE_METRICS = ("accuracy", "minority_recall", "ece", "shifted_accuracy")

#: Readable names of the per-round metrics (axis labels and table headers).
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro-F1",
    "auroc": "AUROC",
    "ece": "ECE",
    "minority_recall": "Minority recall",
    "rare_recall": "Rare-class recall",
    "subgroup_gap": "Subgroup gap",
    "shifted_accuracy": "Shifted accuracy",
    "mix_jsd": "Mix JSD",
    "mia_auc_real": "MIA AUC (real)",
    "mia_auc_synthetic": "MIA AUC (synthetic)",
    "coverage": "Coverage",
    "evenness": "Evenness",
    "d_score": "D-score",
}

_AXIS_LABELS = {
    "accuracy": "Test accuracy",
    "minority_recall": "Minority-class recall",
    "ece": "Expected calibration error (lower is better)",
    "shifted_accuracy": "Accuracy on the shifted split",
}

#: Verdict -> (background, text) colours of the claims table.
VERDICT_COLORS = {
    "supported": ("#d4edda", "#155724"),
    "not supported": ("#f8d7da", "#721c24"),
    "inconclusive": ("#e2e3e5", "#383d41"),
    "no runs": ("#e2e3e5", "#383d41"),
}

_DASH = "–"


# ------------------------------------------------------------------------- numbers
def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _num(v: Any, kind: str = "metric") -> str:
    """One number as text: ``"metric"`` 3 decimals, ``"count"`` none, ``"percent"`` 0.35 -> 35%,
    ``"auto"`` 3 decimals below 10, fewer above."""
    if not _finite(v):
        return _DASH
    v = float(v)
    if kind == "count":
        return f"{v:.0f}"
    if kind == "percent":
        return f"{100 * v:.0f}%"
    if kind == "auto":
        a = abs(v)
        return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.3f}"
    return f"{v:.3f}"


def format_estimate(mean: Any, half: Any = None, *, kind: str = "metric") -> str:
    """``"0.912 ± 0.013"``; the mean alone where the half-width is missing (one seed).

    ``kind``: ``"metric"`` (3 decimals), ``"count"`` (labels), ``"percent"`` (a share),
    ``"auto"`` (3 decimals below 10, fewer above). A missing mean is ``"–"``.

    Examples
    --------
    >>> format_estimate(0.91234, 0.0131)
    '0.912 ± 0.013'
    >>> format_estimate(0.5, float("nan"))
    '0.500'
    >>> format_estimate(0.35, 0.08, kind="percent")
    '35% ± 8%'
    """
    if not _finite(mean):
        return _DASH
    text = _num(mean, kind)
    return f"{text} ± {_num(half, kind)}" if _finite(half) else text


def format_interval(value: Any, low: Any, high: Any, *, kind: str = "auto") -> str:
    """``"0.123 [0.050, 0.200]"``; the value alone without bounds, ``"–"`` without a value.

    Examples
    --------
    >>> format_interval(0.1234, 0.05, 0.2)
    '0.123 [0.050, 0.200]'
    >>> format_interval(120.0, 80.0, 160.0)
    '120 [80.0, 160]'
    """
    if not _finite(value):
        return _DASH
    text = _num(value, kind)
    if _finite(low) and _finite(high):
        text += f" [{_num(low, kind)}, {_num(high, kind)}]"
    return text


# -------------------------------------------------------------------------- tables
def prepare_table(table):
    """A copy of ``collect``'s table in which every run has a dataset and a strategy name.

    A grid without a ``data``/``dataset`` (or ``strategy``) parameter leaves the column
    empty, and a group-by would drop those runs; they become :data:`NO_DATASET` /
    :data:`NO_STRATEGY`. ``attrs`` (the ``problems`` list) are kept.
    """
    t = table.copy()
    t.attrs = dict(table.attrs)
    for col, fill in (("dataset", NO_DATASET), ("strategy", NO_STRATEGY)):
        if col not in t.columns:
            t[col] = fill
        else:
            t[col] = [
                fill if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in t[col]
            ]
    return t


def _order(df, baseline: str | None):
    """Rows sorted by dataset, then the baseline first, then the other strategies by name."""
    if df.empty:
        return df
    keys = df.assign(
        _d=df["dataset"].astype(str),
        _b=df["strategy"] != baseline,
        _s=df["strategy"].astype(str),
    )
    return (
        keys.sort_values(["_d", "_b", "_s"]).drop(columns=["_d", "_b", "_s"]).reset_index(drop=True)
    )


def _front(df, *, keep_dataset: bool | None = None):
    """``Dataset`` and ``Strategy`` columns; ``Dataset`` dropped where no run named one."""
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    if keep_dataset is None:
        keep_dataset = bool((df["dataset"] != NO_DATASET).any()) if len(df) else False
    if keep_dataset:
        out["Dataset"] = df["dataset"].astype(str)
    out["Strategy"] = df["strategy"].astype(str)
    return out


def final_table(final, *, baseline: str | None = "random", metrics: Iterable[str] | None = None):
    """The last-round table (``report_tables(...)["final"]``) as text, one column per metric
    that has data: ``Dataset, Strategy, Runs, Labels, Accuracy, ...`` with "mean ± half-width".
    """
    import pandas as pd

    if final is None or len(final) == 0:
        return pd.DataFrame()
    final = _order(final, baseline)
    out = _front(final)
    out["Runs"] = final["n_runs"].astype(int).astype(str)
    out["Labels"] = [_num(v, "count") for v in final["labels"]]
    if metrics is None:
        from .experiments import REPORT_METRICS

        metrics = REPORT_METRICS
    for m in metrics:
        if m not in final.columns or not final[m].map(_finite).any():
            continue
        half = final.get(f"{m}_ci95", pd.Series([None] * len(final), index=final.index))
        out[METRIC_LABELS.get(m, m)] = [
            format_estimate(a, b) for a, b in zip(final[m], half, strict=True)
        ]
    return out


def labels_to_target_table(ltt, *, baseline: str | None = "random"):
    """``report_tables(...)["labels_to_target"]`` as text: target accuracy, the labels needed
    (mean over the runs that reached the target) and how many runs reached it."""
    import pandas as pd

    if ltt is None or len(ltt) == 0 or "note" in ltt.columns:
        return pd.DataFrame()
    ltt = _order(ltt, baseline)
    out = _front(ltt)
    out["Target accuracy"] = [_num(v) for v in ltt["target"]]
    out["Labels needed"] = [_num(v, "count") for v in ltt["labels_needed"]]
    out["Reached target"] = [
        f"{int(r)} of {int(n)}" for r, n in zip(ltt["reached"], ltt["runs"], strict=True)
    ]
    return out


def savings_table(savings):
    """``savings_vs_baseline`` as text: labels saved and the share of the baseline's labels
    saved ("mean ± half-width", paired by seed), the pairs used and those left out."""
    import pandas as pd

    if savings is None or len(savings) == 0 or "note" in savings.columns:
        return pd.DataFrame()
    savings = _order(savings, None)
    out = _front(savings)
    out["Labels saved"] = [
        format_estimate(a, b, kind="count")
        for a, b in zip(savings["saving_labels"], savings["ci95"], strict=True)
    ]
    out["Share of the baseline's labels saved"] = [
        format_estimate(a, b, kind="percent")
        for a, b in zip(savings["saving_frac"], savings["frac_ci95"], strict=True)
    ]
    out["Pairs"] = savings["n_pairs"].astype(int).astype(str)
    out["Censored pairs"] = savings["censored"].astype(int).astype(str)
    return out


def aulc_table(aulc, *, baseline: str | None = "random"):
    """``aulc`` as text: area under the learning curve (per label, so on the metric's scale)."""
    import pandas as pd

    if aulc is None or len(aulc) == 0:
        return pd.DataFrame()
    aulc = _order(aulc, baseline)
    out = _front(aulc)
    out["AULC"] = [format_estimate(a, b) for a, b in zip(aulc["aulc"], aulc["ci95"], strict=True)]
    out["Runs"] = aulc["n_runs"].astype(int).astype(str)
    return out


CLAIM_COLUMNS = _CLAIM_COLUMNS  # the columns of claims.claims_table


def claims_display(claims):
    """The claims table (``helpers.claims.claims_table``) as text: ``Claim, Source, Measure,
    Comparison, Dataset, Estimate [95% CI], n, Verdict, Note``, without empty columns
    (``Claim`` and ``Verdict`` always); the claims with a verdict from runs come first, those
    with ``no runs`` last, each group in the claims' own order."""
    import pandas as pd

    missing = [c for c in ("claim", "verdict") if c not in claims.columns]
    if missing:
        raise ValueError(f"claims: expected columns {list(CLAIM_COLUMNS)}, missing {missing}")

    def col(name):
        return (
            claims[name]
            if name in claims.columns
            else pd.Series([None] * len(claims), index=claims.index)
        )

    def text(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)

    out = pd.DataFrame(index=claims.index)
    for name in ("claim", "source", "measure", "comparison", "dataset"):
        out[name.capitalize()] = [text(v) for v in col(name)]
    out["Estimate [95% CI]"] = [
        format_interval(v, lo, hi)
        for v, lo, hi in zip(col("value"), col("ci_low"), col("ci_high"), strict=True)
    ]
    out["n"] = [_num(v, "count") if _finite(v) else "" for v in col("n")]
    out["Verdict"] = [text(v) for v in col("verdict")]
    out["Note"] = [text(v) for v in col("note")]
    keep = [
        c
        for c in out.columns
        if c in ("Claim", "Verdict") or out[c].map(lambda s: s not in ("", _DASH)).any()
    ]
    out = out[keep]
    # the claims these runs can answer first, those with no runs after (each group in order)
    out = out.iloc[sorted(range(len(out)), key=lambda i: out["Verdict"].iloc[i] == "no runs")]
    return out.reset_index(drop=True)


def problems_table(table):
    """Runs that are not complete, from ``collect``'s ``attrs["problems"]``: ``Run, Problem``."""
    import pandas as pd

    rows = []
    for p in table.attrs.get("problems", []):
        rid, _, what = str(p).partition(": ")
        rows.append({"Run": rid, "Problem": what or rid})
    return pd.DataFrame(rows, columns=["Run", "Problem"])


def runs_table(table, *, baseline: str | None = "random"):
    """Runs per (dataset, strategy) by status (``Complete``, ``Partial``, ``Failed``,
    ``Missing``; a status column only where some run has it) and the seeds."""
    import pandas as pd

    if table is None or len(table) == 0:
        return pd.DataFrame()
    runs = table.drop_duplicates("run_id")
    names = {"ok": "Complete", "partial": "Partial", "failed": "Failed", "missing": "Missing"}
    rows = []
    for (d, s), g in runs.groupby(["dataset", "strategy"], dropna=False):
        row = {"dataset": d, "strategy": s}
        for st, name in names.items():
            row[name] = int((g["status"] == st).sum())
        seeds = sorted({v for v in g["seed"] if _finite(v)}, key=float)
        row["Seeds"] = ", ".join(_num(v, "count") for v in seeds)
        rows.append(row)
    df = _order(pd.DataFrame(rows), baseline)
    out = _front(df)
    for name in names.values():
        if name == "Complete" or df[name].any():
            out[name] = df[name].astype(str)
    if (df["Seeds"] != "").any():
        out["Seeds"] = df["Seeds"]
    return out


def style_table(df, *, caption: str | None = None):
    """A Styler of a text table: no index, left-aligned text, an optional caption."""
    sty = df.style.hide(axis="index")
    if caption:
        sty = sty.set_caption(html.escape(caption))
    sty = sty.set_properties(**{"white-space": "nowrap"})  # "0.912 ± 0.013" on one line
    return sty.set_table_styles(
        [
            {
                "selector": "caption",
                "props": "caption-side: top; text-align: left; width: max-content; "
                "max-width: 90ch; font-size: 0.9em; color: #555; padding-bottom: 4px;",
            },
            {"selector": "th", "props": "text-align: left;"},
            {"selector": "td", "props": "text-align: left; vertical-align: top;"},
        ]
    )


def style_claims(display_df, *, caption: str | None = None):
    """:func:`style_table` of :func:`claims_display`'s table, the verdict cell coloured
    (green supported, red not supported, grey inconclusive / no runs)."""

    def colour(v):
        bg, fg = VERDICT_COLORS.get(str(v), ("", ""))
        return f"background-color: {bg}; color: {fg}; font-weight: 600;" if bg else ""

    sty = style_table(display_df, caption=caption)
    sty = sty.map(colour, subset=["Verdict"])
    # the text columns wrap; the estimate and the verdict stay on one line
    text = [c for c in display_df.columns if c not in ("Estimate [95% CI]", "n", "Verdict")]
    if text:
        sty = sty.set_properties(subset=text, **{"white-space": "normal", "min-width": "6em"})
    return sty


def note_html(text: str, *, title: str = "Not available") -> str:
    """An HTML note box saying why a figure or a table is missing."""
    return (
        '<div class="gapscope-note" style="border-left: 4px solid #999; background: #f5f5f5; '
        f'padding: 6px 10px; margin: 6px 0;"><b>{html.escape(title)}:</b> {html.escape(text)}</div>'
    )


# ------------------------------------------------------------------------- figures
def file_slug(name: Any) -> str:
    """A dataset name as part of a file name (``"my.mod:data"`` -> ``"my.mod_data"``)."""
    if name == NO_DATASET:
        return "all"
    s = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name)).strip("._")
    return s[:80] or "unnamed"


def strategy_colors(strategies: Iterable[str], *, baseline: str | None = "random") -> dict:
    """One colour per strategy, the same in every figure; the baseline is black."""
    from matplotlib import colormaps

    others = sorted({str(s) for s in strategies} - {baseline})
    cmap = colormaps["tab10"]
    out = {s: cmap(i % 10) for i, s in enumerate(others)}
    if baseline is not None:
        out[baseline] = (0.0, 0.0, 0.0, 1.0)
    return out


#: Metrics that are shares in [0, 1] (their interval bands are clipped to it).
_UNIT_METRICS = {
    "accuracy",
    "macro_f1",
    "auroc",
    "ece",
    "minority_recall",
    "rare_recall",
    "shifted_accuracy",
    "coverage",
    "evenness",
}


def learning_curve_figure(
    table,
    *,
    dataset: str,
    metric: str = "accuracy",
    baseline: str | None = "random",
    colors: Mapping[str, Any] | None = None,
    target: float | None = None,
):
    """Learning curves of one dataset: mean ``metric`` against labels, one line per strategy,
    a shaded 95% t-interval over seeds, the baseline black and dashed.

    ``table`` is ``collect``'s table (after :func:`prepare_table`); ``target``, if given,
    is drawn as a dotted horizontal line. Returns a matplotlib Figure (Agg canvas, not
    registered with pyplot).
    """
    import numpy as np
    from matplotlib.figure import Figure

    from .experiments import learning_curves

    curves = learning_curves(table[table["dataset"] == dataset], metric=metric)
    curves = curves[np.isfinite(curves["mean"].to_numpy(float))]
    if colors is None:
        colors = strategy_colors(curves["strategy"].unique(), baseline=baseline)
    fig = Figure(figsize=(5.6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    strategies = sorted(curves["strategy"].unique(), key=lambda s: (s != baseline, str(s)))
    for s in strategies:
        c = curves[curves["strategy"] == s].sort_values("labels")
        x, m = c["labels"].to_numpy(float), c["mean"].to_numpy(float)
        h = c["ci95"].to_numpy(float)
        is_base = s == baseline
        color = colors.get(s, "grey")
        ax.plot(
            x,
            m,
            color=color,
            lw=2.2 if is_base else 1.6,
            ls="--" if is_base else "-",
            marker="o",
            ms=3,
            label=f"{s} (baseline)" if is_base else str(s),
            zorder=3 if is_base else 2,
        )
        ok = np.isfinite(h)
        if ok.any():
            lo, hi = m - h, m + h
            if metric in _UNIT_METRICS:  # a share: the band stops at 0 and 1
                lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
            ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.15, lw=0, zorder=1)
    if target is not None and _finite(target):
        ax.axhline(float(target), color="grey", ls=":", lw=1, label="target", zorder=0)
    ax.set_xlabel("Labels")
    ax.set_ylabel(_AXIS_LABELS.get(metric, METRIC_LABELS.get(metric, metric)))
    if dataset != NO_DATASET:
        ax.set_title(str(dataset))
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    return fig


def savings_forest_figure(
    savings, *, baseline: str = "random", datasets: Sequence[str] | None = None
):
    """A forest plot of ``savings_vs_baseline``: per (dataset, strategy) the mean share of the
    baseline's labels saved (point) and its 95% t-interval (bar), a line at 0; censored pairs
    are noted in the row's label, and a row with no uncensored pair says so."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    s = _order(savings, None)
    if datasets is None:
        datasets = list(dict.fromkeys(s["dataset"]))
    many = len(datasets) > 1 or (len(datasets) == 1 and datasets[0] != NO_DATASET)
    n = len(s)
    fig = Figure(figsize=(7.0, 1.2 + 0.38 * max(n, 1)), layout="constrained")
    ax = fig.add_subplot()
    labels = []
    y = np.arange(n)[::-1]
    for yi, (_, r) in zip(y, s.iterrows(), strict=True):
        lab = f"{r['dataset']} · {r['strategy']}" if many else str(r["strategy"])
        pairs, cens = int(r["n_pairs"]), int(r["censored"])
        if cens:
            lab += f"  ({cens} of {pairs + cens} pairs censored)"
        labels.append(lab)
        if _finite(r["saving_frac"]):
            half = float(r["frac_ci95"]) if _finite(r["frac_ci95"]) else 0.0
            ax.errorbar(
                float(r["saving_frac"]),
                yi,
                xerr=half if half else None,
                fmt="o",
                color="#1f77b4",
                ecolor="#1f77b4",
                capsize=3,
                ms=5,
            )
        else:
            why = "all pairs censored" if cens else "no paired baseline runs"
            ax.text(0, yi, f"  {why}", va="center", ha="left", fontsize=8, color="grey")
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, n - 0.3)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(f"Share of {baseline}'s labels saved to reach the target (95% CI over seeds)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def save_figure(
    fig, figures_dir: str | os.PathLike, stem: str, *, dpi: int = 200
) -> dict[str, Path]:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.svg`` under ``figures_dir``; returns the paths.

    The SVG carries no date and fixed ids, so re-rendering the same runs gives the same file.
    """
    import matplotlib as mpl

    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{stem}.png", "svg": out / f"{stem}.svg"}
    with mpl.rc_context({"svg.hashsalt": stem, "svg.fonttype": "path"}):
        fig.savefig(paths["png"], dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        fig.savefig(paths["svg"], bbox_inches="tight", metadata={"Date": None})
    return paths


#: File-name prefixes of the figures the report writes (and clears before a new render).
FIGURE_PREFIXES = ("learning_curves_", "forest_savings")


def clear_figures(figures_dir: str | os.PathLike) -> None:
    """Remove the report's own figures (``learning_curves_*``, ``forest_savings*`` PNG and SVG)
    from ``figures_dir``, so a figure of a dataset no longer in the runs does not linger."""
    d = Path(figures_dir)
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.suffix in (".png", ".svg") and p.name.startswith(FIGURE_PREFIXES) and p.is_file():
            p.unlink()


def _png_width(data: bytes) -> int | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return int(struct.unpack(">I", data[16:20])[0])


def figure_row_html(paths: Sequence[str | os.PathLike], *, scale: float = 0.5) -> str:
    """The PNGs ``paths`` side by side (wrapping), embedded as data URIs: one offline HTML
    block. ``scale`` shrinks their display width (0.5: a 200-dpi file shown at 100 dpi)."""
    imgs = []
    for p in paths:
        data = Path(p).read_bytes()
        w = _png_width(data)
        width = f' width="{int(w * scale)}"' if w else ""
        b64 = base64.b64encode(data).decode("ascii")
        imgs.append(
            f'<img src="data:image/png;base64,{b64}"{width} alt="{html.escape(Path(p).stem)}" '
            'style="max-width: 100%; height: auto;">'
        )
    return (
        '<div style="display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start;">'
        + "".join(imgs)
        + "</div>"
    )
