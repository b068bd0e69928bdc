"""Tests for helpers.generators: VAE / ConditionalVAE (encoder f, decoder g, head h)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEVICES
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from gapscope.helpers.generators import VAE, ConditionalVAE, Generator, generator_name


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)
    perm = np.random.default_rng(7).permutation(len(X))
    tr, te = perm[:1300], perm[1300:]
    return X[tr], d.target[tr], X[te], d.target[te]


@pytest.fixture(autouse=True)
def _one_thread():
    """These models and fits are tiny: one thread (torch, OpenBLAS, OpenMP) avoids spin
    contention on the shared 2-core box -- measured 10-20x slower VAE training and 130x
    slower LogisticRegression fits with 2 threads while other jobs ran."""
    import torch
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def cvae(digits):
    import torch

    Xtr, ytr, _, _ = digits
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the function-level one above
    with threadpool_limits(1):
        model = ConditionalVAE(
            latent_dim=4, arch="mlp", hidden=(128, 64), epochs=25, random_state=0
        ).fit(Xtr, ytr)
    torch.set_num_threads(n)
    return model


def _mse(a, b):
    return float(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).mean())


@pytest.mark.slow
def test_vae_reconstruction_beats_pca_on_heldout(digits):
    """Held-out MSE of decode(encode(x)) < MSE of a PCA with as many components (latent 8).

    Gaussian likelihood on standardised pixels, beta=0.25, 45 epochs. Measured MSE ratio
    VAE / PCA on 497 held-out digits over seeds 0-9: 0.72-0.79 (0.771 for seed 1); at 30
    epochs it was 0.82-0.95, i.e. at the threshold for seed 6 (a CPU with other float
    rounding trains a different net), and 1.00 at 20 epochs. The Bernoulli likelihood
    optimises cross-entropy, not squared error, and lands at 1.05-1.5 of PCA's MSE, so it is
    not the one compared. The test asks for at least 5% lower MSE.
    """
    Xtr, ytr, Xte, _ = digits
    vae = VAE(
        latent_dim=8, arch="mlp", beta=0.25, likelihood="gaussian", epochs=45, random_state=1
    ).fit(Xtr, ytr)
    vae_mse = _mse(vae.reconstruct(Xte), Xte)
    pca = PCA(8).fit(Xtr.reshape(len(Xtr), -1))
    pca_mse = _mse(
        pca.inverse_transform(pca.transform(Xte.reshape(len(Xte), -1))), Xte.reshape(len(Xte), -1)
    )
    assert vae_mse < 0.95 * pca_mse, (vae_mse, pca_mse)


@pytest.mark.slow
def test_conv_vae_beats_pca_on_heldout(digits):
    """The conv net for 8x8 images (same settings; 16/32 channels, 45 epochs).

    Measured ratio over seeds 0-9: 0.62-0.71 (0.629 for seed 0); threshold 0.85. At 30 epochs
    it was 0.74-0.86 (seed 2 above the threshold), 1.00 at 15 epochs."""
    Xtr, ytr, Xte, _ = digits
    vae = VAE(latent_dim=8, beta=0.25, likelihood="gaussian", epochs=45, random_state=0).fit(
        Xtr, ytr
    )
    assert vae.arch_ == "conv2d"
    pca = PCA(8).fit(Xtr.reshape(len(Xtr), -1))
    pca_mse = _mse(
        pca.inverse_transform(pca.transform(Xte.reshape(len(Xte), -1))), Xte.reshape(len(Xte), -1)
    )
    assert _mse(vae.reconstruct(Xte), Xte) < 0.85 * pca_mse


def test_conditional_generation_reference_classifier_agrees(digits, cvae):
    """A logistic regression trained on real digits gives the intended class to >= 80% of
    g(z, c), z ~ N(0, I), 30 per class (measured 0.943 with these settings, 0.923-0.993 over
    CVAE seeds 0-9 and sampling seeds 1, 2; 0.000-0.003 when the condition is shifted by one
    class)."""
    Xtr, ytr, _, _ = digits
    ref = LogisticRegression(max_iter=2000).fit(Xtr.reshape(len(Xtr), -1), ytr)
    c = np.repeat(np.arange(10), 30)
    Xs = cvae.sample(len(c), condition=c, random_state=1)
    agree = (ref.predict(Xs.reshape(len(Xs), -1)) == c).mean()
    assert agree >= 0.8, agree
    # the same latents with a shuffled condition are NOT the intended class: the decoder uses c
    c_wrong = (c + 1) % 10
    Xw = cvae.sample(len(c), condition=c_wrong, random_state=1)
    assert (ref.predict(Xw.reshape(len(Xw), -1)) == c).mean() < 0.2


def test_cvae_heads_and_inferred_condition(digits, cvae):
    _, _, Xte, yte = digits
    probs = cvae.classify(Xte)
    assert probs.shape == (len(Xte), 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == yte).mean() > 0.8
    Z_inferred = cvae.encode(Xte)
    Z_given = cvae.encode(Xte, probs.argmax(1))
    np.testing.assert_allclose(Z_inferred, Z_given, atol=1e-6)
    assert cvae.reconstruct(Xte[:5]).shape == (5, 8, 8)


def test_elbo_terms_match_float64_reference():
    """The per-row reconstruction and KL used in training equal a float64 numpy computation."""
    import torch

    rng = np.random.default_rng(0)
    X = rng.random((60, 5)).astype(np.float32)
    vae = VAE(latent_dim=3, hidden=(16,), epochs=1, random_state=0).fit(X)
    assert vae.likelihood_ == "bernoulli"
    m = vae.module_.eval()
    xb = torch.from_numpy(vae._prep_x(X[:7]))
    with torch.no_grad():
        recon, kl, mu, _ = vae._recon_kl(m, xb, None)
        feat = m.features(xb)
        mu_ref, logvar = (t.double().numpy() for t in m.stats(feat, None))
        logits = m.decode_logits(torch.from_numpy(mu_ref.astype(np.float32)), None).double().numpy()
    x = X[:7].astype(np.float64)
    bce = (np.logaddexp(0, logits) - x * logits).sum(1)
    kl_ref = 0.5 * (mu_ref**2 + np.exp(logvar) - 1 - logvar).sum(1)
    np.testing.assert_allclose(recon.numpy(), bce, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kl.numpy(), kl_ref, rtol=1e-5, atol=1e-6)


def test_gaussian_likelihood_roundtrips_scale():
    """Data on a 2-D plane in 6-D with very different feature scales and offset 50:
    reconstructions come back in the input's units (per-feature standardisation undone),
    with RMS error below 35% of each feature's spread (measured 0.1-0.2)."""
    rng = np.random.default_rng(1)
    S = rng.normal(size=(400, 2))
    X = (S @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(400, 6))) * [
        1,
        2,
        5,
        10,
        0.1,
        3,
    ] + 50
    X = X.astype(np.float32)
    vae = VAE(latent_dim=2, beta=0.1, hidden=(64,), epochs=40, batch_size=32, random_state=0).fit(X)
    assert vae.likelihood_ == "gaussian"
    rec = vae.reconstruct(X)
    rel = np.sqrt(((rec - X) ** 2).mean(0)) / X.std(0)
    assert (rel < 0.35).all(), rel
    np.testing.assert_allclose(rec.mean(0), X.mean(0), atol=0.2 * X.std(0).max())


