"""helpers.density: exact KDE vs scikit-learn / float64 numpy, quadrature, sampling, low-density."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.special import logsumexp

from gapscope.helpers import density
from gapscope.helpers.density import (
    GaussianKDE,
    low_density_weights,
    sample_low_density,
    select_low_density,
)


def kde_reference(Z, Q, h):
    """float64 numpy brute force: log mean_j N(q; r_j, h^2 I)."""
    d = Z.shape[1]
    sq = ((Q[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    return logsumexp(-0.5 * sq / h**2, axis=1) - math.log(len(Z)) - 0.5 * d * math.log(2 * math.pi * h**2)


# --------------------------------------------------------------------------------------------
# density values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 5, 16])
@pytest.mark.parametrize("h", [0.1, 0.5, 2.0])
def test_matches_sklearn_kernel_density(rng, d, h):
    from sklearn.neighbors import KernelDensity

    Z = rng.normal(size=(600, d)) * 2.0 + 3.0
    # Queries near the data: scikit-learn's tree KDE with rtol=0 is only exact where the
    # density is not far in the tails (see the module notes), so compare there.
    Q = Z[:150] + rng.normal(size=(150, d)) * h
    ref = KernelDensity(bandwidth=h, kernel="gaussian", rtol=0).fit(Z).score_samples(Q)
    ours = GaussianKDE(bandwidth=h).fit(Z).score_samples(Q)
    assert ours.shape == (150,) and ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)
    ours64 = GaussianKDE(bandwidth=h, dtype="float64").fit(Z).score_samples(Q)
    np.testing.assert_allclose(ours64, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("d", "h", "spread"),
    [(2, 0.01, 3.0), (2, 0.3, 1.0), (8, 0.2, 5.0), (32, 1.5, 1.0), (64, 0.5, 1.0)],
)
def test_float32_within_1e3_of_float64_everywhere(rng, monkeypatch, d, h, spread):
    # Tails, far-away queries, tiny bandwidths (float64 fallback rows), many tiles and
    # query blocks (tile 64, chunk 50 rows) all exercised.
    monkeypatch.setattr(density, "_CPU_TILE", 64)
    monkeypatch.setenv("GAPSCOPE_CHUNK_ROWS", "50")
    Z = rng.normal(size=(700, d)) * spread
    Z[:50] += 40.0 * spread  # a far, small cluster
    Q = np.vstack([Z[::7], rng.normal(size=(60, d)) * spread * 3, Z[:10] + 0.5 * h])
    ref = kde_reference(Z, Q, h)
    ours = GaussianKDE(bandwidth=h, device="cpu").fit(Z).score_samples(Q)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)
    ours64 = GaussianKDE(bandwidth=h, device="cpu", dtype="float64").fit(Z).score_samples(Q)
    np.testing.assert_allclose(ours64, ref, rtol=0, atol=1e-6)


def test_query_far_from_subsample_takes_exact_path(rng, monkeypatch):
    # One reference point is isolated and not in the shift subsample: a query on it has a
    # best logit far above the subsample's, so the guard must send it to the exact path.
    monkeypatch.setattr(density, "_SHIFT_SAMPLE", 4)
    Z = rng.normal(size=(400, 3))
    Z[1] = [30.0, 0.0, 0.0]  # stride 100: index 1 is not sampled
    Q = np.array([[30.0, 0.0, 0.0], [30.1, 0.1, 0.0]])
    h = 0.05
    ref = kde_reference(Z, Q, h)
    ours = GaussianKDE(h).fit(Z).score_samples(Q)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree_and_tensors_stay_tensors(rng, device):
    torch = pytest.importorskip("torch")
    Z = rng.normal(size=(500, 4))
    Q = rng.normal(size=(80, 4))
    cpu = GaussianKDE(0.4, device="cpu").fit(Z).score_samples(Q)
    kde = GaussianKDE(0.4).fit(torch.as_tensor(Z, device=device))
    assert kde.device_.type == device
    out = kde.score_samples(torch.as_tensor(Q, device=device))
    assert isinstance(out, torch.Tensor) and out.device.type == device
    np.testing.assert_allclose(out.cpu().numpy(), cpu, atol=1e-3)
    np.testing.assert_allclose(cpu, kde_reference(Z, Q, 0.4), atol=1e-3)
    s = kde.sample(5, random_state=0)
    assert isinstance(s, torch.Tensor) and s.shape == (5, 4)


def test_integrates_to_one_1d(rng):
    from scipy.integrate import simpson

    Z = rng.normal(size=(200, 1)) * 1.5
    h = 0.3
    kde = GaussianKDE(h).fit(Z)
    x = np.linspace(Z.min() - 12 * h, Z.max() + 12 * h, 20001)  # step ~ h / 400
    total = simpson(np.exp(kde.score_samples(x[:, None])), x=x)
    assert abs(total - 1.0) < 1e-5, total


def test_integrates_to_one_2d(rng):
    Z = rng.normal(size=(150, 2)) * [1.0, 0.5]
    h = 0.25
    kde = GaussianKDE(h).fit(Z)
    gx = np.linspace(Z[:, 0].min() - 10 * h, Z[:, 0].max() + 10 * h, 301)
    gy = np.linspace(Z[:, 1].min() - 10 * h, Z[:, 1].max() + 10 * h, 301)
    X, Y = np.meshgrid(gx, gy, indexing="ij")
    p = np.exp(kde.score_samples(np.column_stack([X.ravel(), Y.ravel()]))).reshape(X.shape)
    total = np.trapezoid(np.trapezoid(p, gy, axis=1), gx)
    assert abs(total - 1.0) < 2e-3, total


# --------------------------------------------------------------------------------------------
# bandwidth rules
# --------------------------------------------------------------------------------------------


def test_bandwidth_rules(rng):
    from scipy.stats import gaussian_kde
    from sklearn.neighbors import KernelDensity

    Z = rng.normal(size=(400, 3)) * [1.0, 2.0, 3.0]
    n, d = Z.shape
    g = gaussian_kde(Z.T)
    assert math.isclose(density.scott_factor(n, d), g.scotts_factor(), rel_tol=1e-12)
    assert math.isclose(density.silverman_factor(n, d), g.silverman_factor(), rel_tol=1e-12)
    sigma = math.sqrt(Z.var(axis=0).mean())
    assert math.isclose(GaussianKDE("scott").fit(Z).bandwidth_, g.scotts_factor() * sigma, rel_tol=1e-9)
    assert math.isclose(
        GaussianKDE("silverman").fit(Z).bandwidth_, g.silverman_factor() * sigma, rel_tol=1e-9
    )
    # standardize=True + "scott" is scikit-learn's bandwidth="scott" on StandardScaler output.
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(Z)
    sk = KernelDensity(bandwidth="scott", rtol=0).fit(sc.transform(Z))
    ours = GaussianKDE("scott", standardize=True).fit(Z)
    assert math.isclose(ours.bandwidth_, sk.bandwidth_, rel_tol=1e-9)
    Q = Z[:40] + 0.1
    ref = sk.score_samples(sc.transform(Q)) - np.log(sc.scale_).sum()  # Jacobian back to Z units
    np.testing.assert_allclose(ours.score_samples(Q), ref, atol=1e-3)


def test_cv_bandwidth_maximises_held_out_likelihood(rng):
    from sklearn.neighbors import KernelDensity

    Z = np.concatenate([rng.normal(size=(150, 1)) * 0.2, rng.normal(size=(150, 1)) + 4])
    kde = GaussianKDE("cv", random_state=7).fit(Z)
    # Recompute the 3-fold held-out log-likelihood with scikit-learn on the same folds.
    perm = np.random.default_rng(7).permutation(len(Z))
    folds = np.array_split(perm, 3)
    ref = []
    for h in kde.cv_grid_:
        tot = 0.0
        for f in folds:
            train = np.setdiff1d(perm, f)
            tot += KernelDensity(bandwidth=h, rtol=0).fit(Z[train]).score(Z[f])
        ref.append(tot)
    np.testing.assert_allclose(kde.cv_scores_, ref, rtol=1e-5)
    best = kde.cv_grid_[int(np.argmax(ref))]
    n_train = len(Z) - len(folds[0])
    assert math.isclose(kde.bandwidth_, best * (n_train / len(Z)) ** (1 / 5), rel_tol=1e-12)
    # bimodal with a narrow mode: CV should pick well below Scott's rule
    assert kde.bandwidth_ < GaussianKDE("scott").fit(Z).bandwidth_


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------


def _kde_cdf_1d(Z, h, x):
    return stats.norm.cdf((x[:, None] - Z[None, :, 0]) / h).mean(axis=1)


def test_sample_matches_density_ks(rng):
    # One-sample Kolmogorov-Smirnov against the KDE's exact CDF (mean of normal CDFs);
    # the negative control (draws with a 2x wider kernel) must be rejected.
    Z = np.concatenate([rng.normal(size=(100, 1)), rng.normal(size=(60, 1)) * 0.3 + 4])
    h = 0.4
    kde = GaussianKDE(h).fit(Z)
    draws = kde.sample(10000, random_state=1)[:, 0]
    res = stats.kstest(draws, lambda x: _kde_cdf_1d(Z, h, np.atleast_1d(x)))
    assert res.pvalue > 0.01, res
    wide = kde._sample(10000, random_state=1, widen=2.0)[:, 0]
    bad = stats.kstest(wide, lambda x: _kde_cdf_1d(Z, h, np.atleast_1d(x)))
    assert bad.pvalue < 1e-4, bad


def test_sample_moments_standardized(rng):
    # In d = 3 with standardize=True: E[x] = mean(Z); Cov[x] = Cov(Z) + diag(scale^2) h^2.
    Z = rng.normal(size=(300, 3)) * [1.0, 5.0, 0.2] + [1.0, -2.0, 0.0]
    kde = GaussianKDE(0.5, standardize=True).fit(Z)
    x = kde.sample(40000, random_state=3)
    cov = np.cov(Z.T, bias=True) + np.diag(Z.std(axis=0) ** 2) * 0.25
    assert (np.abs(x.mean(axis=0) - Z.mean(axis=0)) < 4 * np.sqrt(np.diag(cov) / 40000)).all()
    np.testing.assert_allclose(np.cov(x.T), cov, rtol=0.05, atol=0.02 * np.abs(cov).max())


# --------------------------------------------------------------------------------------------
# low-density weights, selection and sampling
# --------------------------------------------------------------------------------------------


def test_low_density_weights_formula_and_extremes():
    lp = np.array([-1e4, -50.0, -3.0, 0.0, 2.0, 1e4, -np.inf])
    eps = 1e-3
    w = low_density_weights(lp, eps=eps)
    assert np.isfinite(w).all() and math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    # float64 reference on the moderate entries (direct formula is fine there)
    mod = slice(1, 5)
    direct = 1.0 / (np.exp(lp[mod]) + eps)
    np.testing.assert_allclose(w[mod] / w[mod].sum(), direct / direct.sum(), rtol=1e-12)
    assert math.isclose(w[0], w[-1], rel_tol=1e-12)  # both are ~1/eps
    assert w[5] > 0 or w[5] == 0.0  # finite, may underflow to 0 at p = e^10000
    wt = low_density_weights(lp[mod], eps=eps, temperature=2.0)
    np.testing.assert_allclose(wt, np.sqrt(direct) / np.sqrt(direct).sum(), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e4, 1e4)),
    st.floats(1e-30, 1e3),
    st.floats(0.05, 20.0),
)
def test_low_density_weights_properties(lp, eps, temperature):
    w = low_density_weights(lp, eps=eps, temperature=temperature)
    assert np.isfinite(w).all() and (w >= 0).all()
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-9)
    order = np.argsort(lp, kind="stable")
    assert (np.diff(w[order]) <= 1e-15).all()  # non-increasing in log p


def test_gumbel_top_n_inclusion_probabilities():
    # n = 1 draws follow the weights exactly: chi-square goodness of fit.
    w = np.array([0.5, 0.25, 0.15, 0.07, 0.03])
    gen = np.random.default_rng(0)
    counts = np.bincount(
        [density._gumbel_top_n(np.log(w), 1, gen)[0] for _ in range(20000)], minlength=5
    )
    assert stats.chisquare(counts, 20000 * w).pvalue > 1e-3


def test_select_low_density_lands_lower_than_random(rng):
    # Statistic: one-sided Mann-Whitney U on the true log-density of the selected points vs
    # an equally sized uniform random selection; must be significant at 1e-6.
    Z = np.concatenate([rng.normal(size=(1800, 2)), rng.normal(size=(200, 2)) * 3])
    kde = GaussianKDE(0.3).fit(Z)
    log_p = kde.score_samples(Z)
    eps = float(np.exp(np.quantile(log_p, 0.05)))
    idx = select_low_density(Z, kde, 150, eps=eps, random_state=0)
    assert idx.dtype == np.int64 and len(np.unique(idx)) == 150
    rnd = np.random.default_rng(1).choice(len(Z), 150, replace=False)
    res = stats.mannwhitneyu(log_p[idx], log_p[rnd], alternative="less")
    assert res.pvalue < 1e-6, res
    # temperature -> 0: exactly the lowest-density points (ties aside)
    cold = select_low_density(Z, kde, 20, eps=1e-300, temperature=1e-6, random_state=0)
    assert set(cold) == set(np.argsort(log_p)[:20])
    # reproducible
    again = select_low_density(Z, kde, 150, eps=eps, random_state=0)
    np.testing.assert_array_equal(idx, again)


@pytest.mark.parametrize("proposal", ["kde", "box"])
def test_sample_low_density_is_lower_than_kde_samples(rng, proposal):
    Z = rng.normal(size=(800, 2))
    kde = GaussianKDE(0.3).fit(Z)
    eps = float(np.exp(np.quantile(kde.score_samples(Z), 0.05)))
    new = sample_low_density(kde, 200, eps=eps, proposal=proposal, random_state=0)
    assert new.shape == (200, 2) and np.isfinite(new).all()
    plain = kde.sample(200, random_state=0)
    res = stats.mannwhitneyu(kde.score_samples(new), kde.score_samples(plain), alternative="less")
    assert res.pvalue < 1e-6, res
    if proposal == "box":
        ext = Z.max(0) - Z.min(0)
        assert (new >= Z.min(0) - 0.1 * ext - 1e-12).all() and (new <= Z.max(0) + 0.1 * ext + 1e-12).all()


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_bad_input(rng):
    Z = rng.normal(size=(50, 3))
    bad = Z.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"Z: expected finite values, got NaN or inf in 1 row"):
        GaussianKDE().fit(bad)
    with pytest.raises(ValueError, match=r"Z: expected at least 2 row"):
        GaussianKDE().fit(Z[:1])
    with pytest.raises(ValueError, match=r"Z: expected an array with ndim"):
        GaussianKDE().fit(Z[:, 0])
    for bw in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="bandwidth: expected a finite number > 0"):
            GaussianKDE(bandwidth=bw).fit(Z)
    with pytest.raises(ValueError, match=r"bandwidth: expected one of"):
        GaussianKDE(bandwidth="scot").fit(Z)
    with pytest.raises(TypeError, match="bandwidth"):
        GaussianKDE(bandwidth=[1.0]).fit(Z)
    with pytest.raises(ValueError, match="not fitted"):
        GaussianKDE().score_samples(Z)
    kde = GaussianKDE(0.5).fit(Z)
    with pytest.raises(ValueError, match=r"Q: expected 3 features \(as in fit\), got shape \(4, 2\)"):
        kde.score_samples(Z[:4, :2])
    with pytest.raises(ValueError, match="Q: expected finite"):
        kde.score_samples(bad)
    with pytest.raises(ValueError, match="identical rows"):
        GaussianKDE("scott").fit(np.ones((10, 2)))
    with pytest.raises(ValueError, match="constant feature"):
        GaussianKDE(1.0, standardize=True).fit(np.column_stack([Z[:, 0], np.ones(50)]))
    for eps in (0.0, -1e-3):
        with pytest.raises(ValueError, match="eps: expected a finite number > 0"):
            low_density_weights(np.zeros(3), eps=eps)
        with pytest.raises(ValueError, match="eps"):
            select_low_density(Z, kde, 3, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            sample_low_density(kde, 3, eps=eps)
    with pytest.raises(ValueError, match=r"n: expected at most the pool size 50"):
        select_low_density(Z, kde, 51, eps=1e-3)
    with pytest.raises(ValueError, match="log_p: expected no NaN"):
        low_density_weights(np.array([0.0, np.nan]), eps=1.0)
    with pytest.raises(ValueError, match="proposal: expected one of"):
        sample_low_density(kde, 3, eps=1.0, proposal="grid")
    with pytest.raises(ValueError, match="n_samples: expected a positive int"):
        kde.sample(0)
    with pytest.raises(ValueError, match="n_candidates: expected at least n=5"):
        sample_low_density(kde, 5, eps=1.0, n_candidates=3)
