"""Tests for helpers.selection: every strategy, the greedy objectives, BADGE, TypiClust, balance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import DEVICES
from hypothesis import given, settings
from hypothesis import strategies as st

from gapscope.helpers import selection
from gapscope.helpers.bandits import UCB1, ThompsonSampling
from gapscope.helpers.selection import (
    STRATEGIES,
    badge,
    balance,
    cluster_bandit,
    cluster_inverse_weights,
    kcenter,
    select,
    typiclust,
    uncertainty_diversity,
)


def _pool(rng, n=120, d=5, c=4, m=3):
    Z = rng.normal(size=(n, d))
    logits = rng.normal(size=(m, n, c)) * 2.0
    P = np.exp(logits)
    P /= P.sum(-1, keepdims=True)
    ent = -(P.mean(0) * np.log(P.mean(0))).sum(-1)
    logp = -0.5 * (Z**2).sum(1)
    return Z, P, ent, logp


def _inputs(Z, P, ent, logp, labeled=None):
    return dict(scores=ent, embeddings=Z, probs=P, log_density=logp, labeled_mask=labeled)


ALL = sorted(STRATEGIES)


# ----------------------------------------------------------------------------------------
# the common contract
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ALL)
def test_every_strategy_returns_unique_valid_unlabeled_indices(strategy, rng):
    Z, P, ent, logp = _pool(rng, n=80)
    labeled = np.zeros(len(Z), bool)
    labeled[rng.choice(len(Z), 15, replace=False)] = True
    kw = _inputs(Z, P, ent, logp, labeled)
    out = select(strategy, 12, random_state=3, **kw)
    assert out.dtype == np.int64 and out.shape == (12,)
    assert np.unique(out).size == 12
    assert ((out >= 0) & (out < len(Z))).all()
    assert not labeled[out].any()
    # deterministic given random_state, also through a Generator with the same seed
    np.testing.assert_array_equal(out, select(strategy, 12, random_state=3, **kw))
    np.testing.assert_array_equal(
        out, select(strategy, 12, random_state=np.random.default_rng(3), **kw)
    )
    # budget: all unlabeled items is fine, one more is a clear error, <= 0 an error
    n_avail = int((~labeled).sum())
    full = select(strategy, n_avail, random_state=0, **kw)
    assert sorted(full.tolist()) == np.flatnonzero(~labeled).tolist()
    with pytest.raises(ValueError, match=r"budget: expected at most the 65 unlabeled"):
        select(strategy, n_avail + 1, random_state=0, **kw)
    with pytest.raises(ValueError, match="budget"):
        select(strategy, 0, random_state=0, **kw)
    with pytest.raises(TypeError, match="budget"):
        select(strategy, 2.0, random_state=0, **kw)


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ValueError, match=r"strategy: expected one of \['badge', 'cluster_bandit'"):
        select("coreset", 3, scores=np.ones(5))


def test_mismatched_pool_arrays_and_bad_mask_are_errors(rng):
    Z, P, ent, logp = _pool(rng, n=20)
    with pytest.raises(ValueError, match="one pool size"):
        select("uncertainty", 3, scores=ent[:10], embeddings=Z)
    with pytest.raises(ValueError, match="labeled_mask: expected a bool array of shape"):
        select("random", 3, scores=ent, labeled_mask=np.zeros(20, int))
    with pytest.raises(ValueError, match="at least one pool array"):
        select("random", 3)
    with pytest.raises(ValueError, match="embeddings"):
        select("kcenter", 3, scores=ent)
    with pytest.raises(ValueError, match="finite"):
        select("uncertainty", 3, scores=np.r_[np.nan, ent[1:]])


# ----------------------------------------------------------------------------------------
# uncertainty, margin, density-weighted against numpy references
# ----------------------------------------------------------------------------------------
def test_uncertainty_is_top_k_and_scores_probs_with_scoring(rng):
    Z, P, ent, logp = _pool(rng, n=200)
    out = select("uncertainty", 10, scores=ent, random_state=0)
    assert out.tolist() == np.argsort(-ent)[:10].tolist()
    # from probs: helpers.scoring's predictive entropy = the numpy entropy of the mean
    out_p = select("uncertainty", 10, probs=P, random_state=0)
    assert out_p.tolist() == np.argsort(-ent)[:10].tolist()
    # BALD via the score option, against a numpy reference
    mi = ent - (-(P * np.log(P)).sum(-1)).mean(0)
    out_mi = select("uncertainty", 10, probs=P, score="mutual_information", random_state=0)
    assert out_mi.tolist() == np.argsort(-mi)[:10].tolist()
    with pytest.raises(ValueError, match="score"):
        select("uncertainty", 3, probs=P, score="nope")


def test_margin_matches_numpy(rng):
    _, P, _, _ = _pool(rng, n=200)
    pm = np.sort(P.mean(0), axis=1)
    m = pm[:, -1] - pm[:, -2]
    out = select("margin", 15, probs=P, random_state=0)
    assert out.tolist() == np.argsort(m)[:15].tolist()


def test_ties_are_broken_at_random_not_by_position():
    s = np.ones(100)
    picks = {tuple(select("uncertainty", 5, scores=s, random_state=k).tolist()) for k in range(5)}
    assert len(picks) == 5
    assert select("uncertainty", 5, scores=s, random_state=0).tolist() != [0, 1, 2, 3, 4]


@pytest.mark.parametrize("beta", [-1.0, 0.0, 0.5, 2.0])
def test_density_weighted_matches_reference(beta, rng):
    Z, P, ent, logp = _pool(rng, n=200)
    out = select("density_weighted", 20, scores=ent, log_density=logp, beta=beta, random_state=0)
    ref = np.argsort(-(ent * np.exp(beta * logp)))[:20]
    assert out.tolist() == ref.tolist()
    # extreme log-densities do not overflow
    out2 = select("density_weighted", 5, scores=ent, log_density=logp * 1e4, beta=beta)
    assert np.unique(out2).size == 5
    with pytest.raises(ValueError, match="non-negative"):
        select("density_weighted", 3, scores=ent - 10, log_density=logp)


def test_density_weighted_fits_a_kde_when_no_log_density(rng):
    from gapscope.helpers.density import GaussianKDE

    Z, P, ent, logp = _pool(rng, n=150)
    out = select("density_weighted", 10, scores=ent, embeddings=Z, beta=1.0, random_state=0)
    lp = GaussianKDE().fit(Z).score_samples(Z)
    assert out.tolist() == np.argsort(-(ent * np.exp(lp)))[:10].tolist()


def test_low_density_single_draw_follows_density_weights():
    from gapscope.helpers.density import low_density_weights

    logp = np.log(np.array([0.05, 0.2, 0.5, 1.0, 2.0]))
    w = low_density_weights(logp, eps=0.1, temperature=1.0)  # the reference distribution
    rng = np.random.default_rng(0)
    n = 4000
    picks = np.array([select("low_density", 1, log_density=logp, eps=0.1, random_state=rng)[0]
                      for _ in range(n)])
    freq = np.bincount(picks, minlength=5) / n
    sd = np.sqrt(w * (1 - w) / n)
    assert (np.abs(freq - w) < 5 * sd).all(), (freq, w)


def test_low_density_prefers_sparse_points(rng):
    Z, P, ent, logp = _pool(rng, n=300)
    # temperature -> 0 gives the lowest-density points (Gumbel noise is negligible)
    out = select("low_density", 10, log_density=logp, eps=1e-300, temperature=1e-6, random_state=0)
    assert sorted(out.tolist()) == sorted(np.argsort(logp)[:10].tolist())
    # at T = 1 the sparse half is chosen much more often than the dense half
    lab = np.zeros(300, bool)
    hits = np.zeros(300)
    for k in range(30):
        hits[select("low_density", 10, log_density=logp, labeled_mask=lab, random_state=k)] += 1
    sparse = logp < np.median(logp)
    assert hits[sparse].sum() > 3 * hits[~sparse].sum()


# ----------------------------------------------------------------------------------------
# k-center
# ----------------------------------------------------------------------------------------
def _radius(X, centers, targets):
    d = np.sqrt(((X[targets][:, None, :] - X[centers][None]) ** 2).sum(-1))
    return d.min(1).max()


@pytest.mark.parametrize("seed", range(6))
def test_kcenter_radius_within_2x_of_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(13, 3)) * rng.uniform(0.5, 3, size=3)
    labeled = np.zeros(13, bool)
    if seed % 2:
        labeled[[0, 5]] = True
    avail = np.flatnonzero(~labeled)
    lab = np.flatnonzero(labeled)
    k = 3
    info: dict = {}
    out = kcenter(k, embeddings=X, labeled_mask=labeled, random_state=seed, info=info)
    got = _radius(X, np.r_[lab, out], avail)
    assert info["radius"] == pytest.approx(got, rel=1e-4)
    best = min(_radius(X, np.r_[lab, list(s)], avail) for s in itertools.combinations(avail, k))
    assert got <= 2.0 * best + 1e-9, (got, best)


def _kcenter_reference(X, k, labeled, rng):
    """Naive float64 greedy k-center (difference form)."""
    chosen = list(np.flatnonzero(labeled))
    sel = []
    if not chosen:
        first = int(rng.choice(np.flatnonzero(~labeled)))
        chosen.append(first)
        sel.append(first)
    while len(sel) < k:
        d = np.sqrt(((X[:, None, :] - X[chosen][None]) ** 2).sum(-1)).min(1)
        d[chosen] = -1
        i = int(np.argmax(d))
        chosen.append(i)
        sel.append(i)
    return sel


@pytest.mark.parametrize("with_labeled", [False, True])
def test_kcenter_matches_naive_float64_reference(with_labeled, rng):
    X = rng.normal(size=(300, 8))
    labeled = np.zeros(300, bool)
    if with_labeled:
        labeled[rng.choice(300, 20, replace=False)] = True
    out = kcenter(25, embeddings=X, labeled_mask=labeled, random_state=5)
    ref = _kcenter_reference(X, 25, labeled, np.random.default_rng(5))
    assert out.tolist() == ref


def test_kcenter_chunked_labeled_distances(monkeypatch, rng):
    X = rng.normal(size=(500, 6))
    labeled = np.zeros(500, bool)
    labeled[:40] = True
    full = kcenter(10, embeddings=X, labeled_mask=labeled, random_state=0)
    monkeypatch.setenv("GAPSCOPE_CHUNK_ROWS", "37")  # many small row blocks
    assert kcenter(10, embeddings=X, labeled_mask=labeled, random_state=0).tolist() == full.tolist()


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_torch_path_matches_numpy(device, rng):
    import torch

    X = rng.normal(size=(400, 7)).astype(np.float32)
    u = rng.random(400)
    labeled = np.zeros(400, bool)
    labeled[:10] = True
    Xt = torch.as_tensor(X, device=device)
    pool = selection._Pool(30, embeddings=X, labeled_mask=labeled)
    for util, lam in ((None, 0.0), (u, 2.0)):
        a, ia = selection._greedy(selection._NumpyOps(X), pool, np.random.default_rng(0), utility=util, lam=lam)
        b, ib = selection._greedy(selection._TorchOps(Xt), pool, np.random.default_rng(0), utility=util, lam=lam)
        assert a.tolist() == b.tolist()
    # the public functions follow the data's device
    np.testing.assert_array_equal(
        kcenter(30, embeddings=Xt, labeled_mask=labeled), kcenter(30, embeddings=X, labeled_mask=labeled)
    )


# ----------------------------------------------------------------------------------------
# uncertainty + lambda * diversity
# ----------------------------------------------------------------------------------------
def _ud_reference(X, u, k, lam, labeled):
    """Naive float64 greedy of U' + lam * d / s (see the docstring of uncertainty_diversity)."""
    avail = ~labeled
    un = (u - u[avail].min()) / (u[avail].max() - u[avail].min())
    chosen = list(np.flatnonzero(labeled))
    sel = []
    if not chosen:
        i = int(np.argmax(np.where(avail, un, -np.inf)))
        chosen.append(i)
        sel.append(i)
    d = np.sqrt(((X[:, None, :] - X[chosen][None]) ** 2).sum(-1)).min(1)
    blocked = np.zeros(len(X), bool)
    blocked[chosen] = True
    s = np.median(d[~blocked])
    while len(sel) < k:
        d = np.sqrt(((X[:, None, :] - X[chosen][None]) ** 2).sum(-1)).min(1)
        obj = np.where(np.isin(np.arange(len(X)), chosen), -np.inf, un + lam * d / s)
        i = int(np.argmax(obj))
        chosen.append(i)
        sel.append(i)
    return sel


