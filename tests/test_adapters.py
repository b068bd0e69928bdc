"""The model side of the seam: the Model protocol and the adapters of helpers.models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import DEVICES
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

from gapscope.helpers.models import (
    Ensemble,
    FrozenEncoder,
    Model,
    SklearnEnsemble,
    TorchEnsemble,
)


def blobs(rng, n=120, d=5, C=3, sep=4.0):
    """C well-separated Gaussian blobs: a problem every adapter must learn."""
    centers = rng.normal(size=(C, d)) * sep
    y = np.arange(n) % C
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y.astype(np.int64)


# ---------------------------------------------------------------------------------------
# user modules for TorchEnsemble
# ---------------------------------------------------------------------------------------
def logits_only(n_classes, feature_shape):
    d = math.prod(feature_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, n_classes))


class WithEmbedding(nn.Module):
    def __init__(self, n_classes, feature_shape, k=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(feature_shape), k), nn.Tanh())
        self.head = nn.Linear(k, n_classes)

    def forward(self, x):
        e = self.body(x)
        return self.head(e), e


FACTORIES = {"logits": (logits_only, None), "embedding": (WithEmbedding, 8)}


def torch_ens(factory, seed=0, **kw):
    params = dict(epochs=3, batch_size=32, device="cpu", random_state=seed)
    params.update(kw)
    return TorchEnsemble(factory, 3, **params)


# ---------------------------------------------------------------------------------------
# the protocol
# ---------------------------------------------------------------------------------------
def test_shipped_models_follow_the_protocol(rng):
    X, y = blobs(rng, n=60)
    models = [
        Ensemble("mlp", 2, hidden=(8,), epochs=1, device="cpu", random_state=0),
        SklearnEnsemble(LogisticRegression(), 2, random_state=0),
        torch_ens(logits_only, epochs=1),
        FrozenEncoder(n_members=2, random_state=0),
    ]
    for m in models:
        assert isinstance(m, Model)
        fitted = m.fit(X, y, n_classes=4, random_state=1)
        assert fitted is m and isinstance(fitted, Model)
        p = m.predict_proba(X)
        assert p.shape == (2 if not isinstance(m, TorchEnsemble) else 3, 60, 4)
        assert p.dtype == np.float32
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert not isinstance(object(), Model)


def test_ensemble_embed_is_the_fused_embedding(rng):
    X, y = blobs(rng, n=50)
    ens = Ensemble("mlp", 3, hidden=(12,), epochs=1, device="cpu", random_state=0).fit(X, y)
    emb, members = ens.embed(X), ens.member_embeddings(X)
    assert emb.shape == (50, 12) and members.shape == (3, 50, 12)
    np.testing.assert_allclose(emb, members.mean(0), rtol=1e-6, atol=1e-7)
    assert not np.allclose(members[0], members[1])


# ---------------------------------------------------------------------------------------
# SklearnEnsemble
# ---------------------------------------------------------------------------------------
def test_sklearn_ensemble_learns_breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    m = SklearnEnsemble(est, 5, bootstrap=True, random_state=0).fit(Xtr, ytr)
    p = m.predict_proba(Xte)
    assert p.shape == (5, len(yte), 2) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    # measured 0.95-0.98 over five splits; a wrong column mapping would give ~0.05
    acc = (p.mean(0).argmax(-1) == yte).mean()
    assert acc > 0.85, acc
    np.testing.assert_array_equal(m.predict(Xte), p.mean(0).argmax(-1))
    assert not np.allclose(p[0], p[1])  # bootstrap members differ
    with pytest.raises(NotFittedError):
        est.predict(Xte)  # the given estimator is cloned, never fitted itself


def test_sklearn_missing_class_gets_an_exact_zero_column(rng):
    X, y = blobs(rng, n=90, C=3)
    keep = y != 1
    m = SklearnEnsemble(LogisticRegression(), 2, n_classes=3, random_state=0)
    m.fit(X[keep], y[keep])
    p = m.predict_proba(X)
    assert p.shape == (2, 90, 3)
    assert np.all(p[:, :, 1] == 0.0)
    own = m.members_[0].predict_proba(X)  # the member's own columns are classes 0 and 2
    np.testing.assert_allclose(p[0][:, [0, 2]], own, atol=1e-6)
    # the fit-time override beats the constructor's n_classes
    assert m.fit(X[keep], y[keep], n_classes=5).predict_proba(X).shape == (2, 90, 5)


def test_sklearn_single_class_training_set(rng):
    X, _ = blobs(rng, n=20)
    y = np.full(20, 1)
    m = SklearnEnsemble(LogisticRegression(), 3, bootstrap=True, n_classes=3, random_state=0)
    p = m.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p, np.broadcast_to(np.eye(3, dtype=np.float32)[1], (3, 20, 3)))
    # a bootstrap sample of a nearly one-class set: the members that saw one class are constant
    y2 = np.zeros(20, dtype=int)
    y2[0] = 1
    m2 = SklearnEnsemble(LogisticRegression(), 8, bootstrap=True, random_state=0).fit(X, y2)
    p2 = m2.predict_proba(X)
    assert p2.shape == (8, 20, 2)
    assert np.isfinite(p2).all()
    np.testing.assert_allclose(p2.sum(-1), 1.0, atol=1e-5)


def test_sklearn_seeds_identical_refits_and_different_members(rng):
    X, y = blobs(rng, n=90, sep=1.0)

    def make(seed):
        return SklearnEnsemble(RandomForestClassifier(n_estimators=10), 3, random_state=seed).fit(
            X, y
        )

    a, b, c = make(5), make(5), make(6)
    pa = a.predict_proba(X)
    np.testing.assert_array_equal(pa, b.predict_proba(X))
    assert not np.array_equal(pa, c.predict_proba(X))
    assert not np.array_equal(pa[0], pa[1])  # each member got its own seed
    seeds = [m.random_state for m in a.members_]
    assert len(set(seeds)) == 3 and all(isinstance(s, int) for s in seeds)
    # a fit-time random_state overrides the constructor's
    np.testing.assert_array_equal(make(6).fit(X, y, random_state=5).predict_proba(X), pa)
    # nested random_state parameters (a Pipeline's step) are seeded too
    pipe = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5))
    m = SklearnEnsemble(pipe, 2, random_state=0).fit(X, y)
    assert m.members_[0][-1].random_state != m.members_[1][-1].random_state


def test_sklearn_any_shape_one_member_weights_and_save_load(rng, tmp_path):
    X, y = blobs(rng, n=60, d=8)
    X3 = X.reshape(60, 4, 2)
    w = rng.uniform(0.5, 2.0, size=60)
    m = SklearnEnsemble(LogisticRegression(), 1, random_state=0).fit(X3, y, sample_weight=w)
    p = m.predict_proba(X3)
    assert p.shape == (1, 60, 3)
    ref = LogisticRegression().fit(X, y, sample_weight=w).predict_proba(X)
    np.testing.assert_allclose(p[0], ref, atol=1e-5)
    assert not hasattr(m, "embed")  # the loop falls back to the flattened input
    path = tmp_path / "sk.pkl"
    m.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sk.pkl"]  # no temporary left
    template = SklearnEnsemble(LogisticRegression(), 1)
    back = template.load(path)
    np.testing.assert_array_equal(back.predict_proba(X3), p)
    assert not hasattr(template, "members_")
    np.testing.assert_array_equal(SklearnEnsemble.load(path).predict_proba(X3), p)
    with pytest.raises(ValueError, match=r"X: expected items of shape \(4, 2\)"):
        m.predict_proba(X[:, :5])


def test_sklearn_errors(rng, tmp_path):
    X, y = blobs(rng, n=30)
    with pytest.raises(TypeError, match="estimator: .*predict_proba"):
        SklearnEnsemble(LinearSVC()).fit(X, y)
    with pytest.raises(TypeError, match="estimator"):
        SklearnEnsemble(object()).fit(X, y)
    with pytest.raises(ValueError, match="n_members: expected an int >= 1, got 0"):
        SklearnEnsemble(LogisticRegression(), 0).fit(X, y)
    with pytest.raises(ValueError, match="not fitted"):
        SklearnEnsemble(LogisticRegression()).predict_proba(X)
    with pytest.raises(ValueError, match="sample_weight: KNeighborsClassifier"):
        SklearnEnsemble(KNeighborsClassifier()).fit(X, y, sample_weight=np.ones(30))
    with pytest.raises(ValueError, match="y: expected labels < n_classes=2"):
        SklearnEnsemble(LogisticRegression(), n_classes=2).fit(X, y)
    with pytest.raises(ValueError, match="not fitted"):
        SklearnEnsemble(LogisticRegression()).save(tmp_path / "x.pkl")


# ---------------------------------------------------------------------------------------
# TorchEnsemble
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(FACTORIES))
def test_torch_shapes_and_embedding(rng, kind):
    factory, k = FACTORIES[kind]
    X, y = blobs(rng, n=64)
    m = torch_ens(factory).fit(X, y)
    k = k or 3  # a logits-only module: the embedding is the logits
    assert m.returns_embedding_ is (kind == "embedding") and m.embedding_dim_ == k
    p = m.predict_proba(X)
    assert p.shape == (3, 64, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    members = m.member_embeddings(X)
    emb = m.embed(X)
    assert members.shape == (3, 64, k) and emb.shape == (64, k)
    np.testing.assert_allclose(emb, members.mean(0), atol=1e-6)
    # reference: each member called outside the adapter
    with torch.no_grad():
        out = m.members_[1](torch.from_numpy(X))
        logits = out[0] if isinstance(out, tuple) else out
    np.testing.assert_allclose(p[1], torch.softmax(logits, -1).numpy(), atol=1e-6)
    # chunking, torch input and predict_proba_and_embed agree
    np.testing.assert_allclose(m.predict_proba(X, batch_size=5), p, atol=1e-6)
    pt = m.predict_proba(torch.from_numpy(X))
    assert isinstance(pt, torch.Tensor)
    np.testing.assert_allclose(pt.numpy(), p, atol=1e-6)
    p2, e2 = m.predict_proba_and_embed(X)
    np.testing.assert_allclose(p2, p, atol=1e-6)
    np.testing.assert_allclose(e2, members, atol=1e-6)
    assert m.predict_proba(X[:0]).shape == (3, 0, 3)


def test_torch_deterministic_on_cpu_and_global_rng_untouched(rng):
    X, y = blobs(rng, n=64)
    t_state = torch.random.get_rng_state().clone()
    a = torch_ens(WithEmbedding, seed=3, bootstrap=True).fit(X, y)
    b = torch_ens(WithEmbedding, seed=3, bootstrap=True).fit(X, y)
    c = torch_ens(WithEmbedding, seed=4, bootstrap=True).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), t_state)
    pa = a.predict_proba(X)
    np.testing.assert_array_equal(pa, b.predict_proba(X))
    assert not np.allclose(pa, c.predict_proba(X))
    assert not np.allclose(pa[0], pa[1])
    # the initial weights come from random_state, not from torch's global generator
    with torch.random.fork_rng(devices=[]):
        torch.random.manual_seed(123)  # test code only: a different global stream
        d = torch_ens(WithEmbedding, seed=3, bootstrap=True).fit(X, y)
    np.testing.assert_array_equal(d.predict_proba(X), pa)
    w0, w1 = (m.head.weight for m in a.members_[:2])
    assert not torch.allclose(w0, w1)
    # the fit-time random_state overrides the constructor's
    np.testing.assert_array_equal(
        torch_ens(WithEmbedding, seed=9, bootstrap=True).fit(X, y, random_state=3).predict_proba(X),
        pa,
    )


def test_torch_save_then_load_on_a_fresh_template(rng, tmp_path):
    X, y = blobs(rng, n=64)
    m = torch_ens(WithEmbedding, validation_fraction=0.25).fit(X, y)
    path = tmp_path / "torch.pt"
    m.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["torch.pt"]
    template = torch_ens(WithEmbedding)
    back = template.load(path)
    assert not hasattr(template, "members_") and back is not template
    np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
    np.testing.assert_array_equal(back.embed(X), m.embed(X))
    assert back.n_validation_ == 16 and back.history_ == m.history_
    # only tensors and plain containers: readable with weights_only=True
    state = torch.load(path, weights_only=True)
    assert len(state["members"]) == 3 and state["n_classes_"] == 3
    with pytest.raises(ValueError, match="n_members=2"):
        TorchEnsemble(WithEmbedding, 2).load(path)
    other = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="path: expected a file written by TorchEnsemble.save"):
        template.load(other)


def test_torch_validation_fraction_counts(rng):
    X, y = blobs(rng, n=90)
    m = torch_ens(logits_only, validation_fraction=0.2, patience=2).fit(X, y)
    assert m.n_validation_ == 18
    assert all(len(h["val_loss"]) == h["epochs_run"] for h in m.history_)
    small = torch_ens(logits_only, validation_fraction=0.2).fit(X[:45], y[:45])
    assert small.n_validation_ == 0 and all(h["val_loss"] == [] for h in small.history_)
    given = torch_ens(logits_only, validation_fraction=0.2).fit(X, y, X_val=X[:9], y_val=y[:9])
    assert given.n_validation_ == 0 and all(len(h["val_loss"]) > 0 for h in given.history_)
    with pytest.raises(ValueError, match="validation_fraction"):
        torch_ens(logits_only, validation_fraction=2).fit(X, y)


def test_torch_learns_a_separable_problem(rng):
    X, y = blobs(rng, n=150, sep=3.0)
    Xte, yte = X[100:], y[100:]
    m = torch_ens(WithEmbedding, epochs=30, lr=1e-2).fit(X[:100], y[:100])
    acc = (m.predict(Xte) == yte).mean()
    assert acc > 0.9, acc


def test_torch_warns_about_layers_it_cannot_seed(rng):
    class WithToken(nn.Module):
        def __init__(self, n_classes, feature_shape):
            super().__init__()
            self.shift = nn.Parameter(torch.randn(feature_shape))
            self.out = nn.Linear(math.prod(feature_shape), n_classes)

        def forward(self, x):
            return self.out(x + self.shift)

    X, y = blobs(rng, n=40)
    state = torch.random.get_rng_state().clone()
    with pytest.warns(UserWarning, match=r"does not seed .*<root> \(WithToken\)"):
        torch_ens(WithToken, epochs=1).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_torch_errors(rng):
    X, y = blobs(rng, n=30)
    with pytest.raises(TypeError, match="module_factory: expected a callable"):
        TorchEnsemble("not a factory", device="cpu").fit(X, y)
    with pytest.raises(TypeError, match="module_factory: expected it to return a torch.nn.Module"):
        TorchEnsemble(lambda **kw: "nope", device="cpu").fit(X, y)
    with pytest.raises(
        ValueError, match=r"module_factory: expected forward to return logits of shape \(n, 3\)"
    ):
        TorchEnsemble(lambda n_classes, feature_shape: nn.Linear(5, 7), device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="n_members: expected an int >= 1, got 0"):
        TorchEnsemble(logits_only, 0, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="not fitted"):
        TorchEnsemble(logits_only).predict_proba(X)
    m = torch_ens(logits_only, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"X: expected items of shape \(5,\)"):
        m.predict_proba(X[:, :4])
    with pytest.raises(ValueError, match="batch_size"):
        m.predict_proba(X, batch_size=0)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_device_fit_and_cpu_checkpoint_agree(rng, tmp_path, device):
    X, y = blobs(rng, n=96)
    m = torch_ens(WithEmbedding, device=device, epochs=20, lr=1e-2).fit(X, y)
    assert m.device_.type == device and m.predict_proba(X).shape == (3, 96, 3)
    assert (m.predict(X) == y).mean() > 0.9
    m.save(tmp_path / "m.pt")
    cpu = torch_ens(WithEmbedding, device="cpu").load(tmp_path / "m.pt")
    tol = 1e-5 if device == "cpu" else 1e-3  # TF32 on the GPU
    np.testing.assert_allclose(cpu.predict_proba(X), m.predict_proba(X), atol=tol)


# ---------------------------------------------------------------------------------------
# FrozenEncoder
# ---------------------------------------------------------------------------------------
class CountingEncoder:
    """A fixed random projection that counts its calls."""

    def __init__(self, d, k=6, seed=0):
        self.W = np.random.default_rng(seed).normal(size=(d, k)).astype(np.float32)
        self.calls = 0

    def __call__(self, X):
        self.calls += 1
        return np.tanh(np.asarray(X, dtype=np.float32) @ self.W)


def test_frozen_encoder_caches_embeddings(rng):
    X, y = blobs(rng, n=80)
    enc = CountingEncoder(5)
    m = FrozenEncoder(enc, n_members=3, random_state=0).fit(X, y)
    assert enc.calls == 1 and m.embedding_dim_ == 6
    p = m.predict_proba(X)
    Z = m.embed(X)
    m.predict_proba_and_embed(X)
    assert enc.calls == 1  # all from the cache
    np.testing.assert_allclose(Z, enc(X), atol=1e-6)
    enc.calls = 0
    assert p.shape == (3, 80, 3) and Z.shape == (80, 6) and not Z.flags.writeable
    m.predict_proba(X[:])  # a view of the same memory is the same input
    assert enc.calls == 0
    X2 = X.copy()
    X2[0, 0] += 1.0  # a changed row inside the sample: a new key
    m.predict_proba(X2)
    assert enc.calls == 1
    # only the last few inputs are kept
    others = [X + i for i in range(1, 6)]
    for a in others:
        m.embed(a)
    assert enc.calls == 6
    m.embed(X)  # evicted by now
    assert enc.calls == 7
    # predict_proba_and_embed encodes once for a new input
    m.predict_proba_and_embed(X + 10)
    assert enc.calls == 8


@pytest.mark.parametrize("head", ["logistic", "mlp", "forest"])
def test_frozen_encoder_heads_learn_and_round_trip(rng, tmp_path, head):
    X, y = blobs(rng, n=150, sep=3.0)
    enc = CountingEncoder(5, k=8)
    spec = RandomForestClassifier(n_estimators=10) if head == "forest" else head
    opts = {"epochs": 40, "lr": 1e-2, "hidden": 16, "device": "cpu"} if head == "mlp" else None
    m = FrozenEncoder(enc, head=spec, n_members=3, random_state=0, head_options=opts)
    m.fit(X[:100], y[:100])
    expected = TorchEnsemble if head == "mlp" else SklearnEnsemble
    assert isinstance(m.head_, expected) and m.n_classes_ == 3
    p = m.predict_proba(X[100:])
    assert p.shape == (3, 50, 3) and p.dtype == np.float32
    acc = (m.predict(X[100:]) == y[100:]).mean()
    assert acc > 0.85, acc
    path = tmp_path / "head"
    m.save(path)
    back = FrozenEncoder(enc, head=spec, n_members=3, head_options=opts).load(path)
    np.testing.assert_array_equal(back.predict_proba(X[100:]), p)
    assert back.encoder is enc and back.embedding_dim_ == 8


def test_frozen_encoder_precomputed_embeddings(rng, tmp_path):
    Z, y = blobs(rng, n=90, d=6)
    m = FrozenEncoder(n_members=2, random_state=0).fit(Z, y)
    np.testing.assert_array_equal(m.embed(Z), Z)
    ref = SklearnEnsemble(LogisticRegression(max_iter=1000), 2, bootstrap=True, random_state=0)
    np.testing.assert_allclose(m.predict_proba(Z), ref.fit(Z, y).predict_proba(Z), atol=1e-6)
    m.save(tmp_path / "h.pkl")
    np.testing.assert_array_equal(
        FrozenEncoder(n_members=2).load(tmp_path / "h.pkl").predict_proba(Z), m.predict_proba(Z)
    )
    mlp = FrozenEncoder(head="mlp", n_members=2, random_state=0, head_options={"epochs": 2})
    mlp.fit(Z, y, X_val=Z[:10], y_val=y[:10])
    assert all(len(h["val_loss"]) > 0 for h in mlp.head_.history_)
    assert mlp.embed(Z).shape == (90, 6)


def test_frozen_encoder_errors(rng):
    Z, y = blobs(rng, n=30)
    with pytest.raises(ValueError, match=r"head: expected one of \['logistic', 'mlp'\]"):
        FrozenEncoder(head="svm").fit(Z, y)
    with pytest.raises(TypeError, match="head: expected a scikit-learn classifier"):
        FrozenEncoder(head=LinearSVC()).fit(Z, y)
    with pytest.raises(ValueError, match=r"head_options: unknown option\(s\) \['depth'\]"):
        FrozenEncoder(head="mlp", head_options={"depth": 2}).fit(Z, y)
    with pytest.raises(ValueError, match="head_options: unknown option"):
        FrozenEncoder(head_options={"nope": 1}).fit(Z, y)
    with pytest.raises(ValueError, match="head_options: expected None"):
        FrozenEncoder(head=LogisticRegression(), head_options={"C": 1.0}).fit(Z, y)
    with pytest.raises(TypeError, match="encoder: expected None or a callable"):
        FrozenEncoder(encoder="bert").fit(Z, y)
    with pytest.raises(ValueError, match="encoder\\(X\\): expected one embedding row per item"):
        FrozenEncoder(encoder=lambda a: a[:3]).fit(Z, y)
    with pytest.raises(ValueError, match="n_members"):
        FrozenEncoder(n_members=0).fit(Z, y)
    with pytest.raises(ValueError, match="not fitted"):
        FrozenEncoder().predict_proba(Z)
