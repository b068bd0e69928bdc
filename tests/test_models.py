"""Classifiers, the training loop and the batched ensemble."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import DEVICES
from torch import nn

from gapscope.helpers.models import (
    MLP,
    CNN1d,
    CNN2d,
    Ensemble,
    make_classifier,
)
from gapscope.helpers.training import MIN_VALIDATION_ROWS, _cosine_factor, _holdout_split, train


def toy(rng, n=120, d=6, C=3):
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])).astype(np.int64)
    return X, y % C


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------------------------------
# architectures
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, x, k",
    [
        (MLP(12, 4, hidden=(32, 16)), torch.zeros(5, 12), 16),
        (MLP(64, 4), torch.zeros(5, 8, 8), 256),  # images are flattened
        (CNN2d(4), torch.zeros(5, 8, 8), 128),
        (CNN2d(4, in_channels=3), torch.zeros(5, 3, 8, 8), 128),
        (CNN1d(4), torch.zeros(5, 40), 128),
        (CNN1d(4, length=33), torch.zeros(5, 1, 33), 128),
    ],
)
def test_forward_returns_logits_and_embedding(model, x, k):
    logits, emb = model(x)
    assert logits.shape == (5, 4) and emb.shape == (5, k)
    assert model.embedding_dim == k


@pytest.mark.parametrize(
    "kind, shape, cls",
    [
        ("vector", (7,), MLP),
        ("image", (8, 8), CNN2d),
        ("signal", (40,), CNN1d),
        ("auto", (8, 8), CNN2d),
        ("auto", (40,), MLP),
        ("cnn1d", (40,), CNN1d),
    ],
)
def test_make_classifier_kinds(kind, shape, cls):
    assert isinstance(make_classifier(kind, n_classes=3, feature_shape=shape), cls)


def test_make_classifier_errors():
    with pytest.raises(ValueError, match="kind_or_arch: expected one of"):
        make_classifier("resnet", n_classes=3, feature_shape=(4,))
    with pytest.raises(ValueError, match="n_classes"):
        make_classifier("mlp", n_classes=1, feature_shape=(4,))
    with pytest.raises(ValueError, match="feature_shape"):
        make_classifier("cnn1d", n_classes=3, feature_shape=(8, 8))


def test_seeded_init_without_touching_global_rng():
    before = torch.random.get_rng_state().clone()
    a = make_classifier("image", n_classes=3, feature_shape=(8, 8), random_state=3)
    b = make_classifier("image", n_classes=3, feature_shape=(8, 8), random_state=3)
    c = make_classifier("image", n_classes=3, feature_shape=(8, 8), random_state=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    # same distribution as torch's default init: bias bound 1/sqrt(fan_in)
    fc = a.fc
    assert fc.bias.abs().max() <= 1 / math.sqrt(fc.in_features)


# ---------------------------------------------------------------------------------------
# train()
# ---------------------------------------------------------------------------------------
def test_train_same_seed_identical_weights_cpu(rng):
    X, y = toy(rng)
    runs = []
    for seed in (5, 5, 6):
        m = make_classifier("mlp", n_classes=3, feature_shape=(6,), hidden=(16,), random_state=1)
        train(m, X, y, epochs=3, batch_size=32, device="cpu", random_state=seed)
        runs.append(params_of(m))
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0], runs[2], strict=True))


def _one_full_batch_step(model, X, y, *, lr, wd, weight=None, sw=None):
    """Reference: one AdamW step on torch's own (weighted) cross-entropy."""
    ref = copy.deepcopy(model)
    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=wd)
    logits = ref(torch.from_numpy(X))[0]
    yt = torch.from_numpy(y)
    if sw is None:
        w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
        loss = nn.functional.cross_entropy(logits, yt, weight=w)
    else:
        swt = torch.tensor(sw, dtype=torch.float32)
        loss = (nn.functional.cross_entropy(logits, yt, reduction="none") * swt).sum() / swt.sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return ref