@pytest.mark.parametrize("lam", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("with_labeled", [False, True])
def test_uncertainty_diversity_matches_reference(lam, with_labeled, rng):
    X = rng.normal(size=(250, 6))
    u = rng.random(250)
    labeled = np.zeros(250, bool)
    if with_labeled:
        labeled[rng.choice(250, 12, replace=False)] = True
    out = uncertainty_diversity(20, scores=u, embeddings=X, labeled_mask=labeled, lam=lam, random_state=0)
    assert out.tolist() == _ud_reference(X, u, 20, lam, labeled)


def test_uncertainty_diversity_limits(rng):
    X = rng.normal(size=(200, 4))
    u = rng.random(200)
    top = select("uncertainty", 15, scores=u, random_state=0)
    assert uncertainty_diversity(15, scores=u, embeddings=X, lam=0.0, random_state=0).tolist() == top.tolist()
    labeled = np.zeros(200, bool)
    labeled[:5] = True
    kc = kcenter(15, embeddings=X, labeled_mask=labeled)
    ud = uncertainty_diversity(15, scores=u, embeddings=X, labeled_mask=labeled, lam=1e6)
    assert ud.tolist() == kc.tolist()


def test_uncertainty_diversity_avoids_planted_duplicates(rng):
    # 40 distinct points, plus 8 uncertain "hot" points each duplicated 5 times (tiny jitter)
    base = rng.normal(size=(40, 6)) * 3
    hot = rng.normal(size=(8, 6)) * 3
    dup = np.repeat(hot, 5, axis=0) + 1e-3 * rng.normal(size=(40, 6))
    X = np.vstack([base, dup])
    u = np.r_[rng.uniform(0.3, 0.7, 40), rng.uniform(0.85, 1.0, 40)]
    group = np.r_[np.arange(40), 40 + np.repeat(np.arange(8), 5)]  # duplicates share a group

    def near_dups(idx):
        return len(idx) - np.unique(group[idx]).size

    k = 16
    unc = select("uncertainty", k, scores=u, random_state=0)
    assert near_dups(unc) >= 8  # top-16 of 40 hot duplicates: at least 8 repeats
    # measured on this pool: lam 0.05 -> 8 repeats, 1 -> 3, 2 and 3 -> 0
    ud1 = select("uncertainty_diversity", k, scores=u, embeddings=X, lam=1.0, random_state=0)
    assert near_dups(ud1) < near_dups(unc)
    ud3 = select("uncertainty_diversity", k, scores=u, embeddings=X, lam=3.0, random_state=0)
    assert near_dups(ud3) == 0
    assert (ud3 >= 40).sum() == 8  # ... while still taking every distinct hot point
    ud_small = select("uncertainty_diversity", k, scores=u, embeddings=X, lam=0.05, random_state=0)
    assert near_dups(ud_small) > near_dups(ud1)


# ----------------------------------------------------------------------------------------
# cluster_bandit (UMC)
# ----------------------------------------------------------------------------------------
def _blobs(rng, n_per=60, centers=5, d=6):
    C = rng.normal(size=(centers, d)) * 6
    Z = np.vstack([c + rng.normal(size=(n_per, d)) for c in C])
    return Z, np.repeat(np.arange(centers), n_per)


@pytest.mark.parametrize("bandit", ["ucb1", "thompson"])
def test_cluster_bandit_allocation_and_within_cluster_order(bandit, rng):
    Z, _ = _blobs(rng)
    u = rng.random(len(Z))
    info: dict = {}
    out = cluster_bandit(20, scores=u, embeddings=Z, top_k=100, n_clusters=5,
                         bandit=bandit, random_state=0, info=info)
    assert out.shape == (20,) and np.unique(out).size == 20
    alloc, labels, cand = info["allocation"], info["cluster_labels"], info["candidates"]
    assert alloc.sum() == 20 and alloc.shape == (5,)
    assert set(cand.tolist()) == set(np.argsort(-u)[:100].tolist())
    assert np.bincount(info["arms"], minlength=5).tolist() == alloc.tolist()
    for c in range(5):
        members = cand[labels == c]
        chosen = out[info["arms"] == c]
        # the b_c most uncertain members of cluster c
        assert sorted(chosen.tolist()) == sorted(members[np.argsort(-u[members])[: alloc[c]]].tolist())
    if bandit == "ucb1":  # fresh UCB1: round robin over unpulled arms -> 4 each
        assert alloc.tolist() == [4] * 5


def test_cluster_bandit_reuses_and_rematches_a_bandit(rng):
    Z, _ = _blobs(rng)
    u = rng.random(len(Z))
    b = ThompsonSampling(5, random_state=0)
    info1: dict = {}
    cluster_bandit(10, scores=u, embeddings=Z, n_clusters=5, bandit=b, random_state=1, info=info1)
    b.update_many(np.where(info1["allocation"] > 0, 0.9, np.nan))
    info2: dict = {}
    lab = np.zeros(len(Z), bool)
    lab[cluster_bandit(10, scores=u, embeddings=Z, n_clusters=5, bandit=b, random_state=1)] = True
    out = cluster_bandit(10, scores=u, embeddings=Z, labeled_mask=lab, n_clusters=4, bandit=b,
                         previous_centers=info1["centers"], random_state=2, info=info2)
    assert b.n_arms == 4 and info2["mapping"].shape == (4,)
    assert not lab[out].any()
    with pytest.raises(ValueError, match="n_arms"):
        cluster_bandit(10, scores=u, embeddings=Z, n_clusters=3, bandit=UCB1(7), random_state=0)
    with pytest.raises(ValueError, match="top_k"):
        cluster_bandit(10, scores=u, embeddings=Z, top_k=5)


# ----------------------------------------------------------------------------------------
# TypiClust and BADGE
# ----------------------------------------------------------------------------------------
def test_typicality_matches_sklearn_knn(rng):
    from sklearn.neighbors import NearestNeighbors

    X = rng.normal(size=(90, 5))
    k = 20
    d, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    ref = 1.0 / (d[:, 1:].mean(1) + 1e-12)
    np.testing.assert_allclose(selection._typicality(X, k), ref, rtol=1e-9)
    # small clusters use k = |c| // 2
    d, _ = NearestNeighbors(n_neighbors=4).fit(X[:6]).kneighbors(X[:6])
    np.testing.assert_allclose(selection._typicality(X[:6], 20), 1.0 / (d[:, 1:].mean(1) + 1e-12), rtol=1e-9)


def test_typiclust_picks_the_most_typical_point_of_each_uncovered_cluster(rng):
    Z, blob = _blobs(rng, n_per=50, centers=6)
    labeled = np.zeros(len(Z), bool)
    labeled[np.flatnonzero(blob == 2)[:3]] = True  # blob 2 is already covered
    info: dict = {}
    out = typiclust(5, embeddings=Z, labeled_mask=labeled, random_state=0, info=info)
    # 3 labeled + 5 -> 8 k-means clusters over 6 blobs; the picks land in 5 distinct uncovered blobs
    assert sorted(set(blob[out].tolist())) == [0, 1, 3, 4, 5]
    labels = info["cluster_labels"]
    for j, c in zip(out, info["clusters"], strict=True):
        members = np.flatnonzero(labels == c)
        typ = selection._typicality(Z[members], 20)
        assert j == members[np.argmax(typ)]


def test_badge_distance_identity_and_reference_selection(rng):
    Z, P, ent, logp = _pool(rng, n=150, d=4, c=3)
    A, H, g2 = selection._badge_parts(P, Z)
    pm = P.mean(0)
    G = (pm - np.eye(3)[pm.argmax(1)])[:, :, None] * Z[:, None, :]  # materialised (n, C, d)
    G = G.reshape(150, -1)
    np.testing.assert_allclose(g2, (G**2).sum(1), rtol=1e-12)
    D = ((G[:, None] - G[None]) ** 2).sum(-1)
    Dfac = g2[:, None] + g2[None] - 2 * (A @ A.T) * (H @ H.T)
    np.testing.assert_allclose(Dfac, D, rtol=1e-9, atol=1e-9)

    # k-means++ seeding on the explicit gradient embeddings with the same random draws
    labeled = np.zeros(150, bool)
    labeled[:10] = True
    av = np.flatnonzero(~labeled)
    Ga = G[av]
    r = np.random.default_rng(4)
    chosen = [int(np.argmax((Ga**2).sum(1)))]
    while len(chosen) < 12:
        d = ((Ga[:, None] - Ga[chosen][None]) ** 2).sum(-1).min(1)
        d[chosen] = 0
        chosen.append(int(r.choice(len(av), p=d / d.sum())))
    out = badge(12, probs=P, embeddings=Z, labeled_mask=labeled, random_state=4)
    assert out.tolist() == av[chosen].tolist()


# ----------------------------------------------------------------------------------------
# balance
# ----------------------------------------------------------------------------------------
def test_cluster_inverse_weights_formula():
    lab = np.array([0] * 6 + [1] * 3 + [7] * 1)
    w = cluster_inverse_weights(lab)
    inv = np.array([1 / 6, 1 / 3, 1.0])
    ref_c = inv / inv.sum()  # w_c = (1/|c|) / sum_c' 1/|c'|
    np.testing.assert_allclose(w, np.r_[[ref_c[0]] * 6, [ref_c[1]] * 3, [ref_c[2]]], rtol=1e-12)
    totals = [w[lab == c].sum() for c in (0, 1, 7)]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-12)  # equal per-cluster totals


