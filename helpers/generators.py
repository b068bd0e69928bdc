"""Generators: a VAE and a conditional VAE giving the design's encoder f, decoder g and head h.

The design (``papers/000``, section 3.2) asks one trained model for three things:

* an encoder ``f: X -> Z`` (here the mean of q(z|x), :meth:`VAE.encode`),
* a generator ``g: Z -> X`` (:meth:`VAE.decode`, ``g(z, c)`` for the conditional model),
* a classifier ``h: X -> Y`` (:meth:`VAE.classify`, class probabilities read from the latent
  mean).

All three are trained jointly with one loss, averaged over a batch::

    loss = recon(x, g(z)) + beta * KL(q(z|x) || N(0, I)) + gamma * CE(h(x), y)   (CE on labeled rows)

Vectors and 1-D signals (MNIST-1D) go through an MLP, 8x8 images (scikit-learn's digits)
through a small convolutional net. Training uses :func:`gapscope.helpers.training.train` (AdamW, warmup,
early stopping on the validation loss, seeded) with the loss above as its ``loss_fn``.

Anything that has ``encode(X)`` and ``decode(z, condition=None)`` can stand in for these
models in :mod:`gapscope.helpers.synthesis` (the :class:`Generator` protocol), e.g. a user's diffusion
model wrapped in two methods.

Examples
--------
>>> import numpy as np
>>> from gapscope.helpers.generators import VAE
>>> X = np.random.default_rng(0).normal(size=(200, 6))
>>> vae = VAE(latent_dim=2, epochs=2, random_state=0).fit(X)
>>> vae.encode(X).shape, vae.decode(np.zeros((3, 2))).shape
((200, 2), (3, 6))
"""

from __future__ import annotations

import numbers
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._validation import (
    check_array,
    check_choice,
    check_positive,
    check_random_state,
    is_torch,
)

__all__ = ["Generator", "VAE", "ConditionalVAE", "generator_name"]


@runtime_checkable
class Generator(Protocol):
    """What :mod:`gapscope.helpers.synthesis` needs from a generative model.

    Any object with these two methods qualifies (structural typing; no base class needed):

    ``encode(X) -> Z``
        ``X`` of shape (n_samples, *input_shape) to latent codes of shape
        (n_samples, latent_dim): the design's encoder f. A conditional model may infer the
        condition when none is given.
    ``decode(z, condition=None) -> X``
        latent codes of shape (n_samples, latent_dim) (and, for a conditional model,
        conditions: one int, ints of shape (n_samples,) or condition probabilities of shape
        (n_samples, n_conditions)) to samples of shape (n_samples, *input_shape): the
        generator g(z, c). An unconditional model accepts ``condition=None`` only.

    Optional, used when present: ``classify(X) -> probs`` of shape (n_samples, n_classes)
    (the head h, for intended labels), ``latent_dim`` (int) and ``n_conditions`` (int).

    A diffusion model fits by wrapping it: ``encode`` = its (DDIM) inversion or an auxiliary
    encoder, ``decode`` = sampling from the given noise ``z`` with ``condition`` as the class
    prompt.
    """

    def encode(self, X: Any) -> Any: ...

    def decode(self, z: Any, condition: Any = None) -> Any: ...


def generator_name(generator: Any) -> str:
    """A short, JSON-friendly name for a generator (class name and latent size when known)."""
    name = type(generator).__name__
    dim = getattr(generator, "latent_dim", None)
    return f"{name}(latent_dim={dim})" if isinstance(dim, numbers.Integral) else name


# --------------------------------------------------------------------------------------
# torch modules (built lazily so that importing this module does not import torch)
# --------------------------------------------------------------------------------------