@pytest.mark.parametrize("mode", ["plain", "class_weight", "balanced", "sample_weight"])
def test_weighted_loss_matches_torch_reference(rng, mode):
    X, y = toy(rng, n=40)
    m = make_classifier("mlp", n_classes=3, feature_shape=(6,), hidden=(8,), random_state=0)
    kw, weight, sw = {}, None, None
    if mode == "class_weight":
        weight = [0.5, 2.0, 3.0]
        kw["class_weight"] = np.array(weight)
    elif mode == "balanced":
        counts = np.bincount(y, minlength=3)
        weight = (len(y) / (3 * counts)).tolist()
        kw["class_weight"] = "balanced"
    elif mode == "sample_weight":
        sw = rng.uniform(0.1, 2.0, size=len(y))
        kw["sample_weight"] = sw
    ref = _one_full_batch_step(m, X, y, lr=0.01, wd=0.1, weight=weight, sw=sw)
    # one epoch of one full batch with no warmup: the lr factor is exactly 1 for that step
    train(
        m,
        X,
        y,
        epochs=1,
        batch_size=len(y),
        lr=0.01,
        weight_decay=0.1,
        warmup_frac=0.0,
        device="cpu",
        random_state=0,
        **kw,
    )
    for a, b in zip(m.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_lr_schedule_warmup_then_cosine(rng):
    X, y = toy(rng, n=64)
    m = make_classifier("mlp", n_classes=3, feature_shape=(6,), hidden=(8,), random_state=0)
    hist = train(
        m,
        X,
        y,
        epochs=10,
        batch_size=16,
        lr=0.1,
        warmup_frac=0.2,
        patience=None,
        device="cpu",
        random_state=0,
    )
    total, warm = 40, 8
    # lr recorded after the last step of each epoch = lr * factor(step index of the next step)
    expected = [0.1 * _cosine_factor(4 * (e + 1), total, warm) for e in range(10)]
    np.testing.assert_allclose(hist["lr"], expected, rtol=1e-12, atol=1e-15)
    assert _cosine_factor(0, total, warm) == pytest.approx(1 / 8)
    assert _cosine_factor(warm, total, warm) == pytest.approx(1.0)
    assert hist["lr"][-1] == pytest.approx(0.0, abs=1e-12)


def test_early_stopping_restores_best_weights(rng):
    X, y = toy(rng, n=60)
    Xv, yv = toy(rng, n=60)
    yv = rng.permutation(yv)  # a validation set the model can only overfit against
    m = make_classifier("mlp", n_classes=3, feature_shape=(6,), hidden=(64, 64), random_state=0)
    hist = train(
        m, X, y, X_val=Xv, y_val=yv, epochs=60, lr=1e-2, patience=3, device="cpu", random_state=0
    )
    assert hist["stopped_early"] and hist["epochs_run"] < 60
    assert hist["best_epoch"] == int(np.argmin(hist["val_loss"]))
    with torch.no_grad():
        loss = nn.functional.cross_entropy(m(torch.from_numpy(Xv))[0], torch.from_numpy(yv)).item()
    assert loss == pytest.approx(min(hist["val_loss"]), rel=1e-5)


def test_train_with_custom_loss_fn_and_no_labels(rng):
    X = rng.normal(size=(200, 5)).astype(np.float32)
    ae = nn.Sequential(nn.Linear(5, 2), nn.Linear(2, 5))

    def recon(model, xb, yb):
        assert yb is None
        return ((model(xb) - xb) ** 2).mean()

    hist = train(
        ae, X, None, X_val=X[:50], epochs=15, lr=1e-2, device="cpu", random_state=0, loss_fn=recon
    )
    assert hist["train_loss"][-1] < 0.8 * hist["train_loss"][0]
    assert len(hist["val_loss"]) == hist["epochs_run"]


def test_train_errors(rng):
    X, y = toy(rng, n=20)
    m = make_classifier("mlp", n_classes=3, feature_shape=(6,), hidden=(8,))
    with pytest.raises(ValueError, match="epochs"):
        train(m, X, y, epochs=0, device="cpu")
    with pytest.raises(ValueError, match="y: expected labels"):
        train(m, X, None, device="cpu")
    with pytest.raises(ValueError, match="y: expected labels < n_classes=3"):
        train(m, X, y + 3, device="cpu")
    with pytest.raises(ValueError, match="unlabeled"):
        train(m, X, np.full(20, -1), device="cpu")
    with pytest.raises(ValueError, match="sample_weight"):
        train(m, X, y, sample_weight=np.ones(3), device="cpu")
    with pytest.raises(ValueError, match="class_weight"):
        train(m, X, y, class_weight=[1.0, 2.0], device="cpu")
    with pytest.raises(ValueError, match="X_val: expected items of shape"):
        train(m, X, y, X_val=np.zeros((4, 5), np.float32), y_val=np.zeros(4, int), device="cpu")
    with pytest.raises(ValueError, match="X: expected finite"):
        train(m, np.full((20, 6), np.nan, np.float32), y, device="cpu")


# ---------------------------------------------------------------------------------------
# Ensemble
# ---------------------------------------------------------------------------------------
CASES = {
    "mlp": ((6,), "mlp"),
    "cnn2d": ((8, 8), "cnn2d"),
    "cnn1d": ((40,), "cnn1d"),
}


def fitted(rng, arch, device="cpu", seed=0, **kw):
    shape, arch = CASES[arch]
    X = rng.normal(size=(96, *shape)).astype(np.float32)
    y = (X.reshape(96, -1)[:, 0] > 0).astype(np.int64) + (X.reshape(96, -1)[:, 1] > 1)
    params = dict(
        n_classes=3, hidden=(16, 16), epochs=2, batch_size=32, device=device, random_state=seed
    )
    params.update(kw)
    return Ensemble(arch, 3, **params).fit(X, y), X


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", list(CASES))
def test_batched_equals_member_loop(rng, arch, device):
    ens, X = fitted(rng, arch, device)
    p_b, e_b = ens.predict_proba_and_embed(X, batched=True)
    p_l, e_l = ens.predict_proba_and_embed(X, batched=False)
    # reference: each member called on its own, outside the Ensemble code
    with torch.no_grad():
        xt = torch.from_numpy(X).to(device)
        ref = np.stack([torch.softmax(m(xt)[0], -1).cpu().numpy() for m in ens.members_])
    tol = 1e-5 if device == "cpu" else 1e-3  # TF32/cuDNN on GPU
    np.testing.assert_allclose(p_b, ref, atol=tol)
    np.testing.assert_allclose(p_l, ref, atol=tol)
    np.testing.assert_allclose(e_b, e_l, atol=tol * 10)
    assert p_b.shape == (3, 96, 3) and e_b.shape[:2] == (3, 96)
    np.testing.assert_allclose(p_b.sum(-1), 1.0, atol=1e-5)


def test_same_seed_same_probabilities_different_seed_differs(rng):
    X, y = toy(rng, n=80)

    def make(seed, **kw):
        ens = Ensemble(
            "mlp",
            3,
            n_classes=3,
            hidden=(16, 16),
            epochs=2,
            batch_size=32,
            device="cpu",
            random_state=seed,
            **kw,
        )
        return ens.fit(X, y)

    a, b, c = make(11), make(11), make(12)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.allclose(a.predict_proba(X), c.predict_proba(X))
    pa = a.predict_proba(X)
    assert not np.allclose(pa[0], pa[1])  # members are independently seeded
    boot = make(11, bootstrap=True)
    assert not np.allclose(boot.predict_proba(X), pa)
    np.testing.assert_array_equal(boot.predict_proba(X), make(11, bootstrap=True).predict_proba(X))


def test_fit_does_not_touch_global_rngs(rng):
    t_state = torch.random.get_rng_state().clone()
    n_state = np.random.get_state()[1].copy()  # noqa: NPY002
    fitted(rng, "cnn1d")
    assert torch.equal(torch.random.get_rng_state(), t_state)
    np.testing.assert_array_equal(np.random.get_state()[1], n_state)  # noqa: NPY002


def test_numpy_in_numpy_out_torch_in_torch_out(rng):
    ens, X = fitted(rng, "mlp")
    p_np = ens.predict_proba(X)
    p_t = ens.predict_proba(torch.from_numpy(X))
    assert isinstance(p_np, np.ndarray) and p_np.dtype == np.float32
    assert isinstance(p_t, torch.Tensor)
    np.testing.assert_allclose(p_t.numpy(), p_np, atol=1e-6)
    members = ens.member_embeddings(X)
    emb = ens.embed(X)
    assert members.shape == (3, 96, 16) and emb.shape == (96, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, members.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ens.fused_embedding(X), emb)  # the alias
    emb_t = ens.embed(torch.from_numpy(X))
    assert isinstance(emb_t, torch.Tensor) and tuple(emb_t.shape) == (96, 16)
    np.testing.assert_allclose(ens.embed(X, batch_size=7), emb, atol=1e-6)
    np.testing.assert_array_equal(ens.predict(X), p_np.mean(0).argmax(-1))
    # chunking does not change results
    np.testing.assert_allclose(ens.predict_proba(X, batch_size=7), p_np, atol=1e-6)


def test_checkpoint_roundtrip_exact(rng, tmp_path):
    ens, X = fitted(rng, "cnn2d", bootstrap=True, class_weight="balanced")
    ens.save(tmp_path / "ens.pt")
    back = Ensemble.load(tmp_path / "ens.pt")
    np.testing.assert_array_equal(back.predict_proba(X), ens.predict_proba(X))
    assert back.get_params() == ens.get_params()
    assert back.history_ == ens.history_ and back.n_classes_ == 3
    again = Ensemble().load_state_dict(ens.state_dict())
    np.testing.assert_array_equal(again.member_embeddings(X), ens.member_embeddings(X))


def test_n_classes_inferred_or_given(rng):
    X, y = toy(rng, n=60)
    y2 = np.minimum(y, 1)  # only classes 0, 1 present
    inferred = Ensemble("mlp", 2, hidden=(8,), epochs=1, device="cpu", random_state=0).fit(X, y2)
    given = Ensemble(
        "mlp", 2, n_classes=5, hidden=(8,), epochs=1, device="cpu", random_state=0
    ).fit(X, y2)
    assert inferred.n_classes_ == 2 and inferred.predict_proba(X).shape == (2, 60, 2)
    assert given.n_classes_ == 5 and given.predict_proba(X).shape == (2, 60, 5)


def test_ensemble_errors(rng):
    X, y = toy(rng, n=30)
    with pytest.raises(ValueError, match="not fitted"):
        Ensemble().predict_proba(X)
    with pytest.raises(ValueError, match="n_members"):
        Ensemble(n_members=0).fit(X, y)
    with pytest.raises(ValueError, match="y: expected labels < n_classes=2"):
        Ensemble(n_classes=2, device="cpu").fit(X, y + 1)
    with pytest.raises(TypeError, match="y: expected integer"):
        Ensemble(device="cpu").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="y: expected shape"):
        Ensemble(device="cpu").fit(X, y[:5])
    with pytest.raises(ValueError, match="kind_or_arch"):
        Ensemble("transformer", device="cpu").fit(X, y)
    ens = Ensemble("mlp", 2, hidden=(8,), epochs=1, device="cpu", random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"X: expected items of shape \(6,\)"):
        ens.predict_proba(np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        ens.predict_proba(X, batch_size=0)
    with pytest.raises(ValueError, match="finite"):
        ens.predict_proba(torch.full((2, 6), float("nan")))


def test_digits_ensemble_learns():
    # ~0.6 s on an idle 2-core CPU (5 MLPs, 500 digits, default epochs with early stopping);
    # no wall-clock assertion: the CI machine is shared
    from gapscope.helpers.data import load_dataset

    ds = load_dataset("digits", random_state=0)
    ids = ds.pool.ids[:500]
    X, y = ds.pool.X[:500], ds.oracle.true_labels(ids)
    ens = Ensemble("mlp", 5, n_classes=10, device="cpu", random_state=0)
    ens.fit(X, y, X_val=ds.val.X, y_val=ds.val.labels)
    acc = (ens.predict(ds.test.X) == ds.test.labels).mean()
    assert acc > 0.85
    assert all(h["best_epoch"] is not None for h in ens.history_)


def test_min_steps_keeps_tiny_training_sets_from_stopping_at_init():
    """With 20 labels an epoch is one step; restoring the best-val-loss weights of epoch ~2
    left the ensemble at chance (0.11). min_steps trains on and only tracks the best after it."""
    from gapscope.helpers.data import load_dataset

    ds = load_dataset("digits", random_state=0)
    X, y = ds.pool.X[:20], ds.oracle.true_labels(ds.pool.ids[:20])
    accs = {}
    for min_steps in (0, 150):
        ens = Ensemble("mlp", 2, n_classes=10, hidden=(64,), device="cpu", random_state=0, min_steps=min_steps)
        ens.fit(X, y, X_val=ds.val.X, y_val=ds.val.labels)
        accs[min_steps] = (ens.predict(ds.test.X) == ds.test.labels).mean()
        if min_steps:
            assert all(h["epochs_run"] >= 150 and h["best_epoch"] >= 149 for h in ens.history_)
    assert accs[150] > 0.35 and accs[150] > accs[0] + 0.1, accs
    with pytest.raises(ValueError, match="min_steps"):
        train(MLP(4, 2), np.zeros((4, 4), np.float32), np.zeros(4, int), min_steps=-1)


def test_models_and_generators_share_training_without_an_import_cycle():
    import subprocess
    import sys

    from gapscope.helpers import generators, models, training

    # the VAEs live in generators only; models no longer re-exports them
    assert not hasattr(models, "VAE") and not hasattr(models, "ConditionalVAE")
    assert models.train is training.train and models.init_parameters is training.init_parameters
    assert "train" not in models.__all__ and generators.VAE.__module__.endswith("generators")
    # importing models pulls in training but not generators
    code = (
        "import sys; import gapscope.helpers.models; "
        "assert 'gapscope.helpers.generators' not in sys.modules; "
        "assert 'gapscope.helpers.training' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_chunk_capped_for_batched_pass_on_cpu(rng, monkeypatch):
    from gapscope.helpers import models

    ens, _ = fitted(rng, "mlp")
    X = rng.normal(size=(5000, 6)).astype(np.float32)
    seen = []
    orig = ens._forward

    def spy(x, batched, want_emb=True):
        seen.append((x.shape[0], batched))
        return orig(x, batched, want_emb)

    monkeypatch.setattr(ens, "_forward", spy)
    monkeypatch.setattr(models, "chunk_rows", lambda *a, **k: 1 << 20)
    p = ens.predict_proba(X)
    assert seen == [(4096, True), (904, True)]
    seen.clear()
    np.testing.assert_allclose(ens.predict_proba(X, batched=False), p, atol=1e-6)
    assert seen == [(5000, False)]  # the loop path is not capped
    # embeddings computed only where asked for, and equal either way
    e_loop, e_vmap = ens.embed(X, batched=False), ens.embed(X, batched=True)
    np.testing.assert_allclose(e_loop, e_vmap, atol=1e-5)


# ---------------------------------------------------------------------------------------
# fit-time overrides and the validation fold held out of the training labels
# ---------------------------------------------------------------------------------------
def test_fit_overrides_n_classes_and_random_state(rng):
    X, y = toy(rng, n=60)
    y2 = np.minimum(y, 1)
    kw = dict(hidden=(8,), epochs=1, device="cpu")
    ens = Ensemble("mlp", 2, n_classes=2, random_state=0, **kw)
    ens.fit(X, y2, n_classes=4, random_state=7)
    assert ens.n_classes_ == 4 and ens.predict_proba(X).shape == (2, 60, 4)
    assert ens.n_classes == 2  # the constructor's parameter is left as it was
    ref = Ensemble("mlp", 2, n_classes=4, random_state=7, **kw).fit(X, y2)
    np.testing.assert_array_equal(ens.predict_proba(X), ref.predict_proba(X))
    other = Ensemble("mlp", 2, n_classes=4, random_state=0, **kw).fit(X, y2)
    assert not np.allclose(other.predict_proba(X), ref.predict_proba(X))


def test_holdout_split_is_stratified_seeded_and_keeps_every_class():
    y = np.array([0] * 50 + [1] * 30 + [2] * 19 + [3])  # class 3 is seen once
    tr, va = _holdout_split(y, 0.2, np.random.default_rng(0))
    assert len(va) == 20 and len(tr) == 80  # ceil(0.2 * 100)
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == 100
    np.testing.assert_array_equal(np.bincount(y[va], minlength=4), [10, 6, 4, 0])
    assert 3 in y[tr]
    again = _holdout_split(y, 0.2, np.random.default_rng(0))
    np.testing.assert_array_equal(again[1], va)
    assert not np.array_equal(_holdout_split(y, 0.2, np.random.default_rng(1))[1], va)
    # below MIN_VALIDATION_ROWS there is no fold (and no draw from the generator)
    g = np.random.default_rng(0)
    state = g.bit_generator.state
    assert _holdout_split(y[:45], 0.2, g) is None  # ceil(9.0) = 9 < 10
    assert g.bit_generator.state == state and MIN_VALIDATION_ROWS == 10
    # one row of every class stays in training even when the fraction asks for more
    tiny = np.repeat(np.arange(12), 2)
    tr, va = _holdout_split(tiny, 0.9, np.random.default_rng(0))
    assert len(va) == 12 and set(tiny[tr]) == set(range(12))
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="validation_fraction"):
            _holdout_split(y, bad, np.random.default_rng(0))


def test_ensemble_validation_fraction_holds_out_and_counts(rng, monkeypatch):
    from gapscope.helpers import models

    X, y = toy(rng, n=80)
    calls = []
    orig = models.train

    def spy(model, Xi, yi, **kw):
        calls.append((len(yi), None if kw["X_val"] is None else len(kw["X_val"])))
        return orig(model, Xi, yi, **kw)

    monkeypatch.setattr(models, "train", spy)
    kw = dict(n_classes=3, hidden=(8,), epochs=2, device="cpu", random_state=0)
    ens = Ensemble("mlp", 2, validation_fraction=0.2, **kw).fit(X, y)
    assert ens.n_validation_ == 16 and calls == [(64, 16), (64, 16)]
    assert all(len(h["val_loss"]) == h["epochs_run"] for h in ens.history_)
    calls.clear()
    # an explicit validation set wins; no training label is held out
    ens = Ensemble("mlp", 2, validation_fraction=0.2, **kw).fit(X, y, X_val=X[:5], y_val=y[:5])
    assert ens.n_validation_ == 0 and calls == [(80, 5), (80, 5)]
    calls.clear()
    # a fold under 10 rows: train on everything, no early stopping, fixed epochs
    ens = Ensemble("mlp", 2, validation_fraction=0.2, patience=1, **kw).fit(X[:40], y[:40])
    assert ens.n_validation_ == 0 and calls == [(40, None), (40, None)]
    assert all(h["epochs_run"] == 2 and h["val_loss"] == [] for h in ens.history_)
    calls.clear()
    Ensemble("mlp", 2, **kw).fit(X, y)
    assert calls == [(80, None), (80, None)]
    # state_dict round trip keeps the count
    back = Ensemble().load_state_dict(
        Ensemble("mlp", 1, validation_fraction=0.25, **kw).fit(X, y).state_dict()
    )
    assert back.n_validation_ == 20 and back.validation_fraction == 0.25
    with pytest.raises(ValueError, match="validation_fraction"):
        Ensemble("mlp", 1, validation_fraction=1.0, **kw).fit(X, y)


def test_validation_fraction_with_bootstrap_and_sample_weight(rng):
    X, y = toy(rng, n=60)
    w = rng.uniform(0.5, 2.0, size=60)
    kw = dict(n_classes=3, hidden=(8,), epochs=2, device="cpu", validation_fraction=0.25)
    a = Ensemble("mlp", 2, bootstrap=True, random_state=3, **kw).fit(X, y, sample_weight=w)
    b = Ensemble("mlp", 2, bootstrap=True, random_state=3, **kw).fit(X, y, sample_weight=w)
    assert a.n_validation_ == 15
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    with pytest.raises(ValueError, match="sample_weight"):
        Ensemble("mlp", 1, random_state=0, **kw).fit(X, y, sample_weight=w[:5])


def test_small_cpu_fits_run_on_one_thread_and_restore_the_count(monkeypatch):
    """train() picks one torch thread for a small CPU fit (benchmarks/bench_threads.py)."""
    import torch

    from gapscope.helpers import training

    seen = []
    inner = training._train

    def spy(model, X, y=None, **kw):
        seen.append(torch.get_num_threads())
        return inner(model, X, y, **kw)

    monkeypatch.setattr(training, "_train", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
        y = (X[:, 0] > 0).astype(np.int64)
        net = torch.nn.Sequential(torch.nn.Linear(5, 2))
        training.train(net, X, y, epochs=2, device="cpu")
        assert seen == [1] and torch.get_num_threads() == 2
        big = np.zeros((training.SMALL_FIT_ITEMS + 1, 5), np.float32)
        training.train(net, big, np.zeros(len(big), np.int64), epochs=1, device="cpu")
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)