def test_seeded_and_leaves_global_rng_alone():
    import torch

    X = np.random.default_rng(2).random((80, 6)).astype(np.float32)
    torch_state = torch.get_rng_state().clone()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global
    a = VAE(latent_dim=2, hidden=(8,), epochs=2, random_state=3).fit(X)
    b = VAE(latent_dim=2, hidden=(8,), epochs=2, random_state=3).fit(X)
    c = VAE(latent_dim=2, hidden=(8,), epochs=2, random_state=4).fit(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    np.testing.assert_array_equal(a.encode(X), b.encode(X))
    assert not np.allclose(a.encode(X), c.encode(X))
    np.testing.assert_array_equal(a.sample(4, random_state=0), b.sample(4, random_state=0))


def test_arch_auto_and_shapes():
    rng = np.random.default_rng(3)
    sig = rng.normal(size=(50, 40)).astype(np.float32)  # MNIST-1D-like signals -> MLP
    v = VAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(sig)
    assert v.arch_ == "mlp" and v.decode(np.zeros((3, 2))).shape == (3, 40)
    img = rng.random((40, 8, 8)).astype(np.float32)
    w = VAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(img)
    assert w.arch_ == "conv2d" and w.sample(2, random_state=0).shape == (2, 8, 8)
    assert isinstance(v, Generator) and isinstance(ConditionalVAE(), Generator)
    assert generator_name(v) == "VAE(latent_dim=2)"


def test_unlabeled_rows_and_classify_without_labels():
    rng = np.random.default_rng(4)
    X = rng.random((60, 5)).astype(np.float32)
    y = np.full(60, -1)
    y[:20] = rng.integers(0, 3, 20)
    v = VAE(latent_dim=2, hidden=(8,), epochs=2, random_state=0).fit(X, y)
    assert v.classify(X).shape == (60, 3)
    u = VAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X)
    with pytest.raises(RuntimeError, match="without labels"):
        u.classify(X)
    # conditional model with unknown conditions on some rows and an attribute as condition
    attr = rng.integers(0, 2, 60)
    attr[:10] = -1
    cv = ConditionalVAE(latent_dim=2, hidden=(8,), epochs=2, random_state=0).fit(
        X, y, condition=attr
    )
    assert cv.n_conditions_ == 2 and cv.classify(X).shape == (60, 3)
    assert cv.decode(np.zeros((4, 2)), condition=[0, 1, 1, 0]).shape == (4, 5)
    assert cv.decode(np.zeros((2, 2)), condition=np.array([[0.5, 0.5], [1.0, 0.0]])).shape == (2, 5)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_input_gives_torch_output_on_its_device(device):
    import torch

    X = torch.rand(40, 6, device=device)
    v = VAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X)
    Z = v.encode(X)
    assert isinstance(Z, torch.Tensor) and Z.device.type == device and Z.shape == (40, 2)
    np.testing.assert_allclose(Z.cpu().numpy(), v.encode(X.cpu().numpy()), atol=1e-6)