def _build_module(arch, input_shape, latent_dim, hidden, n_cond, n_classes, head_on):
    import torch
    from torch import nn

    class _VAEModule(nn.Module):
        """Encoder trunk -> (mu, logvar); decoder (z, c) -> x; heads for classes/conditions."""

        def __init__(self):
            super().__init__()
            self.arch = arch
            self.input_shape = tuple(input_shape)
            self.n_cond = n_cond
            self.head_on = head_on
            act = nn.SiLU
            if arch == "conv2d":
                ch, h, w = self.input_shape
                self.hw4 = (h // 2, w // 2)
                feat = hidden[-1]
                self.trunk = nn.Sequential(
                    nn.Conv2d(ch, 16, 3, padding=1),
                    act(),
                    nn.Conv2d(16, 32, 4, stride=2, padding=1),
                    act(),
                    nn.Flatten(),
                    nn.Linear(32 * self.hw4[0] * self.hw4[1], feat),
                    act(),
                )
                self.dec_fc = nn.Sequential(
                    nn.Linear(latent_dim + n_cond, feat),
                    act(),
                    nn.Linear(feat, 32 * self.hw4[0] * self.hw4[1]),
                    act(),
                )
                self.dec_conv = nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(32, 16, 3, padding=1),
                    act(),
                    nn.Conv2d(16, ch, 3, padding=1),
                )
            else:
                d = int(np.prod(self.input_shape))
                layers, prev = [nn.Flatten()], d
                for width in hidden:
                    layers += [nn.Linear(prev, width), act()]
                    prev = width
                self.trunk = nn.Sequential(*layers)
                feat = prev
                dec, prev = [], latent_dim + n_cond
                for width in reversed(hidden):
                    dec += [nn.Linear(prev, width), act()]
                    prev = width
                dec.append(nn.Linear(prev, d))
                self.dec_mlp = nn.Sequential(*dec)
            self.to_stats = nn.Linear(feat + n_cond, 2 * latent_dim)
            self.class_head = (
                nn.Linear(latent_dim if head_on == "latent" else feat, n_classes)
                if n_classes
                else None
            )
            self.cond_head = nn.Linear(feat, n_cond) if n_cond else None

        def features(self, x):
            return self.trunk(x)

        def stats(self, feat, c=None):
            inp = feat if c is None else torch.cat([feat, c], dim=1)
            mu, logvar = self.to_stats(inp).chunk(2, dim=1)
            return mu, logvar.clamp(-12.0, 8.0)

        def decode_logits(self, z, c=None):
            inp = z if c is None else torch.cat([z, c], dim=1)
            if self.arch == "conv2d":
                hmap = self.dec_fc(inp).view(-1, 32, *self.hw4)
                return self.dec_conv(hmap)
            return self.dec_mlp(inp).view(-1, *self.input_shape)

        def forward(self, x):  # (logits, embedding), the classifier contract of helpers.models
            feat = self.features(x)
            c = None
            if self.n_cond:
                c = torch.softmax(self.cond_head(feat), dim=1)
            mu, _ = self.stats(feat, c)
            src = mu if self.head_on == "latent" else feat
            if self.class_head is not None:
                logits = self.class_head(src)
            elif self.cond_head is not None:
                logits = self.cond_head(feat)
            else:
                logits = mu
            return logits, mu

    return _VAEModule()


# --------------------------------------------------------------------------------------
# the estimators
# --------------------------------------------------------------------------------------