def test_balance_gives_equal_expected_cluster_totals():
    sizes = [500, 50, 5, 1]
    lab = np.repeat(np.arange(4), sizes)
    ids = np.arange(lab.size) + 1000
    n = 40_000
    out = balance(ids, lab, n_samples=n, random_state=0)
    assert out.shape == (n,) and np.isin(out, ids).all()
    counts = np.bincount(lab[out - 1000], minlength=4)
    # each count ~ Binomial(n, 1/4): sd = sqrt(n * 1/4 * 3/4) ~ 87; tolerance 5 sd
    sd = np.sqrt(n * 0.25 * 0.75)
    assert (np.abs(counts - n / 4) < 5 * sd).all(), counts
    # within a cluster items are equally likely (cluster 1: 50 items, ~200 draws each)
    c1 = np.bincount(out[lab[out - 1000] == 1] - 1000 - 500, minlength=50)
    assert c1.min() > 0.5 * c1.mean()
    np.testing.assert_array_equal(out, balance(ids, lab, n_samples=n, random_state=0))
    with pytest.raises(ValueError, match="cluster_labels"):
        balance(ids, lab[:-1])


# ----------------------------------------------------------------------------------------
# degenerate inputs (hypothesis)
# ----------------------------------------------------------------------------------------
_KMEANS = ["cluster_bandit", "typiclust"]  # these run k-means: fewer examples (time)


