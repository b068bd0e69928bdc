"""The design texts' claims, measured on a grid's results.

:func:`claims_table` turns the per-round table of :func:`gapscope.helpers.experiments.collect`
into one row per claim of the design texts (``../shared/papers``) and dataset: the measured
value, its 95% interval over seeds (paired by seed), the number of pairs and a verdict.

Verdicts (``CLAIMS`` holds each claim's direction and claimed size):

* ``supported`` -- the interval lies on the claimed side of no effect and the estimate
  reaches the claimed size;
* ``not supported`` -- the interval rules the claimed size out (its far end falls short of
  it), including an effect in the other direction;
* ``inconclusive`` -- anything between, or fewer than 3 pairs;
* ``no runs`` -- the grid holds no runs (or no metric) the claim needs; ``note`` says what.

A claim of "no worse" (``kind="no_worse"``) is supported when the interval's bad end stays
within the margin, not supported when the whole interval lies beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CLAIMS", "Claim", "claims_table", "format_claims"]

#: Columns of :func:`claims_table`.
COLUMNS = (
    "claim",
    "source",
    "measure",
    "comparison",
    "dataset",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "verdict",
    "note",
)

MIN_PAIRS = 3


@dataclass(frozen=True)
class Claim:
    """One claim: ``strategy`` against ``baseline`` on ``metric``.

    ``measure``: ``"diff"`` (strategy - baseline at the last round), ``"rel_reduction"``
    ((baseline - strategy) / baseline at the last round), ``"labels_saved"`` (share of the
    baseline's labels saved to reach ``target_fraction`` of the full-data accuracy),
    ``"value"`` (the strategy's own value, no baseline), ``"shift_drop"`` (relative accuracy
    drop from the test split to the shifted one), ``"mia_advantage"`` (2 AUC - 1 of the
    loss-threshold attack, strategy minus baseline, on ``metric``'s items).
    ``sign``: +1 when larger is the claimed direction, -1 when smaller is.
    """

    key: str
    text: str
    source: str
    strategy: str
    baseline: str | None
    metric: str
    measure: str
    size: float
    sign: int = 1
    kind: str = "effect"  # "effect" or "no_worse" (size is then the margin)
    datasets: tuple[str, ...] | None = None  # None: every dataset that has the runs


#: The claims the report measures, in the order they are printed.
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "labels_saved",
        "UMC (uncertainty + clusters + UCB) needs 30-50% fewer labels than random to reach "
        "95% of the full-data model",
        "001/002: 30-50% annotation cost reduction",
        "cluster_bandit",
        "random",
        "accuracy",
        "labels_saved",
        0.30,
    ),
    Claim(
        "labels_saved_umc_score",
        "Ranking by U(x) alone needs 30-50% fewer labels than random to reach 95% of the "
        "full-data model",
        "001/002: 30-50% annotation cost reduction",
        "umc_uncertainty",
        "random",
        "accuracy",
        "labels_saved",
        0.30,
    ),
    Claim(
        "minority_recall",
        "Minority-class recall at equal budget is >= 15 points above random",
        "000: +15-25% on under-represented cases",
        "cluster_bandit",
        "random",
        "minority_recall",
        "diff",
        0.15,
    ),
    Claim(
        "rare_recall",
        "Rare-group recall at equal budget is >= 15 points above random",
        "000: +15-25% on under-represented cases; 002: rare domains included",
        "cluster_bandit",
        "random",
        "rare_recall",
        "diff",
        0.15,
    ),
    Claim(
        "coverage_jsd",
        "JSD of the labeled set's class/group mix from the deployment (test) mix is >= 25% "
        "lower than random's",
        "002: -25% Jensen-Shannon divergence",
        "cluster_bandit",
        "random",
        "mix_jsd",
        "rel_reduction",
        0.25,
    ),
    Claim(
        "ece",
        "ECE at equal budget is lower than random's",
        "002/004: lower ECE",
        "cluster_bandit",
        "random",
        "ece",
        "diff",
        0.0,
        sign=-1,
    ),
    Claim(
        "shift_drop",
        "Accuracy under shift drops by <= 5% (relative) from the test split",
        "002: <= 5% degradation under domain shift",
        "cluster_bandit",
        None,
        "shifted_accuracy",
        "shift_drop",
        0.05,
        sign=-1,
        kind="no_worse",
    ),
    Claim(
        "shift_accuracy",
        "Accuracy under shift is >= 10% (relative) above random's",
        "000: 10-20% better on out-of-distribution test sets",
        "cluster_bandit",
        "random",
        "shifted_accuracy",
        "rel_gain",
        0.10,
    ),
    Claim(
        "synthesis_real_saved",
        "Real + active synthetic reaches 95% of the full-data model with 20-50% fewer real "
        "labels than real-only",
        "004: equal or better with 20-50% fewer real examples",
        "active_synthesis",
        "entropy",
        "accuracy",
        "labels_saved",
        0.20,
    ),
    Claim(
        "synthesis_vs_real_only",
        "Real + active synthetic is at least as accurate as real-only at equal real budget",
        "004: equal or better than real-only",
        "active_synthesis",
        "entropy",
        "accuracy",
        "diff",
        0.01,
        kind="no_worse",
    ),
    Claim(
        "synthesis_vs_random_synthetic",
        "Real + active synthetic is more accurate than real + random synthetic",
        "004: better than real + random synthetic",
        "active_synthesis",
        "random_synthesis",
        "accuracy",
        "diff",
        0.0,
    ),
    Claim(
        "counter_bias_gap",
        "Counter-bias generation narrows the subgroup accuracy gap against real-only",
        "000: value of counter-bias generation; 004: fairness across subgroups",
        "counter_bias_synthesis",
        "entropy",
        "subgroup_gap",
        "diff",
        0.0,
        sign=-1,
    ),
    Claim(
        "mia_real",
        "Active synthesis does not raise the membership-inference advantage on real training "
        "items (margin 0.05)",
        "004: privacy, membership inference on D_r",
        "active_synthesis",
        "entropy",
        "mia_auc_real",
        "mia_advantage",
        0.05,
        sign=-1,
        kind="no_worse",
    ),
    Claim(
        "mia_synthetic",
        "Synthetic training items leak no more membership than real ones (margin 0.05)",
        "004: privacy, membership inference on D_s",
        "active_synthesis",
        "active_synthesis",
        "mia_auc_synthetic",
        "mia_synthetic_vs_real",
        0.05,
        sign=-1,
        kind="no_worse",
    ),
)


def _t_interval(vals: Any) -> tuple[float, float, float, int]:
    from scipy import stats

    v = np.asarray(vals, dtype=float)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    m = float(v.mean())
    if n < 2:
        return m, np.nan, np.nan, n
    h = float(stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return m, m - h, m + h, n


def _verdict(claim: Claim, value: float, lo: float, hi: float, n: int) -> str:
    if n < MIN_PAIRS or not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    s = claim.sign
    # orient so that larger is the claimed direction
    v, a, b = (value, lo, hi) if s > 0 else (-value, -hi, -lo)
    if claim.kind == "no_worse":
        # "no worse than by more than size": bad end is the low end (after orienting)
        if a >= -claim.size:
            return "supported"
        if b < -claim.size:
            return "not supported"
        return "inconclusive"
    if a > 0 and v >= claim.size:
        return "supported"
    if b < claim.size:
        return "not supported"
    return "inconclusive"


def _last_rounds(table):
    ok = table[table["status"] == "ok"] if "status" in table.columns else table
    return ok.sort_values("round").groupby("run_id").tail(1)


def _per_seed(last, dataset: str, strategy: str, col: str):
    g = last[(last["dataset"] == dataset) & (last["strategy"] == strategy)]
    if col not in g.columns:
        return None
    return g.groupby("seed")[col].mean()


def _paired(a, b):
    seeds = sorted(set(a.index) & set(b.index))
    return np.array([a.loc[s] for s in seeds], float), np.array([b.loc[s] for s in seeds], float)


def _measure(claim: Claim, table, last, dataset: str, target_fraction: float):
    """(per-pair values, note) for one claim on one dataset, or (None, why)."""
    have = set(last.loc[last["dataset"] == dataset, "strategy"])
    need = {claim.strategy} | ({claim.baseline} if claim.baseline else set())
    missing = sorted(need - have)
    if missing:
        return None, f"no runs of {', '.join(missing)}"
    if claim.measure == "labels_saved":
        from .experiments import labels_to_target

        sub = table[table["dataset"] == dataset]
        try:
            per = labels_to_target(sub, target_fraction=target_fraction)
        except ValueError as exc:
            return None, str(exc)
        a = per[per["strategy"] == claim.strategy].groupby("seed")["labels_needed"].mean()
        b = per[per["strategy"] == claim.baseline].groupby("seed")["labels_needed"].mean()
        x, base = _paired(a, b)
        reached = np.isfinite(x) & np.isfinite(base)
        censored = int((~reached).sum())
        vals = (base[reached] - x[reached]) / base[reached]
        note = f"target {target_fraction:.0%} of full-data accuracy {per['full_accuracy'].iloc[0]:.3f}"
        if censored:
            only_ours = int((np.isfinite(x) & ~np.isfinite(base)).sum())
            note += (
                f"; {censored} of {len(x)} pairs censored (a run never reached the target"
                + (f"; {only_ours} where only {claim.baseline} missed it" if only_ours else "")
                + ")"
            )
        return vals, note
    if claim.measure == "shift_drop":
        acc = _per_seed(last, dataset, claim.strategy, "accuracy")
        sh = _per_seed(last, dataset, claim.strategy, "shifted_accuracy")
        if acc is None or sh is None or sh.isna().all():
            return None, "no shifted split in these runs"
        a, s = _paired(acc, sh)
        return (a - s) / a, "relative drop, test -> shifted split"
    if claim.measure == "mia_synthetic_vs_real":
        syn = _per_seed(last, dataset, claim.strategy, "mia_auc_synthetic")
        real = _per_seed(last, dataset, claim.strategy, "mia_auc_real")
        if syn is None or real is None or syn.isna().all():
            return None, "no synthetic training items in these runs"
        s, r = _paired(syn, real)
        return (2 * s - 1) - (2 * r - 1), "advantage 2 AUC - 1, synthetic minus real items"
    a = _per_seed(last, dataset, claim.strategy, claim.metric)
    b = _per_seed(last, dataset, claim.baseline, claim.metric) if claim.baseline else None
    if a is None or b is None or a.isna().all() or b.isna().all():
        return None, f"no {claim.metric} in these runs"
    x, base = _paired(a, b)
    if claim.measure == "diff":
        return x - base, "at the last round (equal budget)"
    if claim.measure == "mia_advantage":
        return (2 * x - 1) - (2 * base - 1), "advantage 2 AUC - 1 of a loss-threshold attack"
    if claim.measure == "rel_reduction":
        with np.errstate(divide="ignore", invalid="ignore"):
            return (base - x) / base, "relative reduction at the last round"
    if claim.measure == "rel_gain":
        with np.errstate(divide="ignore", invalid="ignore"):
            return (x - base) / base, "relative gain at the last round"
    raise ValueError(f"claim {claim.key!r}: unknown measure {claim.measure!r}")


def _row(c: Claim, dataset: str, value, lo, hi, n: int, verdict: str, note: str) -> dict:
    vs = f" vs {c.baseline}" if c.baseline and c.baseline != c.strategy else ""
    return {
        "claim": c.text,
        "source": c.source,
        "measure": f"{c.measure} of {c.metric}",
        "comparison": c.strategy + vs,
        "dataset": dataset,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "n": n,
        "verdict": verdict,
        "note": note,
    }


def claims_table(
    table,
    *,
    target_fraction: float = 0.95,
    baseline: str = "random",
    claims: tuple[Claim, ...] = CLAIMS,
):
    """One row per claim and dataset (see the module docstring for the verdicts).

    Parameters
    ----------
    table : DataFrame
        :func:`gapscope.helpers.experiments.collect`'s per-round table (``dataset``,
        ``strategy``, ``seed``, ``run_id``, ``round``, ``status`` and metric columns).
    target_fraction : float
        For the labels-saved claims: the share of the full-data accuracy to reach.
    baseline : str
        The strategy that stands for "random" in the claims that compare against it.

    Returns
    -------
    DataFrame with :data:`COLUMNS`; a claim no dataset can answer gets one ``no runs`` row.
    """
    import pandas as pd

    missing = {"strategy", "seed", "round", "run_id"} - set(table.columns)
    if missing:
        raise ValueError(f"table: expected columns {sorted(missing)} (from collect()), got none")
    table = table.copy()
    if "dataset" not in table.columns:
        table["dataset"] = "data"
    table["dataset"] = table["dataset"].fillna("data").astype(str)
    if baseline != "random":
        import dataclasses

        claims = tuple(
            dataclasses.replace(c, baseline=baseline) if c.baseline == "random" else c
            for c in claims
        )
    last = _last_rounds(table)
    datasets = sorted(last["dataset"].unique())
    rows = []
    for c in claims:
        got, why = [], []
        for d in c.datasets or datasets:
            vals, note = _measure(c, table, last, d, target_fraction)
            if vals is None:
                why.append(f"{d}: {note}")
                continue
            v, lo, hi, n = _t_interval(vals)
            short = "" if n >= MIN_PAIRS else f"; only {n} pair(s): at least {MIN_PAIRS} needed"
            got.append(_row(c, d, v, lo, hi, n, _verdict(c, v, lo, hi, n), note + short))
        if not got:
            why_text = "; ".join(why) if why else "no datasets in the table"
            got.append(_row(c, "", np.nan, np.nan, np.nan, 0, "no runs", why_text))
        rows.extend(got)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def format_claims(claims, *, width: int = 100) -> str:
    """The claims table as plain text for a terminal (value [95% CI], verdict, one line each)."""
    lines = []
    for r in claims.itertuples(index=False):
        if r.verdict == "no runs":
            val = "no runs"
        elif not np.isfinite(r.value):
            val = f"n={r.n} ({r.note})"
        else:
            ci = (
                f" [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                if np.isfinite(r.ci_low) and np.isfinite(r.ci_high)
                else ""
            )
            val = f"{r.value:+.3f}{ci} n={r.n}"
        head = f"{r.verdict.upper():<14} {r.dataset or '-':<10} {val}"
        text = r.claim if len(r.claim) <= width else r.claim[: width - 1] + "…"
        lines.append(f"{head}\n    {text} ({r.comparison})")
    return "\n".join(lines)