class VAE:
    """Variational autoencoder with a classifier head: encoder f, decoder g and head h.

    Parameters
    ----------
    latent_dim : int, default 8
        Size of the latent space Z.
    arch : {"auto", "mlp", "conv2d"}, default "auto"
        ``"auto"``: ``"conv2d"`` for image input of shape (n, H, W) or (n, C, H, W) with even
        H and W, else ``"mlp"`` (vectors (n, d) and 1-D signals such as MNIST-1D (n, 40)).
    hidden : tuple of int, default (256, 128)
        MLP widths (encoder; the decoder mirrors them). For ``"conv2d"`` the last entry is
        the width of the dense layer after the two conv layers (16 and 32 channels; the
        decoder mirrors them with nearest upsampling).
    beta : float, default 1.0
        Weight of the KL term (beta-VAE).
    gamma : float, default 1.0
        Weight of the cross-entropy of the head on labeled rows (label ``-1`` = unlabeled).
    likelihood : {"auto", "bernoulli", "gaussian"}, default "auto"
        ``"bernoulli"`` (binary cross-entropy on pixel intensities) needs ``0 <= X <= 1``;
        ``"gaussian"`` uses unit variance on per-feature standardised X (half the squared
        error). ``"auto"`` picks bernoulli when all of X lies in [0, 1].
    n_classes : int, optional
        Number of classes of the head; default ``max(y) + 1``. Give it when some classes
        have no labeled row yet (early rounds of a loop).
    epochs, lr, weight_decay, batch_size, warmup_frac, patience :
        Passed to :func:`gapscope.helpers.training.train` (AdamW, linear warmup then cosine decay,
        early stopping on the validation loss when ``X_val`` is given).
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
        Where to train when ``X`` is a numpy array; torch input trains on its own device.
    random_state : None, int or numpy.random.Generator
        Seeds initialisation, batch order and the reparameterisation noise.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network (encoder trunk, stats layer, decoder, heads).
    input_shape_ : tuple of int
        Shape of one sample.
    likelihood_ : str
        The likelihood used.
    n_classes_ : int
        Number of classes of the head (0 when fitted without labels).
    history_ : dict
        What :func:`gapscope.helpers.training.train` returned.
    device_ : torch.device

    Notes
    -----
    The head reads the latent mean, so ``classify`` is h(f(x)); with ``gamma > 0`` the latent
    space is shaped by the labels too (a semi-supervised VAE in the style of M1+M2).
    """

    _conditional = False
    # declared for the type checker only (no class attribute): set by ConditionalVAE.fit
    n_conditions_: int

    def __init__(
        self,
        latent_dim: int = 8,
        *,
        arch: str = "auto",
        hidden: tuple[int, ...] = (256, 128),
        beta: float = 1.0,
        gamma: float = 1.0,
        likelihood: str = "auto",
        epochs: int = 50,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        warmup_frac: float = 0.05,
        patience: int = 10,
        n_classes: int | None = None,
        device: Any = "auto",
        random_state: Any = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.n_classes = n_classes
        self.arch = arch
        self.hidden = hidden
        self.beta = beta
        self.gamma = gamma
        self.likelihood = likelihood
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.warmup_frac = warmup_frac
        self.patience = patience
        self.device = device
        self.random_state = random_state

    # ---------------------------------------------------------------- validation helpers
    def _check_params(self) -> None:
        if not isinstance(self.latent_dim, numbers.Integral) or self.latent_dim < 1:
            raise ValueError(f"latent_dim: expected a positive int, got {self.latent_dim!r}")
        check_choice(self.arch, name="arch", choices=("auto", "mlp", "conv2d"))
        check_choice(self.likelihood, name="likelihood", choices=("auto", "bernoulli", "gaussian"))
        check_positive(self.beta, name="beta", strict=False)
        check_positive(self.gamma, name="gamma", strict=False)
        if not (
            isinstance(self.hidden, (tuple, list))
            and len(self.hidden) >= 1
            and all(isinstance(h, numbers.Integral) and h > 0 for h in self.hidden)
        ):
            raise ValueError(
                f"hidden: expected a non-empty tuple of positive ints, got {self.hidden!r}"
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(X) first")

    def _as_numpy_x(self, X: Any, name: str, fitting: bool = False) -> np.ndarray:
        arr = check_array(X, name=name, ndim=(2, 3, 4), dtype=np.float32)
        if not fitting:
            if arr.shape[1:] != tuple(self.input_shape_):
                raise ValueError(
                    f"{name}: expected samples of shape {tuple(self.input_shape_)}, got {arr.shape[1:]}"
                )
        return arr

    def _prep_x(self, arr: np.ndarray) -> np.ndarray:
        """Raw samples -> network input (standardised for gaussian; channel axis for conv)."""
        if self.likelihood_ == "gaussian":
            arr = (arr - self.mean_) / self.scale_
        if self.arch_ == "conv2d" and arr.ndim == 3:
            arr = arr[:, None]
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _post_x(self, logits):
        """Decoder output (torch) -> samples in the input space (numpy float32)."""
        import torch

        if self.likelihood_ == "bernoulli":
            out = torch.sigmoid(logits)
        else:
            out = logits
        out = out.detach().float().cpu().numpy()
        if self.arch_ == "conv2d" and len(self.input_shape_) == 2:
            out = out[:, 0]
        if self.likelihood_ == "gaussian":
            out = out * self.scale_ + self.mean_
        return out.astype(np.float32, copy=False)

    # ---------------------------------------------------------------- conditions
    def _cond_matrix(
        self, condition: Any, n: int, name: str = "condition", allow_unknown: bool = False
    ):
        """Conditions -> float32 matrix (n, n_conditions) of one-hot / probability rows."""
        K = self.n_conditions_
        if condition is None:
            raise ValueError(f"{name}: a ConditionalVAE needs a condition, got None")
        if isinstance(condition, numbers.Integral) and not isinstance(condition, bool):
            condition = np.full(n, int(condition))
        arr = check_array(condition, name=name, ndim=(1, 2), dtype=None)
        if arr.shape[0] != n:
            raise ValueError(
                f"{name}: expected {n} rows to match the samples, got shape {arr.shape}"
            )
        if arr.ndim == 2:
            if arr.shape[1] != K:
                raise ValueError(
                    f"{name}: expected probability rows of width {K}, got shape {arr.shape}"
                )
            arr = arr.astype(np.float32)
            if (arr < -1e-6).any() or not np.allclose(arr.sum(1), 1.0, atol=1e-4):
                raise ValueError(f"{name}: expected non-negative probability rows summing to 1")
            return arr
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise TypeError(f"{name}: expected integer conditions, got dtype {arr.dtype}")
            arr = arr.astype(np.int64)
        lo = -1 if allow_unknown else 0
        if arr.size and (arr.min() < lo or arr.max() >= K):
            raise ValueError(
                f"{name}: expected integer conditions in [{lo}, {K - 1}], got values in "
                f"[{arr.min()}, {arr.max()}]"
            )
        out = np.zeros((n, K), dtype=np.float32)
        known = arr >= 0
        out[np.flatnonzero(known), arr[known]] = 1.0
        return out

    # ---------------------------------------------------------------- fit
    def _check_labels(self, y: Any, n: int, name: str) -> np.ndarray:
        if y is None:
            return np.full(n, -1, dtype=np.int64)
        arr = check_array(y, name=name, ndim=1, dtype=None)
        if arr.shape[0] != n:
            raise ValueError(
                f"{name}: expected {n} labels to match the samples, got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise TypeError(
                    f"{name}: expected integer labels (-1 = unlabeled), got dtype {arr.dtype}"
                )
        arr = arr.astype(np.int64)
        if arr.size and arr.min() < -1:
            raise ValueError(f"{name}: expected labels >= -1 (-1 = unlabeled), got min {arr.min()}")
        return arr

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        X_val: Any = None,
        y_val: Any = None,
        X_labeled: Any = None,
        y_labeled: Any = None,
    ) -> VAE:
        """Train encoder, decoder and head jointly.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, *input_shape)
        y : array-like of shape (n_samples,), optional
            Integer class labels, ``-1`` for unlabeled rows. Without labels the head is not
            built and ``classify`` raises.
        X_val, y_val : optional
            Held-out rows for early stopping.
        X_labeled, y_labeled : optional
            Extra labeled rows appended to ``X`` (e.g. an unlabeled pool as ``X`` and the
            labeled set here: the reconstruction learns from all rows, the head from these).

        Returns
        -------
        self
        """
        X, y = self._merge_labeled(X, y, X_labeled, y_labeled)
        return self._fit(X, y, X_val, y_val, {})

    def _merge_labeled(self, X, y, X_labeled, y_labeled):
        if X_labeled is None and y_labeled is None:
            return X, y
        if X_labeled is None or y_labeled is None:
            raise ValueError("X_labeled, y_labeled: expected both or neither, got only one")
        Xa = check_array(X, name="X", ndim=(2, 3, 4), dtype=np.float32)
        Xl = check_array(X_labeled, name="X_labeled", ndim=Xa.ndim, min_rows=0, dtype=np.float32)
        if Xl.shape[1:] != Xa.shape[1:]:
            raise ValueError(
                f"X_labeled: expected samples of shape {Xa.shape[1:]}, got {Xl.shape[1:]}"
            )
        ya = self._check_labels(y, Xa.shape[0], "y")
        yl = self._check_labels(y_labeled, Xl.shape[0], "y_labeled")
        return np.concatenate([Xa, Xl]), np.concatenate([ya, yl])

    def _fit(self, X, y, X_val, y_val, fit_kw):
        import torch

        self._check_params()
        self.device_ = X.device if is_torch(X) else None
        arr = self._as_numpy_x(X, "X", fitting=True)
        n = arr.shape[0]
        if n < 2:
            raise ValueError(f"X: expected at least 2 rows to train on, got shape {arr.shape}")
        self.input_shape_ = tuple(arr.shape[1:])
        yv = self._check_labels(y, n, "y")
        # architecture and likelihood
        is_image = arr.ndim in (3, 4) and arr.shape[-1] % 2 == 0 and arr.shape[-2] % 2 == 0
        if self.arch == "auto":
            self.arch_ = "conv2d" if is_image else "mlp"
        else:
            self.arch_ = self.arch
            if self.arch_ == "conv2d" and not is_image:
                raise ValueError(
                    f"arch: 'conv2d' needs images of shape (n, H, W) or (n, C, H, W) with even H, W; "
                    f"got X of shape {arr.shape}"
                )
        in01 = bool(arr.min() >= 0.0 and arr.max() <= 1.0)
        if self.likelihood == "auto":
            self.likelihood_ = "bernoulli" if in01 else "gaussian"
        else:
            self.likelihood_ = self.likelihood
            if self.likelihood_ == "bernoulli" and not in01:
                raise ValueError(
                    f"likelihood: 'bernoulli' needs X in [0, 1], got values in [{arr.min():.3g}, {arr.max():.3g}]"
                )
        self.mean_ = arr.mean(axis=0).astype(np.float32)
        self.scale_ = arr.std(axis=0).astype(np.float32)
        self.scale_[self.scale_ < 1e-6] = 1.0
        labeled = yv[yv >= 0]
        yval = None
        if X_val is not None:
            xval = self._as_numpy_x(X_val, "X_val")
            yval = self._check_labels(y_val, xval.shape[0], "y_val")
            labeled = np.concatenate([labeled, yval[yval >= 0]])
        self.n_classes_ = int(labeled.max()) + 1 if labeled.size else 0
        if self.n_classes is not None:
            if not isinstance(self.n_classes, numbers.Integral) or self.n_classes < 2:
                raise ValueError(f"n_classes: expected an int >= 2, got {self.n_classes!r}")
            if self.n_classes_ > self.n_classes:
                raise ValueError(
                    f"y: expected labels < n_classes={self.n_classes}, got max {self.n_classes_ - 1}"
                )
            self.n_classes_ = int(self.n_classes)
        targets, targets_val = self._fit_targets(yv, yval, n, fit_kw, X_val)

        rng = check_random_state(self.random_state)
        from .device import resolve_device

        dev = self.device_ if self.device_ is not None else resolve_device(self.device)
        self.device_ = dev
        ch_shape = (
            self.input_shape_
            if len(self.input_shape_) != 2 or self.arch_ != "conv2d"
            else (1, *self.input_shape_)
        )
        from ._validation import torch_generator
        from .training import init_parameters, train

        # default init draws from torch's global generator: fork it so the caller's stream is
        # untouched, then re-initialise every layer from our own seeded generator
        with torch.random.fork_rng(devices=[]):
            module = _build_module(
                self.arch_,
                ch_shape,
                int(self.latent_dim),
                tuple(int(h) for h in self.hidden),
                self._n_cond_for_module(),
                self._n_classes_for_module(),
                self._head_on(),
            )
        init_parameters(module, torch_generator(rng, "cpu"))
        module = module.to(dev)
        noise_gen = torch_generator(rng, dev)
        loss_fn = self._make_loss(noise_gen)

        Xp = self._prep_x(arr)
        Xv = self._prep_x(self._as_numpy_x(X_val, "X_val")) if X_val is not None else None
        # train() takes non-negative 1-D int targets: pack (label, condition), -1 = unknown
        self.history_ = train(
            module,
            Xp,
            self._pack(targets),
            X_val=Xv,
            y_val=None if targets_val is None else self._pack(targets_val),
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            warmup_frac=self.warmup_frac,
            patience=self.patience,
            device=dev,
            random_state=rng,
            loss_fn=loss_fn,
        )
        module.eval()
        self.module_ = module
        return self

    # hooks the conditional model overrides
    def _fit_targets(self, yv, yval, n, fit_kw, X_val):
        return yv, yval

    def _pack(self, targets: np.ndarray) -> np.ndarray:
        """label (and condition) with -1 = unknown -> one non-negative int per row."""
        if targets.ndim == 1:
            return (targets + 1).astype(np.int64)
        base = self.n_conditions_ + 1
        return ((targets[:, 0] + 1) * base + (targets[:, 1] + 1)).astype(np.int64)

    def _unpack(self, yb):
        if not self._conditional:
            return yb.long() - 1, None
        base = self.n_conditions_ + 1
        yb = yb.long()
        return yb // base - 1, yb % base - 1

    def _n_cond_for_module(self) -> int:
        return 0

    def _n_classes_for_module(self) -> int:
        return self.n_classes_

    def _head_on(self) -> str:
        return "latent"

    def _recon_kl(self, module, xb, c):
        """Per-row reconstruction and KL (nats) and the latent mean."""
        import torch
        import torch.nn.functional as F

        feat = module.features(xb)
        mu, logvar = module.stats(feat, c)
        if module.training:  # reparameterised draw; the validation loss uses z = mu (deterministic)
            eps = torch.randn(mu.shape, generator=self._noise_gen, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps
        else:
            z = mu
        logits = module.decode_logits(z, c).float()
        mu, logvar = mu.float(), logvar.float()
        dims = tuple(range(1, xb.ndim))
        if self.likelihood_ == "bernoulli":
            recon = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").sum(dims)
        else:
            recon = 0.5 * ((logits - xb) ** 2).sum(dims)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return recon, kl, mu, feat

    @staticmethod
    def _ce(logits, labels):
        import torch.nn.functional as F

        mask = labels >= 0
        if not bool(mask.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[mask], labels[mask], reduction="sum") / labels.shape[0]

    def _make_loss(self, noise_gen):
        self._noise_gen = noise_gen
        beta, gamma = float(self.beta), float(self.gamma)

        def loss_fn(module, xb, yb):
            recon, kl, mu, _ = self._recon_kl(module, xb, None)
            loss = (recon + beta * kl).mean()
            if module.class_head is not None and gamma > 0:
                loss = loss + gamma * self._ce(module.class_head(mu), self._unpack(yb)[0])
            return loss

        return loss_fn

    # ---------------------------------------------------------------- inference
    def _batches(self, n: int):
        from .device import chunk_rows

        per_row = 4 * (int(np.prod(self.input_shape_)) * 64 + 1024)
        step = chunk_rows(per_row, device=self.device_, min_rows=256, max_rows=16384)
        for start in range(0, n, step):
            yield slice(start, min(n, start + step))

    def _to_device(self, arr: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device_)

    @staticmethod
    def _like_input(out: np.ndarray, ref: Any):
        """Return torch output on the input's device when the input was a tensor."""
        if is_torch(ref):
            import torch

            return torch.from_numpy(out).to(ref.device)
        return out

    def encode(self, X: Any) -> Any:
        """The encoder f: mean of q(z | x).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, *input_shape)

        Returns
        -------
        Z : ndarray (float32) of shape (n_samples, latent_dim); a tensor on X's device when
            X is a tensor.
        """
        import torch

        self._check_fitted()
        arr = self._as_numpy_x(X, "X")
        Xp = self._prep_x(arr)
        out = np.empty((arr.shape[0], self.latent_dim), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(arr.shape[0]):
                feat = self.module_.features(self._to_device(Xp[sl]))
                mu, _ = self.module_.stats(feat, None)
                out[sl] = mu.float().cpu().numpy()
        return self._like_input(out, X)

    def _check_z(self, z: Any) -> np.ndarray:
        arr = check_array(z, name="z", ndim=2, dtype=np.float32)
        if arr.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected shape (n, {self.latent_dim}), got {arr.shape}")
        return arr

    def decode(self, z: Any, condition: Any = None) -> Any:
        """The generator g: decoder mean for latent codes ``z``.

        Parameters
        ----------
        z : array-like or torch.Tensor of shape (n_samples, latent_dim)
        condition : None
            Must be None for the unconditional VAE (present for the :class:`Generator` protocol).

        Returns
        -------
        X : ndarray (float32) of shape (n_samples, *input_shape); pixel probabilities for the
            bernoulli likelihood, values in the input scale for the gaussian one.
        """
        import torch

        self._check_fitted()
        if condition is not None:
            raise ValueError(
                f"condition: the unconditional VAE takes condition=None, got {type(condition).__name__}; "
                "use ConditionalVAE for g(z, c)"
            )
        zz = self._check_z(z)
        out = np.empty((zz.shape[0], *self.input_shape_), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(zz.shape[0]):
                out[sl] = self._post_x(self.module_.decode_logits(self._to_device(zz[sl]), None))
        return self._like_input(out, z)

    def reconstruct(self, X: Any) -> Any:
        """``decode(encode(X))`` (decoder mean at the latent mean), same shape as X."""
        return self.decode(self.encode(X))

    def classify(self, X: Any) -> Any:
        """The head h: class probabilities of shape (n_samples, n_classes), read from f(x)."""
        import torch

        self._check_fitted()
        if not self.n_classes_:
            raise RuntimeError(
                f"{type(self).__name__} was fitted without labels: classify needs y in fit"
            )
        arr = self._as_numpy_x(X, "X")
        Xp = self._prep_x(arr)
        out = np.empty((arr.shape[0], self.n_classes_), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(arr.shape[0]):
                logits, _ = self.module_(self._to_device(Xp[sl]))
                out[sl] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return self._like_input(out, X)

    def sample(self, n: int, *, condition: Any = None, random_state: Any = None) -> np.ndarray:
        """Decode ``n`` draws from the prior N(0, I); returns shape (n, *input_shape)."""
        self._check_fitted()
        if not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n: expected a non-negative int, got {n!r}")
        rng = check_random_state(random_state)
        z = rng.standard_normal((int(n), self.latent_dim)).astype(np.float32)
        return self.decode(z, condition) if self._conditional else self.decode(z)

    # ---------------------------------------------------------------- persistence
    _STATE = (
        "input_shape_",
        "arch_",
        "likelihood_",
        "mean_",
        "scale_",
        "n_classes_",
        "n_conditions_",
        "condition_is_label_",
        "history_",
    )
    #: fitted numpy arrays, saved as tensors (everything else of _STATE is JSON)
    _ARRAY_STATE = ("mean_", "scale_")
    _FORMAT = "gapscope.vae"
    _FORMAT_VERSION = 2

    def get_params(self) -> dict:
        """The constructor's parameters (scikit-learn style)."""
        import inspect

        names = [
            p
            for p in inspect.signature(type(self).__init__).parameters
            if p not in ("self", "kwargs")
        ]
        names += [p for p in inspect.signature(VAE.__init__).parameters if p not in ("self",)]
        return {k: getattr(self, k) for k in dict.fromkeys(names) if hasattr(self, k)}

    def save(self, path: Any) -> None:
        """Write parameters, fitted state and weights to ``path`` (a file object or a path,
        written atomically).

        The file holds tensors (the weights and the fitted arrays) and one JSON string
        (parameters and the rest of the fitted state), so :meth:`load` reads it with
        ``torch.load(..., weights_only=True)``: no pickled object, no code runs on load.
        """
        import json

        import torch

        from ._io import json_default, write_binary

        self._check_fitted()
        params = self.get_params()
        rs = params.get("random_state")
        if not (rs is None or isinstance(rs, numbers.Integral)):
            params["random_state"] = None  # a Generator object is not portable
        state = {k: getattr(self, k) for k in self._STATE if hasattr(self, k)}
        arrays = {
            k: torch.from_numpy(np.ascontiguousarray(state.pop(k)))
            for k in self._ARRAY_STATE
            if k in state
        }

        def portable(o: Any) -> Any:
            if isinstance(o, torch.device):
                return str(o)
            return json_default(o)

        try:
            meta = json.dumps(
                {
                    "format": self._FORMAT,
                    "version": self._FORMAT_VERSION,
                    "class": type(self).__name__,
                    "params": params,
                    "state": state,
                },
                default=portable,
            )
        except TypeError as exc:
            raise ValueError(
                f"save: every parameter must be JSON-serialisable to be saved ({exc})"
            ) from None
        weights = {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}
        blob = {"meta": meta, "arrays": arrays, "weights": weights}
        write_binary(path, lambda fh: torch.save(blob, fh))

    @classmethod
    def _read_checkpoint(cls, path: Any) -> dict:
        """The checkpoint's parts, read with ``weights_only=True``; ValueError naming ``path``."""
        import json
        import pickle
        import warnings

        import torch

        where = getattr(path, "name", path)
        try:
            with warnings.catch_warnings():  # torch's notes on a foreign pickle's protocol
                warnings.simplefilter("ignore")
                blob = torch.load(
                    path if hasattr(path, "read") else str(path),
                    map_location="cpu",
                    weights_only=True,
                )
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"path: {str(where)!r} is not a weights-only {cls.__name__} checkpoint; refusing to "
                f"unpickle it (it holds Python objects: crafted, or written by an older gapscope; "
                f"refit the model and save it again): {first}"
            ) from None
        except Exception as exc:
            raise ValueError(
                f"path: cannot read the {cls.__name__} checkpoint {str(where)!r} (torn or corrupt?): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        ok = (
            isinstance(blob, dict)
            and isinstance(blob.get("meta"), str)
            and isinstance(blob.get("weights"), dict)
            and isinstance(blob.get("arrays"), dict)
        )
        meta = None
        if ok:
            try:
                meta = json.loads(blob["meta"])
            except ValueError:
                meta = None
        if not isinstance(meta, dict) or meta.get("format") != cls._FORMAT:
            raise ValueError(
                f"path: {str(where)!r} is not a gapscope VAE checkpoint written by save()"
            )
        return {"meta": meta, "arrays": blob["arrays"], "weights": blob["weights"]}

    @classmethod
    def load(cls, path: Any, *, device: Any = "auto") -> VAE:
        """Rebuild a model written by :meth:`save`, on ``device``.

        Read with ``torch.load(..., weights_only=True)``: a file holding pickled Python
        objects (crafted, or a pre-0.2 checkpoint) is refused with a ValueError, as is a
        torn or corrupt one; both name the file.
        """
        import torch

        from .device import resolve_device

        parts = cls._read_checkpoint(path)
        meta = parts["meta"]
        if meta.get("class") != cls.__name__:
            raise ValueError(f"path: expected a saved {cls.__name__}, got {meta.get('class')!r}")
        # JSON has no tuples: the constructor's tuple parameters (hidden) come back as lists
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
        obj = cls(**params)  # type: ignore[arg-type]  # the saved get_params()
        for k, v in meta["state"].items():
            setattr(obj, k, tuple(v) if k == "input_shape_" else v)
        for k, t in parts["arrays"].items():
            if k in cls._ARRAY_STATE:
                setattr(obj, k, t.numpy())
        ch = obj.input_shape_
        if obj.arch_ == "conv2d" and len(ch) == 2:
            ch = (1, *ch)
        with torch.random.fork_rng(devices=[]):
            module = _build_module(
                obj.arch_,
                ch,
                int(obj.latent_dim),
                tuple(int(h) for h in obj.hidden),
                obj._n_cond_for_module(),
                obj._n_classes_for_module(),
                obj._head_on(),
            )
        try:
            module.load_state_dict(parts["weights"])
        except (RuntimeError, KeyError) as exc:
            raise ValueError(
                f"path: the weights in {str(getattr(path, 'name', path))!r} do not fit the saved "
                f"architecture: {exc}"
            ) from None
        obj.device_ = resolve_device(device)
        obj.module_ = module.to(obj.device_).eval()
        return obj


class ConditionalVAE(VAE):
    """Conditional VAE: q(z | x, c) and g(z, c), with heads for the class and the condition.

    The condition c is a class or an attribute index (e.g. the ``"mixture"`` dataset's
    sensitive attribute), fed to encoder and decoder as a one-hot vector. Rows whose
    condition is unknown (-1) are fed the condition head's current prediction (detached),
    so unlabeled rows still train the reconstruction.

    Parameters
    ----------
    n_conditions : int, optional
        Number of conditions; inferred from the training conditions when None.
    **kwargs
        As for :class:`VAE`.

    Notes
    -----
    The latent mean of a conditional model depends on c. :meth:`encode` without a condition
    uses the condition head's prediction (the condition a model would assign), so f is
    usable on unlabeled data. Because the code z then carries what c does not (style), the
    class head h reads the encoder's trunk features rather than the latent mean.
    """

    _conditional = True

    def __init__(
        self, latent_dim: int = 8, *, n_conditions: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(latent_dim, **kwargs)
        self.n_conditions = n_conditions

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        condition: Any = None,
        X_val: Any = None,
        y_val: Any = None,
        condition_val: Any = None,
        X_labeled: Any = None,
        y_labeled: Any = None,
    ) -> ConditionalVAE:
        """Train on (X, c) with optional class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, *input_shape)
        y : array-like of shape (n_samples,), optional
            Class labels (-1 = unlabeled), used by the class head and, when ``condition`` is
            None, as the condition.
        condition : array-like of shape (n_samples,), optional
            Condition index per row (-1 = unknown). Defaults to ``y``.
        X_val, y_val, condition_val : optional
            Held-out rows for early stopping.
        X_labeled, y_labeled : optional
            Extra labeled rows appended to ``X`` (only when the conditions are the labels).
        """
        if X_labeled is not None or y_labeled is not None:
            if condition is not None:
                raise ValueError(
                    "X_labeled: extra labeled rows need the conditions to be the labels (condition=None)"
                )
            X, y = self._merge_labeled(X, y, X_labeled, y_labeled)
        if y is None and condition is None and self.n_classes is None:
            raise ValueError(
                "condition: a ConditionalVAE needs conditions (condition=...) or labels (y=...)"
            )
        return self._fit(
            X, y, X_val, y_val, {"condition": condition, "condition_val": condition_val}
        )

    def _fit_targets(self, yv, yval, n, fit_kw, X_val):
        cond = fit_kw.get("condition")
        cond_val = fit_kw.get("condition_val")
        self.condition_is_label_ = cond is None
        c = yv if cond is None else self._check_labels(cond, n, "condition")
        cv = None
        if X_val is not None:
            nv = yval.shape[0]
            cv = (
                yval
                if cond is None
                else (
                    self._check_labels(cond_val, nv, "condition_val")
                    if cond_val is not None
                    else np.full(nv, -1, dtype=np.int64)
                )
            )
        known = c[c >= 0] if cv is None else np.concatenate([c[c >= 0], cv[cv >= 0]])
        if self.n_conditions is None and self.condition_is_label_ and self.n_classes is not None:
            self.n_conditions_ = int(self.n_classes)
        elif self.n_conditions is None:
            if not known.size:
                raise ValueError("condition: no row has a known condition (all -1)")
            self.n_conditions_ = int(known.max()) + 1
        else:
            if not isinstance(self.n_conditions, numbers.Integral) or self.n_conditions < 1:
                raise ValueError(
                    f"n_conditions: expected a positive int, got {self.n_conditions!r}"
                )
            self.n_conditions_ = int(self.n_conditions)
        if known.size and known.max() >= self.n_conditions_:
            raise ValueError(
                f"condition: expected values in [-1, {self.n_conditions_ - 1}], got max {known.max()}"
            )
        if self.condition_is_label_:
            self.n_classes_ = max(self.n_classes_, self.n_conditions_)
        targets = np.stack([yv, c], axis=1)
        targets_val = np.stack([yval, cv], axis=1) if X_val is not None else None
        return targets, targets_val

    def _n_cond_for_module(self) -> int:
        return self.n_conditions_

    def _n_classes_for_module(self) -> int:
        return 0 if self.condition_is_label_ else self.n_classes_

    def _head_on(self) -> str:
        return "trunk"

    def _make_loss(self, noise_gen):
        import torch

        self._noise_gen = noise_gen
        beta, gamma = float(self.beta), float(self.gamma)
        K = self.n_conditions_
        same = self.condition_is_label_

        def loss_fn(module, xb, yb):
            labels, cond = self._unpack(yb)
            feat = module.features(xb)
            cond_logits = module.cond_head(feat)
            soft = torch.softmax(cond_logits.detach(), dim=1)
            onehot = torch.nn.functional.one_hot(cond.clamp(min=0), K).to(soft.dtype)
            c = torch.where((cond >= 0)[:, None], onehot, soft)
            recon, kl, _, _ = self._recon_kl(module, xb, c)
            loss = (recon + beta * kl).mean()
            if gamma > 0:
                loss = loss + gamma * self._ce(cond_logits, cond)
                if not same and module.class_head is not None:
                    loss = loss + gamma * self._ce(module.class_head(feat), labels)
            return loss

        return loss_fn

    def _infer_condition(self, Xp: np.ndarray):
        import torch

        probs = np.empty((Xp.shape[0], self.n_conditions_), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(Xp.shape[0]):
                feat = self.module_.features(self._to_device(Xp[sl]))
                probs[sl] = torch.softmax(self.module_.cond_head(feat).float(), dim=1).cpu().numpy()
        return probs

    def predict_condition(self, X: Any) -> np.ndarray:
        """Condition probabilities of shape (n_samples, n_conditions) from the condition head."""
        self._check_fitted()
        return self._infer_condition(self._prep_x(self._as_numpy_x(X, "X")))

    def encode(self, X: Any, condition: Any = None) -> Any:
        """Mean of q(z | x, c); shape (n_samples, latent_dim).

        ``condition`` (int, ints of shape (n,), or probabilities of shape (n, n_conditions));
        when None the condition head's prediction (one-hot of its argmax) is used.
        """
        import torch

        self._check_fitted()
        arr = self._as_numpy_x(X, "X")
        n = arr.shape[0]
        Xp = self._prep_x(arr)
        if condition is None:
            pred = self._infer_condition(Xp).argmax(1)
            C = np.eye(self.n_conditions_, dtype=np.float32)[pred]
        else:
            C = self._cond_matrix(condition, n)
        out = np.empty((n, self.latent_dim), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(n):
                feat = self.module_.features(self._to_device(Xp[sl]))
                mu, _ = self.module_.stats(feat, self._to_device(C[sl]))
                out[sl] = mu.float().cpu().numpy()
        return self._like_input(out, X)

    def decode(self, z: Any, condition: Any = None) -> Any:
        """g(z, c): decoder mean; ``condition`` is required (int, ints (n,) or probs (n, K))."""
        import torch

        self._check_fitted()
        zz = self._check_z(z)
        C = self._cond_matrix(condition, zz.shape[0])
        out = np.empty((zz.shape[0], *self.input_shape_), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(zz.shape[0]):
                logits = self.module_.decode_logits(self._to_device(zz[sl]), self._to_device(C[sl]))
                out[sl] = self._post_x(logits)
        return self._like_input(out, z)

    def reconstruct(self, X: Any, condition: Any = None) -> Any:
        """``decode(encode(X, c), c)`` with c given or inferred by the condition head."""
        self._check_fitted()
        arr = self._as_numpy_x(X, "X")
        if condition is None:
            condition = self._infer_condition(self._prep_x(arr)).argmax(1)
        return self.decode(self.encode(X, condition), condition)

    def classify(self, X: Any) -> Any:
        """Class probabilities (n_samples, n_classes) from the class head on the trunk features."""
        import torch

        self._check_fitted()
        if self.condition_is_label_:
            out = self._infer_condition(self._prep_x(self._as_numpy_x(X, "X")))
            return self._like_input(out, X)
        if not self.n_classes_:
            raise RuntimeError("ConditionalVAE was fitted without labels: classify needs y in fit")
        arr = self._as_numpy_x(X, "X")
        Xp = self._prep_x(arr)
        out = np.empty((arr.shape[0], self.n_classes_), dtype=np.float32)
        with torch.no_grad():
            for sl in self._batches(arr.shape[0]):
                feat = self.module_.features(self._to_device(Xp[sl]))
                out[sl] = torch.softmax(self.module_.class_head(feat).float(), dim=1).cpu().numpy()
        return self._like_input(out, X)