@pytest.mark.parametrize(
    "strategies, n_examples",
    [([s for s in ALL if s not in _KMEANS], 30), (_KMEANS, 8)],
    ids=["fast", "kmeans"],
)
def test_degenerate_inputs(strategies, n_examples):
    settings(max_examples=n_examples, deadline=None)(
        given(
            strategy=st.sampled_from(strategies),
            n=st.integers(2, 25),
            kind=st.sampled_from(["equal_scores", "identical_rows", "both"]),
            frac=st.floats(0.1, 1.0),
            seed=st.integers(0, 1000),
        )(_check_degenerate)
    )()


def _check_degenerate(strategy, n, kind, frac, seed):
    """All-equal scores, identical rows, budget up to the whole unlabeled pool."""
    rng = np.random.default_rng(seed)
    d, c = 3, 3
    Z = rng.normal(size=(n, d)) + 1.0
    if kind in ("identical_rows", "both"):
        Z = np.repeat(Z[:1], n, axis=0)
    P = np.full((2, n, c), 1.0 / c) if kind != "identical_rows" else rng.dirichlet(np.ones(c), size=(2, n))
    ent = -(P.mean(0) * np.log(P.mean(0))).sum(-1)
    logp = np.zeros(n) if kind != "identical_rows" else rng.normal(size=n)
    labeled = np.zeros(n, bool)
    labeled[: n // 4] = True
    budget = max(1, int(frac * (~labeled).sum()))
    kw = dict(scores=ent, embeddings=Z, probs=P, log_density=logp, labeled_mask=labeled)
    out = select(strategy, budget, random_state=seed, **kw)
    assert out.shape == (budget,) and np.unique(out).size == budget
    assert not labeled[out].any()
    np.testing.assert_array_equal(out, select(strategy, budget, random_state=seed, **kw))