def test_bad_input_messages():
    X = np.random.default_rng(5).random((30, 4)).astype(np.float32)
    with pytest.raises(RuntimeError, match="not fitted"):
        VAE().encode(X)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE(latent_dim=0).fit(X)
    with pytest.raises(ValueError, match="arch"):
        VAE(arch="rnn").fit(X)
    with pytest.raises(ValueError, match="bernoulli"):
        VAE(likelihood="bernoulli").fit(X * 3)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X: expected finite"):
        VAE(epochs=1).fit(bad)
    v = VAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"z: expected shape \(n, 2\)"):
        v.decode(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="condition"):
        v.decode(np.zeros((3, 2)), condition=1)
    with pytest.raises(ValueError, match=r"X: expected samples of shape \(4,\)"):
        v.encode(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="y: expected labels >= -1"):
        VAE(epochs=1).fit(X, np.full(30, -2))
    cv = ConditionalVAE(latent_dim=2, hidden=(8,), epochs=1, random_state=0).fit(
        X, np.arange(30) % 3
    )
    with pytest.raises(ValueError, match="needs a condition"):
        cv.decode(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"condition: expected integer conditions in \[0, 2\]"):
        cv.decode(np.zeros((2, 2)), condition=[0, 3])
    with pytest.raises(ValueError, match="conditions"):
        ConditionalVAE().fit(X)


def test_save_load_roundtrip_and_labeled_extra_rows(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.random((70, 8, 8)).astype(np.float32)
    Xl = rng.random((12, 8, 8)).astype(np.float32)
    yl = np.arange(12) % 3  # classes 0..2 of n_classes=4: class 3 has no label yet
    cv = ConditionalVAE(latent_dim=2, hidden=(8,), epochs=1, n_classes=4, random_state=0)
    cv.fit(X, None, X_labeled=Xl, y_labeled=yl)
    assert cv.n_conditions_ == 4 and cv.classify(X).shape == (70, 4)
    path = tmp_path / "gen.pt"
    cv.save(path)
    back = ConditionalVAE.load(path, device="cpu")
    np.testing.assert_array_equal(back.encode(X), cv.encode(X))
    z = np.zeros((3, 2), np.float32)
    np.testing.assert_array_equal(back.decode(z, [0, 3, 1]), cv.decode(z, [0, 3, 1]))
    with pytest.raises(ValueError, match="expected a saved VAE"):
        VAE.load(path)
    with pytest.raises(ValueError, match="n_classes=2"):
        VAE(n_classes=2, epochs=1).fit(Xl, yl)
