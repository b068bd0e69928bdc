"""Uncertainty scores against a float64 numpy reference, properties, and pool streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DEVICES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.linear_model import LogisticRegression

from gapscope.helpers.models import Ensemble, FrozenEncoder, SklearnEnsemble
from gapscope.helpers.scoring import (
    SCORES,
    ensemble_uncertainty,
    expected_entropy,
    get_score,
    least_confidence,
    margin,
    mutual_information,
    predictive_entropy,
    score_pool,
    variance,
    vote_entropy,
)

# float32 input vs float64 reference: entropies of C <= 10 classes agree to 1e-5 absolute
ATOL32 = 1e-5


# ---------------------------------------------------------------------------------------
# independent float64 reference, written from the definitions with explicit loops
# ---------------------------------------------------------------------------------------
def ref_entropy(p):
    p = np.asarray(p, dtype=np.float64)
    out = 0.0
    for v in p:
        if v > 0:
            out -= v * np.log(v)
    return out


def reference(probs, alpha=0.5):
    P = np.asarray(probs, dtype=np.float64)
    M, n, C = P.shape
    res = {k: np.zeros(n) for k in ("pe", "ee", "mi", "var", "margin", "lc", "vote", "u")}
    for i in range(n):
        pbar = P[:, i, :].mean(0)
        res["pe"][i] = ref_entropy(pbar)
        res["ee"][i] = np.mean([ref_entropy(P[m, i]) for m in range(M)])
        res["mi"][i] = max(0.0, res["pe"][i] - res["ee"][i])
        res["var"][i] = np.mean([np.mean((P[:, i, c] - pbar[c]) ** 2) for c in range(C)])
        srt = np.sort(pbar)[::-1]
        res["margin"][i] = 1.0 - (srt[0] - srt[1])
        res["lc"][i] = 1.0 - srt[0]
        votes = np.zeros(C)
        for m in range(M):
            votes[int(np.argmax(P[m, i]))] += 1
        res["vote"][i] = ref_entropy(votes / M)
        res["u"][i] = alpha * res["ee"][i] + (1 - alpha) * res["var"][i]
    return res


def random_probs(rng, M, n, C, *, sharp=1.0, dtype=np.float32):
    logits = rng.normal(scale=sharp, size=(M, n, C))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


FUNCS = {
    "pe": predictive_entropy,
    "ee": expected_entropy,
    "mi": mutual_information,
    "var": variance,
    "margin": margin,
    "lc": least_confidence,
    "vote": vote_entropy,
    "u": lambda p: ensemble_uncertainty(p, alpha=0.3),
}


@pytest.mark.parametrize("key", list(FUNCS))
def test_scores_match_float64_reference(rng, key):
    probs = random_probs(rng, 5, 40, 7, sharp=2.0)
    probs[:, :3] = 0.0  # exact zeros and one-hot rows must be handled (0 log 0 = 0)
    probs[:, :3, 2] = 1.0
    probs[0, 3] = 0.0
    probs[0, 3, 0] = 1.0
    ref = reference(probs, alpha=0.3)[key]
    got = FUNCS[key](probs)
    assert isinstance(got, np.ndarray) and got.shape == (40,)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, ref, atol=ATOL32, rtol=1e-5)
    # float64 input is computed in float64: much tighter
    got64 = FUNCS[key](probs.astype(np.float64))
    np.testing.assert_allclose(got64, ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("key", list(FUNCS))
def test_torch_in_torch_out_same_device(rng, device, key):
    probs = random_probs(rng, 4, 25, 5)
    t = torch.from_numpy(probs).to(device)
    got = FUNCS[key](t)
    assert isinstance(got, torch.Tensor) and got.device.type == device and got.shape == (25,)
    np.testing.assert_allclose(got.cpu().numpy(), reference(probs, alpha=0.3)[key], atol=ATOL32)


def test_known_values():
    # two members, disjoint one-hots: PE = log 2, EE = 0, MI = log 2, var = 1/4, vote = log 2
    p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert predictive_entropy(p)[0] == pytest.approx(np.log(2))
    assert expected_entropy(p)[0] == 0.0
    assert mutual_information(p)[0] == pytest.approx(np.log(2))
    assert variance(p)[0] == pytest.approx(0.25)
    assert vote_entropy(p)[0] == pytest.approx(np.log(2))
    assert margin(p)[0] == pytest.approx(1.0)
    assert least_confidence(p)[0] == pytest.approx(0.5)
    assert ensemble_uncertainty(p, alpha=0.0)[0] == pytest.approx(0.25)
    # uniform over C classes: PE = EE = log C, MI = 0, var = 0
    u = np.full((3, 1, 6), 1 / 6)
    assert predictive_entropy(u)[0] == pytest.approx(np.log(6))
    assert mutual_information(u)[0] == pytest.approx(0.0, abs=1e-12)
    assert variance(u)[0] == pytest.approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------------------
# properties (hypothesis)
# ---------------------------------------------------------------------------------------
@st.composite
def prob_stacks(draw, max_m=6, max_n=5, max_c=6):
    M = draw(st.integers(2, max_m))
    n = draw(st.integers(1, max_n))
    C = draw(st.integers(2, max_c))
    w = draw(
        arrays(
            np.float64,
            (M, n, C),
            elements=st.one_of(st.just(0.0), st.floats(1e-6, 1.0), st.just(1.0)),
        )
    )
    w[..., 0] += (w.sum(-1) == 0).astype(float)  # avoid all-zero rows
    return w / w.sum(-1, keepdims=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prob_stacks())
def test_bounds_mi_le_pe_le_logc(p):
    C = p.shape[-1]
    pe, ee, mi = predictive_entropy(p), expected_entropy(p), mutual_information(p)
    tol = 1e-12
    assert (mi >= 0).all()
    assert (mi <= pe + tol).all()
    assert (pe <= np.log(C) + tol).all()
    assert (ee >= -tol).all() and (ee <= pe + tol).all()  # concavity of entropy
    v = variance(p)
    assert (v >= 0).all() and (v <= 0.25 + tol).all()
    m = margin(p)
    assert ((m >= -tol) & (m <= 1 + tol)).all()
    for f in FUNCS.values():
        assert not np.isnan(f(p)).any()


@settings(max_examples=80, deadline=None)
@given(prob_stacks(), st.randoms(use_true_random=False))
def test_member_order_invariance(p, rnd):
    perm = list(range(p.shape[0]))
    rnd.shuffle(perm)
    for name, f in FUNCS.items():
        np.testing.assert_allclose(f(p[perm]), f(p), atol=1e-12, err_msg=name)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(1, 8), st.integers(2, 7), st.data())
def test_identical_one_hot_members_give_zero_mi(M, n, C, data):
    cls = np.array(data.draw(st.lists(st.integers(0, C - 1), min_size=n, max_size=n)))
    p = np.zeros((M, n, C))
    p[:, np.arange(n), cls] = 1.0
    for f in (mutual_information, predictive_entropy, expected_entropy, variance, vote_entropy):
        out = f(p)
        assert not np.isnan(out).any()
        np.testing.assert_array_equal(out, 0.0)
    np.testing.assert_array_equal(least_confidence(p), 0.0)
    np.testing.assert_array_equal(margin(p), 0.0)


@settings(max_examples=60, deadline=None)
@given(prob_stacks())
def test_identical_members_give_zero_mi_and_variance(p):
    same = np.repeat(p[:1], p.shape[0], axis=0)
    np.testing.assert_allclose(mutual_information(same), 0.0, atol=1e-12)
    np.testing.assert_allclose(variance(same), 0.0, atol=1e-15)
    np.testing.assert_allclose(vote_entropy(same), 0.0, atol=1e-15)


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.full((4, 3), 0.25), ValueError, r"probs: expected shape \(M, n, C\)"),
        (np.full((2, 0, 3), 1 / 3), ValueError, "empty pool"),
        (np.full((2, 3, 1), 1.0), ValueError, "at least 2 classes"),
        (np.array([[[0.5, np.nan]], [[0.5, 0.5]]]), ValueError, "finite"),
        (np.array([[[0.5, np.inf]], [[0.5, 0.5]]]), ValueError, "finite"),
        (np.array([[[0.6, 0.6]], [[0.5, 0.5]]]), ValueError, "sum to 1"),
        (np.array([[[1.5, -0.5]], [[0.5, 0.5]]]), ValueError, r"in \[0, 1\]"),
        (np.ones((2, 2, 2), dtype=int), TypeError, "floating-point"),
        (np.array([[["a", "b"]]]), TypeError, "probs"),
    ],
)
def test_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        predictive_entropy(bad)


@pytest.mark.parametrize("f", [variance, mutual_information, vote_entropy, ensemble_uncertainty])
def test_one_member_refused_where_needed(f):
    with pytest.raises(ValueError, match="at least 2 ensemble members"):
        f(np.full((1, 3, 2), 0.5))


def test_one_member_allowed_for_mean_based_scores():
    p = np.full((1, 3, 2), 0.5)
    np.testing.assert_allclose(predictive_entropy(p), np.log(2))
    np.testing.assert_allclose(margin(p), 1.0)


def test_alpha_validated_and_registry():
    p = np.full((2, 1, 2), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        ensemble_uncertainty(p, alpha=1.5)
    with pytest.raises(ValueError, match="score: expected one of"):
        get_score("nope")
    assert get_score("bald") is mutual_information
    assert set(SCORES) >= {
        "predictive_entropy",
        "expected_entropy",
        "mutual_information",
        "variance",
        "margin",
        "least_confidence",
        "vote_entropy",
        "ensemble_uncertainty",
    }


# ---------------------------------------------------------------------------------------
# score_pool: streaming equals in-memory
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_ensemble():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    ens = Ensemble("mlp", 3, n_classes=3, hidden=(16, 16), epochs=3, device="cpu", random_state=0)
    return ens.fit(X, y)


NAMES = ("predictive_entropy", "mutual_information", "variance", "ensemble_uncertainty")


def test_score_pool_memmap_and_iterator_equal_in_memory(small_ensemble, tmp_path, rng):
    X = rng.normal(size=(1003, 6)).astype(np.float32)
    probs = small_ensemble.predict_proba(X)
    full = score_pool(
        small_ensemble, X, scores=NAMES, batch_size=4096, return_probs=True, return_embedding=True
    )
    np.testing.assert_allclose(full["probs"], probs, atol=1e-6)
    for name in NAMES:
        np.testing.assert_allclose(full[name], SCORES[name](probs), atol=1e-6)
    np.testing.assert_allclose(full["embedding"], small_ensemble.embed(X), atol=1e-5)
    mm = np.memmap(tmp_path / "pool.f32", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.memmap(tmp_path / "pool.f32", dtype=np.float32, mode="r", shape=X.shape)
    streamed = score_pool(small_ensemble, mm, scores=NAMES, batch_size=97, return_embedding=True)
    batches = (X[s : s + 250] for s in range(0, len(X), 250))
    iterated = score_pool(small_ensemble, batches, scores=NAMES, batch_size=64)
    for name in NAMES:
        np.testing.assert_allclose(streamed[name], full[name], atol=1e-6)
        np.testing.assert_allclose(iterated[name], full[name], atol=1e-6)
        assert streamed[name].shape == (len(X),)
    np.testing.assert_allclose(streamed["embedding"], full["embedding"], atol=1e-5)
    assert set(iterated) == set(NAMES)


def test_score_pool_auto_chunks_follow_device_module(small_ensemble, rng, monkeypatch):
    X = rng.normal(size=(300, 6)).astype(np.float32)
    seen = []
    orig = small_ensemble.predict_proba

    def spy(xb, **kw):
        seen.append(xb.shape[0])
        return orig(xb, **kw)

    monkeypatch.setenv("GAPSCOPE_CHUNK_ROWS", "128")
    monkeypatch.setattr(small_ensemble, "predict_proba", spy)
    out = score_pool(small_ensemble, X)
    assert seen == [128, 128, 44]
    np.testing.assert_allclose(out["predictive_entropy"], predictive_entropy(orig(X)), atol=1e-6)


def test_score_pool_errors(small_ensemble):
    with pytest.raises(ValueError, match="scores: expected one of"):
        score_pool(small_ensemble, np.zeros((3, 6), np.float32), scores=("nope",))
    with pytest.raises(ValueError, match="empty pool"):
        score_pool(small_ensemble, np.zeros((0, 6), np.float32))
    with pytest.raises(ValueError, match="empty pool"):
        score_pool(small_ensemble, iter([]))
    with pytest.raises(ValueError, match="batch_size"):
        score_pool(small_ensemble, np.zeros((3, 6), np.float32), batch_size=0)
    with pytest.raises(TypeError, match="X: expected"):
        score_pool(small_ensemble, 5)
    with pytest.raises(ValueError, match="X: expected items of shape"):
        score_pool(small_ensemble, np.zeros((3, 5), np.float32))


class _PlainModel:
    """Only the required protocol: predict_proba(X) without batch_size, no embed."""

    def __init__(self, M=2, C=3):
        self.M, self.C, self.calls = M, C, []

    def predict_proba(self, X):
        self.calls.append(len(X))
        logits = np.stack([np.asarray(X)[:, : self.C] * (m + 1) for m in range(self.M)])
        p = np.exp(logits - logits.max(-1, keepdims=True))
        return p / p.sum(-1, keepdims=True)  # float64 is accepted


class _EmbedModel(_PlainModel):
    def embed(self, X):
        return np.asarray(X)[:, :2] * 2.0


def test_score_pool_takes_any_model_of_the_protocol(rng):
    X = rng.normal(size=(250, 6)).astype(np.float32)
    plain = _PlainModel()
    out = score_pool(plain, X, scores=NAMES, batch_size=100, return_probs=True)
    assert plain.calls == [100, 100, 50]  # chunked, no batch_size keyword passed on
    probs = plain.predict_proba(X)
    for name in NAMES:
        np.testing.assert_allclose(out[name], SCORES[name](probs), atol=1e-5)
    np.testing.assert_allclose(out["probs"], probs, atol=1e-6)
    with pytest.raises(TypeError, match="ensemble: return_embedding=True needs a model with embed"):
        score_pool(plain, X, return_embedding=True)
    with pytest.raises(TypeError, match="ensemble: expected a fitted model with predict_proba"):
        score_pool(object(), X)
    emb = score_pool(_EmbedModel(), X, batch_size=64, return_embedding=True)["embedding"]
    np.testing.assert_allclose(emb, X[:, :2] * 2.0, atol=1e-6)


def test_score_pool_with_the_adapters(rng):
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    sk = SklearnEnsemble(LogisticRegression(), 3, bootstrap=True, random_state=0).fit(X, y)
    out = score_pool(sk, X, scores=NAMES, batch_size=64)
    for name in NAMES:
        np.testing.assert_allclose(out[name], SCORES[name](sk.predict_proba(X)), atol=1e-5)
    with pytest.raises(TypeError, match="ensemble: return_embedding"):
        score_pool(sk, X, return_embedding=True)
    calls = []

    def encoder(a):
        calls.append(len(a))
        return np.tanh(a[:, :4])

    fe = FrozenEncoder(encoder, n_members=2, random_state=0).fit(X, y)
    calls.clear()
    out = score_pool(fe, X, batch_size=80, return_embedding=True, return_probs=True)
    assert calls == [80, 80, 40]  # one encoder call per chunk: predict_proba_and_embed
    np.testing.assert_allclose(out["embedding"], np.tanh(X[:, :4]), atol=1e-6)
    np.testing.assert_allclose(out["probs"], fe.predict_proba(X), atol=1e-6)
