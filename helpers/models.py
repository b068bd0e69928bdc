"""Small torch classifiers, a batched ensemble, and the model side of the loop's seam.

The curation loop calls any model that follows the :class:`Model` protocol:
``fit(X, y) -> self`` and ``predict_proba(X) -> (M, n, C)``, optionally ``embed(X) -> (n, k)``
and ``save(path)`` / ``load(path)``. This module ships four such models:

- :class:`Ensemble`: gapscope's own small torch classifiers (:class:`MLP`, :class:`CNN2d`,
  :class:`CNN1d`), M independently seeded members evaluated in ONE batched computation
  (``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``; a plain loop over
  members, ``batched=False``, agrees to float32 rounding);
- :class:`SklearnEnsemble`: M seeded clones of any scikit-learn classifier;
- :class:`TorchEnsemble`: M members built by the user's ``torch.nn.Module`` factory;
- :class:`FrozenEncoder`: a frozen embedding function with a light trainable head.

Every classifier's ``forward(x)`` returns ``(logits, embedding)`` (a user module of
:class:`TorchEnsemble` may return only logits). Training goes through the one loop,
:func:`gapscope.helpers.training.train` (AdamW, warmup + cosine decay, early stopping, bf16 autocast
on CUDA only).

Randomness: parameter initialisation uses an explicit ``torch.Generator`` (see
:func:`gapscope.helpers.training.init_parameters`), minibatch order another; nothing calls
``torch.manual_seed``. On the CPU, the same seed gives bit-identical weights.
"""

from __future__ import annotations

import copy
import hashlib
import math
import numbers
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ._io import write_binary
from ._validation import check_array, check_choice, check_random_state, is_torch
from .device import chunk_rows, resolve_device
from .training import (
    SEEDED_LAYERS,
    _check_labels,
    _check_validation_fraction,
    _holdout_split,
    init_parameters,
    train,
    unseeded_modules,
)

__all__ = [
    "Model",
    "MLP",
    "CNN2d",
    "CNN1d",
    "ARCHS",
    "make_classifier",
    "Ensemble",
    "SklearnEnsemble",
    "TorchEnsemble",
    "FrozenEncoder",
]


# --------------------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------------------
@runtime_checkable
class Model(Protocol):
    """What the curation loop calls on a model: the model side of the seam.

    Only ``fit(X, y)`` and ``predict_proba(X)`` are required. ``isinstance(obj, Model)``
    checks that both exist (not their signatures).

    Methods
    -------
    fit(X, y, *, X_val=None, y_val=None, sample_weight=None, n_classes=None, random_state=None)
        Train on X of shape (n, *feature_shape) and int labels y of shape (n,); returns the
        fitted model (``self``). Only ``fit(X, y)`` is required: the loop passes each keyword
        only when the model's ``fit`` signature accepts it. ``X_val, y_val``: a validation
        split (early stopping). ``sample_weight``: array of shape (n,). ``n_classes``:
        overrides the constructor's; in active learning the first labeled set may miss
        classes, yet ``predict_proba`` must have ``n_classes`` columns. ``random_state``:
        overrides the constructor's seed for this fit (the loop derives one per round, so
        a resumed run is identical).
    predict_proba(X)
        Array of shape (M, n, C), float32: the class probabilities of each of M members
        (M = 1 is allowed); each row sums to 1.
    embed(X), optional
        Array of shape (n, k): the fused embedding used for diversity, density and maps.
        Without it the loop uses the flattened input.
    save(path), optional
        Write the fitted model to ``path``.
    load(path), optional
        Return a fitted model read from ``path``. The loop calls it on an UNFITTED
        template (``template.load(path)``), so it may be a classmethod or an instance
        method that returns a new fitted model.

    See Also
    --------
    Ensemble, SklearnEnsemble, TorchEnsemble, FrozenEncoder : the shipped models.

    Examples
    --------
    A nearest-centroid model with one member follows the protocol:

    >>> import numpy as np
    >>> class Centroid:
    ...     def fit(self, X, y):
    ...         self.means_ = np.stack([X[y == c].mean(0) for c in range(y.max() + 1)])
    ...         return self
    ...     def predict_proba(self, X):
    ...         logits = -((X[:, None, :] - self.means_[None]) ** 2).sum(-1)
    ...         p = np.exp(logits - logits.max(1, keepdims=True))
    ...         return (p / p.sum(1, keepdims=True))[None].astype(np.float32)
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [0.9, 1.0]])
    >>> m = Centroid().fit(X, np.array([0, 0, 1, 1]))
    >>> isinstance(m, Model), m.predict_proba(X).shape
    (True, (1, 4, 2))
    """

    def fit(self, X: Any, y: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


# --------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------
class MLP(nn.Module):
    """A ReLU multilayer perceptron; input of any shape (n, ...) is flattened.

    Parameters
    ----------
    in_features : int
        Number of input features after flattening.
    n_classes : int
    hidden : tuple of int, default (256, 256)
        Hidden widths; the last one is the embedding size k.
    """

    def __init__(
        self, in_features: int, n_classes: int, hidden: tuple[int, ...] = (256, 256)
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden: expected a non-empty tuple of positive widths, got {hidden}")
        layers: list[nn.Module] = []
        width = int(in_features)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, int(n_classes))
        self.embedding_dim = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.body(x.flatten(1))
        return self.head(emb), emb


class CNN2d(nn.Module):
    """A small CNN for 8x8 images: two 3x3 convolutions, 2x2 max-pool, a 128-unit layer.

    Input of shape (n, H, W) or (n, in_channels, H, W) with H, W even (8x8 digits).
    The embedding (k = 128) is the activation before the output layer.
    """

    def __init__(
        self, n_classes: int, in_channels: int = 1, image_size: tuple[int, int] = (8, 8)
    ) -> None:
        super().__init__()
        h, w = (int(s) for s in image_size)
        self.in_channels = int(in_channels)
        self.features = nn.Sequential(
            nn.Conv2d(self.in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(64 * (h // 2) * (w // 2), 128)
        self.head = nn.Linear(128, int(n_classes))
        self.embedding_dim = 128

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        emb = torch.relu(self.fc(self.features(x).flatten(1)))
        return self.head(emb), emb


class CNN1d(nn.Module):
    """A small 1-D CNN for signals of length ``length`` (mnist1d: 40).

    Two width-5 convolutions (the second with stride 2), then a 128-unit layer whose
    activation is the embedding. Input of shape (n, length) or (n, 1, length).
    """

    def __init__(self, n_classes: int, length: int = 40) -> None:
        super().__init__()
        self.length = int(length)
        self.features = nn.Sequential(
            nn.Conv1d(1, 32, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(32, 64, 5, padding=2, stride=2),
            nn.ReLU(),
        )
        out_len = (self.length + 2 * 2 - 5) // 2 + 1
        self.fc = nn.Linear(64 * out_len, 128)
        self.head = nn.Linear(128, int(n_classes))
        self.embedding_dim = 128

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        emb = torch.relu(self.fc(self.features(x).flatten(1)))
        return self.head(emb), emb


#: Largest forward chunk of the batched (vmap) pass on the CPU when batch_size="auto".
CPU_BATCHED_ROWS = 4096

#: Architecture names accepted by :func:`make_classifier` and :class:`Ensemble`.
ARCHS = ("mlp", "cnn2d", "cnn1d")
_KINDS = {"vector": "mlp", "image": "cnn2d", "signal": "cnn1d"}


def _resolve_arch(kind_or_arch: str, feature_shape: tuple[int, ...]) -> str:
    valid = ("auto", *ARCHS, *_KINDS)
    check_choice(kind_or_arch, name="kind_or_arch", choices=valid)
    if kind_or_arch in _KINDS:
        return _KINDS[kind_or_arch]
    if kind_or_arch == "auto":
        return "cnn2d" if len(feature_shape) == 2 else "mlp"
    return kind_or_arch


def make_classifier(
    kind_or_arch: str,
    *,
    n_classes: int,
    feature_shape: tuple[int, ...],
    hidden: tuple[int, ...] = (256, 256),
    random_state: Any = None,
) -> nn.Module:
    """Build a classifier for items of ``feature_shape``.

    Parameters
    ----------
    kind_or_arch : {"auto", "mlp", "cnn2d", "cnn1d", "vector", "image", "signal"}
        A dataset kind maps to mlp / cnn2d / cnn1d; ``"auto"`` picks cnn2d for 2-D
        items and mlp otherwise.
    n_classes : int
    feature_shape : tuple of int
        Shape of one item, e.g. (8, 8), (40,), (d,).
    hidden : tuple of int, default (256, 256)
        MLP hidden widths (ignored by the CNNs).
    random_state : None, int or numpy.random.Generator
        Seeds the initial weights (through :func:`init_parameters`).
    """
    if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    feature_shape = tuple(int(s) for s in feature_shape)
    arch = _resolve_arch(kind_or_arch, feature_shape)
    if arch == "cnn2d" and len(feature_shape) not in (2, 3):
        raise ValueError(
            f"feature_shape: expected (H, W) or (C, H, W) for cnn2d, got {feature_shape}"
        )
    if arch == "cnn1d" and len(feature_shape) != 1:
        raise ValueError(f"feature_shape: expected (length,) for cnn1d, got {feature_shape}")
    # built on the meta device (no memory, no draw from torch's global generator), then
    # materialised and initialised from our own generator
    with torch.device("meta"):
        if arch == "mlp":
            model: nn.Module = MLP(math.prod(feature_shape), n_classes, hidden)
        elif arch == "cnn2d":
            in_ch = 1 if len(feature_shape) == 2 else feature_shape[0]
            model = CNN2d(n_classes, in_channels=in_ch, image_size=feature_shape[-2:])
        else:
            model = CNN1d(n_classes, length=feature_shape[0])
    model = model.to_empty(device="cpu")
    rng = check_random_state(random_state)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    return init_parameters(model, gen)


# --------------------------------------------------------------------------------------
# Shared by the ensembles
# --------------------------------------------------------------------------------------
def _host_array(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable float32 array (copies read-only memmap chunks)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a if a.flags.writeable else a.copy()


def _check_n_members(n_members: Any) -> int:
    if isinstance(n_members, bool) or not isinstance(n_members, numbers.Integral) or n_members < 1:
        raise ValueError(f"n_members: expected an int >= 1, got {n_members!r}")
    return int(n_members)


def _resolve_n_classes(override: Any, param: Any, y: np.ndarray) -> int:
    """``override`` (fit's n_classes), else ``param`` (the constructor's), else ``y.max() + 1``."""
    n_classes = override if override is not None else param
    if n_classes is None:
        n_classes = int(y.max()) + 1
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(
            f"n_classes: expected an int >= 2 (or labels with at least 2 classes), got {n_classes!r}"
        )
    if y.max() >= n_classes:
        raise ValueError(f"y: expected labels < n_classes={n_classes}, got {int(y.max())}")
    return int(n_classes)


def _check_batch_size(batch_size: Any) -> Any:
    """``"auto"`` or a positive int."""
    if batch_size == "auto":
        return "auto"
    if (
        isinstance(batch_size, numbers.Integral)
        and not isinstance(batch_size, bool)
        and int(batch_size) >= 1
    ):
        return int(batch_size)
    raise ValueError(f"batch_size: expected 'auto' or an int >= 1, got {batch_size!r}")


def _check_items(X: Any, feature_shape: tuple[int, ...]) -> Any:
    """Validate inference input against the fitted item shape (numpy or torch, may be empty)."""
    if not is_torch(X):
        X = check_array(X, name="X", ndim=tuple(range(2, 8)), min_rows=0, dtype=np.float32)
    elif X.is_floating_point() and not bool(torch.isfinite(X).all()):
        raise ValueError("X: expected finite values, got NaN or inf")
    if tuple(X.shape[1:]) != feature_shape:
        raise ValueError(f"X: expected items of shape {feature_shape}, got {tuple(X.shape[1:])}")
    return X


def _check_fit_X(X: Any, device: Any) -> tuple[Any, torch.device]:
    """Training input (numpy -> float32 array, tensor kept) and the device to train on."""
    dev = X.device if is_torch(X) and device == "auto" else resolve_device(device)
    Xn = X if is_torch(X) else check_array(X, name="X", ndim=tuple(range(2, 8)), dtype=np.float32)
    return Xn, dev


def _rows(X: Any, idx: np.ndarray) -> Any:
    return X[torch.as_tensor(idx, device=X.device)] if is_torch(X) else X[idx]


def _validation_fold(
    est: Any, X: Any, y: np.ndarray, sample_weight: Any, rng: np.random.Generator
) -> tuple[Any, np.ndarray, Any, Any, Any, int]:
    """Hold out ``est.validation_fraction`` of the training rows as the early-stopping fold.

    Returns ``(X_train, y_train, w_train, X_val, y_val, n_validation)``; ``X_val`` is None
    (and every row trains) when the fold would have fewer than
    :data:`gapscope.helpers.training.MIN_VALIDATION_ROWS` rows. See
    :func:`gapscope.helpers.training._holdout_split` for the stratified, seeded draw.
    """
    w = None
    if sample_weight is not None:
        w = check_array(sample_weight, name="sample_weight", ndim=1, dtype=np.float32)
        if w.shape[0] != y.shape[0]:
            raise ValueError(
                f"sample_weight: expected {y.shape[0]} weights (one per row), got shape {w.shape}"
            )
    split = _holdout_split(y, est.validation_fraction, rng)
    if split is None:
        return X, y, w, None, None, 0
    tr, va = split
    return (
        _rows(X, tr),
        y[tr],
        None if w is None else w[tr],
        _rows(X, va),
        y[va],
        int(va.size),
    )


def _train_members(
    est: Any,
    build: Callable[[int], nn.Module],
    X: Any,
    y: np.ndarray,
    *,
    X_val: Any,
    y_val: Any,
    sample_weight: Any,
    device: torch.device,
    rng: np.random.Generator,
) -> tuple[list[nn.Module], list[dict], int]:
    """Build and train ``est.n_members`` torch members with :func:`train`; shared by
    :class:`Ensemble` and :class:`TorchEnsemble`.

    ``build(seed)`` returns a freshly initialised member. Each member draws (init seed,
    batch-order seed) from ``rng``, then its bootstrap sample when ``est.bootstrap``. With
    ``X_val`` None and ``est.validation_fraction`` set, one fold is held out first (see
    :func:`_validation_fold`). Returns (members, histories, n_validation).
    """
    n_val = 0
    if X_val is None and _check_validation_fraction(est.validation_fraction) is not None:
        X, y, sample_weight, X_val, y_val, n_val = _validation_fold(est, X, y, sample_weight, rng)
    members, histories = [], []
    n = X.shape[0]
    for _ in range(int(est.n_members)):
        init_seed, train_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
        model = build(init_seed)
        if est.bootstrap:
            idx = rng.integers(0, n, size=n)
            Xi, yi = _rows(X, idx), y[idx]
            wi = None if sample_weight is None else np.asarray(sample_weight)[idx]
        else:
            Xi, yi, wi = X, y, sample_weight
        hist = train(
            model,
            Xi,
            yi,
            X_val=X_val,
            y_val=y_val,
            epochs=est.epochs,
            lr=est.lr,
            weight_decay=est.weight_decay,
            batch_size=est.batch_size,
            warmup_frac=est.warmup_frac,
            patience=est.patience,
            class_weight=getattr(est, "class_weight", None),
            min_steps=est.min_steps,
            sample_weight=wi,
            device=device,
            random_state=train_seed,
        )
        members.append(model.eval())
        histories.append(hist)
    return members, histories, n_val


def _to_output(t: torch.Tensor, X: Any) -> Any:
    """A result tensor back in the input's kind: on X's device for tensors, numpy otherwise."""
    return t.to(X.device) if is_torch(X) else t.cpu().numpy()


# --------------------------------------------------------------------------------------
# Ensemble
# --------------------------------------------------------------------------------------
class Ensemble(BaseEstimator):
    """M independently seeded classifiers evaluated in one batched forward pass.

    Parameters
    ----------
    arch : {"auto", "mlp", "cnn2d", "cnn1d", "vector", "image", "signal"}, default "auto"
        "auto": cnn2d for items of shape (H, W), mlp otherwise.
    n_members : int, default 5
    n_classes : int, optional
        Number of classes. Default: ``y.max() + 1`` at fit time. Pass it explicitly in
        active learning, where the first labeled set may miss classes.
    hidden : tuple of int, default (256, 256)
        MLP widths.
    bootstrap : bool, default False
        Train each member on a bootstrap resample of the training set.
    epochs, lr, weight_decay, batch_size, warmup_frac, patience, class_weight
        Passed to :func:`gapscope.helpers.training.train` (defaults 30, 3e-3, 1e-4, 64, 0.1, 5, None).
    min_steps : int, default 0
        Passed to :func:`gapscope.helpers.training.train`: at least this many optimizer steps per
        member.
    validation_fraction : float in (0, 1), optional
        When ``fit`` gets no ``X_val``: hold out this fraction of the training rows
        (``ceil(fraction * n)``, seeded, stratified where every class keeps a row in
        training) as the early-stopping fold; the members train on the rest. A fold of fewer
        than :data:`gapscope.helpers.training.MIN_VALIDATION_ROWS` (10) rows is not held out: every
        row trains and there is no early stopping (fixed ``epochs`` / ``min_steps``). The
        count is recorded in ``n_validation_``, so every label the model uses is counted.
    batched : bool, default True
        Evaluate all members in one ``vmap`` pass; False loops over members (same result).
    device : str or torch.device, default "auto"
    random_state : None, int or numpy.random.Generator
        Seeds the validation fold, each member's initial weights, batch order and
        bootstrap sample.

    Attributes
    ----------
    members_ : list of torch.nn.Module
    n_classes_ : int
    feature_shape_ : tuple of int
    arch_ : str
    device_ : torch.device
    history_ : list of dict
        One :func:`gapscope.helpers.training.train` history per member.
    n_validation_ : int
        Training rows held out as the validation fold (0 with ``X_val`` or without a fold).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 4)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> ens = Ensemble(n_members=2, hidden=(16,), epochs=2, device="cpu", random_state=0).fit(X, y)
    >>> ens.predict_proba(X[:3]).shape, ens.embed(X[:3]).shape
    ((2, 3, 2), (3, 16))
    """

    members_: list[nn.Module]
    n_classes_: int
    feature_shape_: tuple[int, ...]
    arch_: str
    device_: torch.device
    history_: list[dict]
    n_validation_: int
    _stacked: Any = None

    def __init__(
        self,
        arch: str = "auto",
        n_members: int = 5,
        *,
        n_classes: int | None = None,
        hidden: tuple[int, ...] = (256, 256),
        bootstrap: bool = False,
        epochs: int = 30,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        warmup_frac: float = 0.1,
        patience: int | None = 5,
        class_weight: Any = None,
        min_steps: int = 0,
        validation_fraction: float | None = None,
        batched: bool = True,
        device: Any = "auto",
        random_state: Any = None,
    ) -> None:
        self.arch = arch
        self.n_members = n_members
        self.n_classes = n_classes
        self.hidden = hidden
        self.bootstrap = bootstrap
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.warmup_frac = warmup_frac
        self.patience = patience
        self.class_weight = class_weight
        self.min_steps = min_steps
        self.validation_fraction = validation_fraction
        self.batched = batched
        self.device = device
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        X_val: Any = None,
        y_val: Any = None,
        sample_weight: Any = None,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> Ensemble:
        """Train every member independently on (X, y); returns self.

        Parameters
        ----------
        X : array or tensor of shape (n, *feature_shape)
        y : array of shape (n,), int labels in [0, n_classes)
        X_val, y_val : optional validation data for early stopping (then
            ``validation_fraction`` is not used).
        sample_weight : array of shape (n,), optional
        n_classes : int, optional
            Overrides the constructor's ``n_classes`` for this fit.
        random_state : None, int or numpy.random.Generator, optional
            Overrides the constructor's ``random_state`` for this fit.
        """
        _check_n_members(self.n_members)
        Xn, dev = _check_fit_X(X, self.device)
        yn = _check_labels(y, n=Xn.shape[0], name="y")
        C = _resolve_n_classes(n_classes, self.n_classes, yn)
        feature_shape = tuple(int(s) for s in Xn.shape[1:])
        arch = _resolve_arch(self.arch, feature_shape)
        rng = check_random_state(self.random_state if random_state is None else random_state)

        def build(seed: int) -> nn.Module:
            return make_classifier(
                arch,
                n_classes=C,
                feature_shape=feature_shape,
                hidden=self.hidden,
                random_state=seed,
            )

        members, histories, n_val = _train_members(
            self,
            build,
            Xn,
            yn,
            X_val=X_val,
            y_val=y_val,
            sample_weight=sample_weight,
            device=dev,
            rng=rng,
        )
        self.members_ = members
        self.n_classes_ = C
        self.feature_shape_ = feature_shape
        self.arch_ = arch
        self.device_ = dev
        self.history_ = histories
        self.n_validation_ = n_val
        self._stacked = None
        return self

    # -- inference ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise ValueError(
                "Ensemble: this instance is not fitted yet; call fit(X, y) or load_state_dict first"
            )

    @property
    def embedding_dim_(self) -> int:
        """Size k of each member's embedding."""
        self._check_fitted()
        return int(self.members_[0].embedding_dim)  # type: ignore[arg-type]

    def bytes_per_row(self) -> int:
        """Approximate working memory of one item in a forward pass (for chunk sizing)."""
        self._check_fitted()
        widths = sum(
            p.shape[0] for name, p in self.members_[0].named_parameters() if name.endswith("bias")
        )
        feat = math.prod(self.feature_shape_)
        if self.arch_ != "mlp":
            widths += 64 * feat  # conv activations dominate
        return int(4 * (len(self.members_) * (2 * widths + self.n_classes_) + feat))

    def _stack(self):
        if getattr(self, "_stacked", None) is None:
            from torch.func import stack_module_state

            params, buffers = stack_module_state(self.members_)
            base = copy.deepcopy(self.members_[0]).to("meta")
            self._stacked = (params, buffers, base)
        return self._stacked

    def _forward(
        self, x: torch.Tensor, batched: bool, want_emb: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (M, b, C) and embeddings (M, b, k) for one chunk on the model device
        (embeddings None when not wanted and the members run one by one: stacking them cost
        a sixth of a scoring pass)."""
        if batched:
            from torch.func import functional_call

            params, buffers, base = self._stack()

            def one(p, b, xx):
                return functional_call(base, (p, b), (xx,))

            return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, x)
        outs = [m(x) for m in self.members_]
        logits = torch.stack([o[0] for o in outs])
        return logits, (torch.stack([o[1] for o in outs]) if want_emb else None)

    def _check_X(self, X: Any) -> Any:
        self._check_fitted()
        return _check_items(X, self.feature_shape_)

    def _run(
        self,
        X: Any,
        *,
        batch_size: Any,
        want_probs: bool,
        want_emb: bool,
        fuse: bool = False,
        batched: bool | None = None,
    ):
        """(probs (M, n, C) or None, embeddings (M, n, k) -- (n, k) when ``fuse`` -- or None)."""
        X = self._check_X(X)
        batched = self.batched if batched is None else batched
        n = X.shape[0]
        bs = _check_batch_size(batch_size)
        if bs == "auto":
            bs = chunk_rows(self.bytes_per_row(), device=self.device_)
            if batched and self.device_.type == "cpu":
                # measured (benchmarks/RESULTS.d/scoring.md): on the CPU the vmap pass is
                # fastest near 4k rows and loses ~40% at 16k
                bs = min(bs, CPU_BATCHED_ROWS)
        M, C, k = len(self.members_), self.n_classes_, self.embedding_dim_
        probs = (
            torch.empty((M, n, C), dtype=torch.float32, device=self.device_) if want_probs else None
        )
        emb_shape = (n, k) if fuse else (M, n, k)
        emb = torch.empty(emb_shape, dtype=torch.float32, device=self.device_) if want_emb else None
        with torch.inference_mode():
            for s in range(0, n, bs):
                xb = X[s : s + bs]
                xb = (
                    xb.to(self.device_, torch.float32)
                    if is_torch(xb)
                    else torch.from_numpy(_host_array(xb)).to(self.device_)
                )
                logits, e = self._forward(xb, batched, want_emb=emb is not None)
                if probs is not None:
                    probs[:, s : s + bs] = torch.softmax(logits.float(), dim=-1)
                if emb is not None:
                    assert e is not None
                    emb[..., s : s + bs, :] = e.float().mean(0) if fuse else e.float()
        return (
            None if probs is None else _to_output(probs, X),
            None if emb is None else _to_output(emb, X),
        )

    def predict_proba(self, X: Any, *, batch_size: Any = "auto", batched: bool | None = None):
        """Class probabilities of every member.

        Parameters
        ----------
        X : array or tensor of shape (n, *feature_shape)
        batch_size : "auto" or int
            Rows per forward chunk ("auto": sized by :func:`gapscope.helpers.device.chunk_rows`).
        batched : bool, optional
            Override ``self.batched`` (True: one vmap pass; False: loop over members).

        Returns
        -------
        probs : array of shape (M, n, C), float32
            numpy for numpy input; a tensor on X's device for tensor input.
        """
        return self._run(
            X, batch_size=batch_size, want_probs=True, want_emb=False, batched=batched
        )[0]

    def embed(self, X: Any, *, batch_size: Any = "auto", batched: bool | None = None):
        """The fused embedding e(x) = mean over members of e_i(x), shape (n, k), float32.

        Computed chunk by chunk, so the per-member embeddings of a large pool are never held
        at once (see :meth:`member_embeddings` for those).
        """
        return self._run(
            X, batch_size=batch_size, want_probs=False, want_emb=True, fuse=True, batched=batched
        )[1]

    def member_embeddings(self, X: Any, *, batch_size: Any = "auto", batched: bool | None = None):
        """Penultimate embeddings of every member, shape (M, n, k), float32."""
        return self._run(
            X, batch_size=batch_size, want_probs=False, want_emb=True, batched=batched
        )[1]

    def fused_embedding(self, X: Any, *, batch_size: Any = "auto"):
        """Alias of :meth:`embed`: the fused embedding of shape (n, k)."""
        return self.embed(X, batch_size=batch_size)

    def predict_proba_and_embed(
        self, X: Any, *, batch_size: Any = "auto", batched: bool | None = None
    ):
        """Both in one pass: probs of shape (M, n, C) and per-member embeddings (M, n, k)."""
        return self._run(X, batch_size=batch_size, want_probs=True, want_emb=True, batched=batched)

    def predict(self, X: Any, *, batch_size: Any = "auto"):
        """Predicted classes, shape (n,): argmax of the mean probability over members."""
        return self.predict_proba(X, batch_size=batch_size).mean(0).argmax(-1)

    # -- checkpointing -----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to rebuild the fitted ensemble (tensors on the CPU)."""
        self._check_fitted()
        params = self.get_params()
        if isinstance(params["random_state"], np.random.Generator):
            params["random_state"] = None
        if params["class_weight"] is not None and not isinstance(params["class_weight"], str):
            params["class_weight"] = [float(w) for w in params["class_weight"]]
        params["device"] = str(params["device"])
        params["hidden"] = list(params["hidden"])
        return {
            "params": params,
            "n_classes_": self.n_classes_,
            "feature_shape_": list(self.feature_shape_),
            "arch_": self.arch_,
            "history_": self.history_,
            "n_validation_": self.n_validation_,
            "members": [
                {k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members_
            ],
        }

    def load_state_dict(self, state: dict) -> Ensemble:
        """Restore a fitted ensemble from :meth:`state_dict` (parameters included); returns self."""
        params = dict(state["params"])
        params["hidden"] = tuple(params["hidden"])
        self.set_params(**params)
        dev = resolve_device(self.device)
        fs = tuple(state["feature_shape_"])
        members = []
        for sd in state["members"]:
            m = make_classifier(
                state["arch_"],
                n_classes=state["n_classes_"],
                feature_shape=fs,
                hidden=self.hidden,
                random_state=0,
            )
            m.load_state_dict(sd)
            members.append(m.to(dev).eval())
        self.members_ = members
        self.n_classes_ = int(state["n_classes_"])
        self.feature_shape_ = fs
        self.arch_ = state["arch_"]
        self.device_ = dev
        self.history_ = state["history_"]
        self.n_validation_ = int(state.get("n_validation_", 0))
        self._stacked = None
        return self

    def save(self, path: Any) -> None:
        """Write :meth:`state_dict` to ``path`` with ``torch.save`` (atomically: a temporary
        file in the same folder, then ``os.replace``)."""
        state = self.state_dict()
        write_binary(path, lambda fh: torch.save(state, fh))

    @classmethod
    def load(cls, path: Any, *, device: Any = None) -> Ensemble:
        """Read an ensemble written by :meth:`save` (``device`` overrides the saved one).

        A classmethod, so an unfitted template's ``template.load(path)`` works too (the
        saved parameters replace the template's)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if device is not None:
            state["params"]["device"] = str(device)
        return cls().load_state_dict(state)


# --------------------------------------------------------------------------------------
# Adapters of the seam
# --------------------------------------------------------------------------------------
class _ConstantClassifier:
    """A fitted stand-in for a member whose training set held one class: probability 1 on it."""

    def __init__(self, label: int) -> None:
        self.classes_ = np.array([int(label)])

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.ones((len(X), 1), dtype=np.float32)


def _check_sklearn_classifier(estimator: Any, *, name: str) -> None:
    missing = [
        m
        for m in ("get_params", "fit", "predict_proba")
        if not callable(getattr(estimator, m, None))
    ]
    if missing:
        raise TypeError(
            f"{name}: expected a scikit-learn classifier with get_params, fit and predict_proba, "
            f"got {type(estimator).__name__} without {', '.join(missing)}"
        )


def _flat_items(
    X: Any, *, name: str = "X", min_rows: int = 1
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Numeric X of shape (n, *item_shape) as (array of shape (n, prod(item_shape)), item_shape),
    dtype kept."""
    arr = check_array(X, name=name, ndim=tuple(range(2, 8)), min_rows=min_rows, dtype=None)
    return arr.reshape(arr.shape[0], -1), tuple(int(s) for s in arr.shape[1:])


class SklearnEnsemble(BaseEstimator):
    """M seeded clones of a scikit-learn classifier, predicting (M, n, C) probabilities.

    A thin adapter (model: ``skactiveml.classifier.SklearnClassifier``): each member is
    ``sklearn.base.clone(estimator)`` with its own seed set on every ``random_state``
    parameter it has (nested ones such as ``clf__random_state`` of a Pipeline included),
    optionally fitted on a bootstrap resample. Input of any shape (n, ...) is flattened to
    (n, -1). There is no ``embed``: the loop falls back to the flattened input.

    Parameters
    ----------
    estimator : scikit-learn classifier
        Any estimator with ``get_params``, ``fit`` and ``predict_proba`` (unfitted; it is
        cloned, never fitted itself).
    n_members : int, default 5
        M; 1 is allowed (scores that need disagreement then need more members).
    bootstrap : bool, default False
        Fit each member on a bootstrap resample of the training set (the only source of
        member diversity for a deterministic estimator such as LogisticRegression).
    n_classes : int, optional
        Number of classes C. Default: ``y.max() + 1`` at fit time.
    random_state : None, int or numpy.random.Generator
        Seeds each member's estimator seed and bootstrap sample.

    Attributes
    ----------
    members_ : list
        M fitted clones. A member whose training set held a single class is a constant
        predictor of that class (no scikit-learn error).
    n_classes_ : int
    feature_shape_ : tuple of int
        Shape of one item as seen at fit time.

    Notes
    -----
    ``predict_proba`` maps each member's columns through its ``classes_`` to 0..C-1; a class
    a member never saw gets probability 0 in that member.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)
    >>> m = SklearnEnsemble(LogisticRegression(), 3, bootstrap=True, random_state=0).fit(X, y)
    >>> m.predict_proba(X[:5]).shape
    (3, 5, 2)
    """

    members_: list[Any]
    n_classes_: int
    feature_shape_: tuple[int, ...]

    def __init__(
        self,
        estimator: Any,
        n_members: int = 5,
        *,
        bootstrap: bool = False,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> None:
        self.estimator = estimator
        self.n_members = n_members
        self.bootstrap = bootstrap
        self.n_classes = n_classes
        self.random_state = random_state

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        sample_weight: Any = None,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> SklearnEnsemble:
        """Fit M clones of ``estimator``; returns self.

        Parameters
        ----------
        X : array of shape (n, ...), numeric
        y : array of shape (n,), int labels in [0, n_classes)
        sample_weight : array of shape (n,), optional
            Passed to each clone's ``fit`` (which must accept it).
        n_classes : int, optional
            Overrides the constructor's ``n_classes`` for this fit.
        random_state : None, int or numpy.random.Generator, optional
            Overrides the constructor's ``random_state`` for this fit.
        """
        from sklearn.base import clone
        from sklearn.utils.validation import has_fit_parameter

        _check_sklearn_classifier(self.estimator, name="estimator")
        M = _check_n_members(self.n_members)
        Xf, shape = _flat_items(X)
        yn = _check_labels(y, n=Xf.shape[0], name="y")
        C = _resolve_n_classes(n_classes, self.n_classes, yn)
        w = None
        if sample_weight is not None:
            w = check_array(sample_weight, name="sample_weight", ndim=1)
            if w.shape[0] != yn.shape[0] or (w < 0).any():
                raise ValueError(
                    f"sample_weight: expected {yn.shape[0]} non-negative weights, got shape {w.shape}"
                )
            if not has_fit_parameter(self.estimator, "sample_weight"):
                raise ValueError(
                    f"sample_weight: {type(self.estimator).__name__}.fit does not accept sample_weight"
                )
        rng = check_random_state(self.random_state if random_state is None else random_state)
        seed_keys = [
            k
            for k in self.estimator.get_params(deep=True)
            if k == "random_state" or k.endswith("__random_state")
        ]
        n = Xf.shape[0]
        members: list[Any] = []
        for _ in range(M):
            seed = int(rng.integers(0, 2**31 - 1))
            if self.bootstrap:
                idx = rng.integers(0, n, size=n)
                Xi, yi, wi = Xf[idx], yn[idx], None if w is None else w[idx]
            else:
                Xi, yi, wi = Xf, yn, w
            if np.unique(yi).size == 1:
                members.append(_ConstantClassifier(int(yi[0])))
                continue
            member = clone(self.estimator)
            if seed_keys:
                member.set_params(**dict.fromkeys(seed_keys, seed))
            member.fit(Xi, yi, **({} if wi is None else {"sample_weight": wi}))
            members.append(member)
        self.members_ = members
        self.n_classes_ = C
        self.feature_shape_ = shape
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise ValueError(
                f"{type(self).__name__}: this instance is not fitted yet; call fit(X, y) or load(path) first"
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of every member.

        Parameters
        ----------
        X : array of shape (n, *feature_shape)

        Returns
        -------
        probs : ndarray of shape (M, n, C), float32
        """
        self._check_fitted()
        Xf, shape = _flat_items(X, min_rows=0)
        if Xf.shape[1] != math.prod(self.feature_shape_):
            raise ValueError(f"X: expected items of shape {self.feature_shape_}, got {shape}")
        out = np.zeros((len(self.members_), Xf.shape[0], self.n_classes_), dtype=np.float32)
        if Xf.shape[0] == 0:
            return out
        for i, m in enumerate(self.members_):
            cols = np.asarray(m.classes_).astype(np.int64)
            out[i][:, cols] = np.asarray(m.predict_proba(Xf), dtype=np.float32)
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Predicted classes, shape (n,): argmax of the mean probability over members."""
        return self.predict_proba(X).mean(0).argmax(-1)

    def save(self, path: Any) -> None:
        """Pickle the fitted adapter (parameters and members) to ``path``, atomically."""
        self._check_fitted()
        write_binary(path, lambda fh: pickle.dump(self, fh, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: Any) -> SklearnEnsemble:
        """Read an adapter written by :meth:`save`.

        A classmethod, so an unfitted template's ``template.load(path)`` works too. The file
        is a pickle: load only files you trust (as with any scikit-learn model)."""
        with open(path, "rb") as fh:
            obj = pickle.load(fh)  # noqa: S301 - our own checkpoint format
        if not isinstance(obj, cls) or not hasattr(obj, "members_"):
            raise ValueError(
                f"path: expected a fitted {cls.__name__} written by save(), got {type(obj).__name__}"
            )
        return obj


def _split_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, embedding or None) from a module's forward output."""
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError(
                f"module_factory: expected forward to return logits or (logits, embedding), "
                f"got a tuple of {len(out)}"
            )
        return out[0], out[1]
    return out, None


class TorchEnsemble(BaseEstimator):
    """M members built by a user's ``torch.nn.Module`` factory, trained by the shared loop.

    Each member is ``module_factory(n_classes=C, feature_shape=shape)``, built with
    torch's global generator forked (so the caller's stream is untouched), re-initialised
    from its own seeded ``torch.Generator`` with :func:`gapscope.helpers.training.init_parameters`
    and trained by :func:`gapscope.helpers.training.train` (AdamW, warmup + cosine decay, early
    stopping, bf16 autocast on CUDA). Inference runs chunk by chunk, member by member.

    Parameters
    ----------
    module_factory : callable(n_classes=int, feature_shape=tuple) -> torch.nn.Module
        The module's ``forward(x)`` on a batch of shape (b, *feature_shape) returns logits of
        shape (b, C) or a tuple (logits, embedding of shape (b, k)).
    n_members : int, default 5
    n_classes : int, optional
        Number of classes C. Default: ``y.max() + 1`` at fit time.
    bootstrap : bool, default False
        Train each member on a bootstrap resample.
    epochs, lr, weight_decay, batch_size, warmup_frac, patience, min_steps
        Passed to :func:`gapscope.helpers.training.train` (defaults 30, 3e-3, 1e-4, 64, 0.1, 5, 0).
    validation_fraction : float in (0, 1), optional
        As in :class:`Ensemble`: without ``X_val``, hold out this fraction of the training
        rows as the early-stopping fold (not below 10 rows); counted in ``n_validation_``.
    device : str or torch.device, default "auto"
        Where to train and predict for numpy input; tensor input trains on its own device.
    random_state : None, int or numpy.random.Generator
        Seeds the validation fold, each member's initial weights, batch order and
        bootstrap sample.

    Attributes
    ----------
    members_ : list of torch.nn.Module
    n_classes_ : int
    feature_shape_ : tuple of int
    embedding_dim_ : int
        k: the width of the module's embedding output (C when it returns only logits).
    returns_embedding_ : bool
        Whether the module's forward returns (logits, embedding).
    device_ : torch.device
    history_ : list of dict
    n_validation_ : int

    Notes
    -----
    Only the layer types of :data:`gapscope.helpers.training.SEEDED_LAYERS` are seeded; a module with
    parameters of other layer types gets a warning at fit time, because their initial values
    come from the module's own reset code, not from ``random_state``.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> def factory(n_classes, feature_shape):
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(feature_shape)), n_classes))
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 4)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> m = TorchEnsemble(factory, 2, epochs=2, device="cpu", random_state=0).fit(X, y)
    >>> m.predict_proba(X[:3]).shape, m.embed(X[:3]).shape
    ((2, 3, 2), (3, 2))
    """

    members_: list[nn.Module]
    n_classes_: int
    feature_shape_: tuple[int, ...]
    embedding_dim_: int
    returns_embedding_: bool
    device_: torch.device
    history_: list[dict]
    n_validation_: int

    def __init__(
        self,
        module_factory: Callable[..., nn.Module],
        n_members: int = 5,
        *,
        n_classes: int | None = None,
        bootstrap: bool = False,
        epochs: int = 30,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 64,
        warmup_frac: float = 0.1,
        patience: int | None = 5,
        min_steps: int = 0,
        validation_fraction: float | None = None,
        device: Any = "auto",
        random_state: Any = None,
    ) -> None:
        self.module_factory = module_factory
        self.n_members = n_members
        self.n_classes = n_classes
        self.bootstrap = bootstrap
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.warmup_frac = warmup_frac
        self.patience = patience
        self.min_steps = min_steps
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state

    # -- building ----------------------------------------------------------------------
    def _check_factory(self) -> None:
        if not callable(self.module_factory):
            raise TypeError(
                "module_factory: expected a callable (n_classes=int, feature_shape=tuple) -> "
                f"torch.nn.Module, got {type(self.module_factory).__name__}"
            )

    def _build(self, n_classes: int, feature_shape: tuple[int, ...]) -> nn.Module:
        """One member from the factory; torch's global generator is forked, not consumed."""
        with torch.random.fork_rng(devices=[]):
            module = self.module_factory(n_classes=n_classes, feature_shape=feature_shape)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"module_factory: expected it to return a torch.nn.Module, got {type(module).__name__}"
            )
        return module

    def _probe(self, module: nn.Module, x1: torch.Tensor, n_classes: int) -> tuple[bool, int]:
        """Check the forward contract on one row; returns (returns_embedding, k)."""
        module.eval()
        with torch.no_grad():
            logits, emb = _split_output(module(x1))
        if tuple(logits.shape) != (1, n_classes):
            raise ValueError(
                f"module_factory: expected forward to return logits of shape (n, {n_classes}) "
                f"(or (logits, embedding)), got logits of shape {tuple(logits.shape)} for n=1"
            )
        if emb is None:
            return False, n_classes
        if emb.dim() != 2 or emb.shape[0] != 1:
            raise ValueError(
                "module_factory: expected the embedding output to have shape (n, k), got "
                f"{tuple(emb.shape)} for n=1"
            )
        return True, int(emb.shape[1])

    # -- fitting -----------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        X_val: Any = None,
        y_val: Any = None,
        sample_weight: Any = None,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> TorchEnsemble:
        """Build and train every member; returns self.

        Parameters
        ----------
        X : array or tensor of shape (n, *feature_shape)
        y : array of shape (n,), int labels in [0, n_classes)
        X_val, y_val : optional validation data for early stopping (then
            ``validation_fraction`` is not used).
        sample_weight : array of shape (n,), optional
        n_classes : int, optional
            Overrides the constructor's ``n_classes`` for this fit.
        random_state : None, int or numpy.random.Generator, optional
            Overrides the constructor's ``random_state`` for this fit.
        """
        self._check_factory()
        _check_n_members(self.n_members)
        Xn, dev = _check_fit_X(X, self.device)
        yn = _check_labels(y, n=Xn.shape[0], name="y")
        C = _resolve_n_classes(n_classes, self.n_classes, yn)
        feature_shape = tuple(int(s) for s in Xn.shape[1:])
        rng = check_random_state(self.random_state if random_state is None else random_state)
        x1 = (
            Xn[:1].to(dev, torch.float32)
            if is_torch(Xn)
            else torch.from_numpy(_host_array(Xn[:1])).to(dev)
        )
        probed: dict[str, Any] = {}

        def build(seed: int) -> nn.Module:
            module = self._build(C, feature_shape)
            p = next(module.parameters(), None)
            gen_device = p.device if p is not None else torch.device("cpu")
            init_parameters(module, torch.Generator(device=gen_device).manual_seed(seed))
            module = module.to(dev)
            if not probed:
                probed["contract"] = self._probe(module, x1, C)
                loose = unseeded_modules(module)
                if loose:
                    warnings.warn(
                        "module_factory: random_state does not seed the initial parameters of "
                        f"{', '.join(loose)} (only {', '.join(t.__name__ for t in SEEDED_LAYERS)} "
                        "layers are re-initialised); they keep their constructor's values",
                        stacklevel=4,
                    )
            return module

        members, histories, n_val = _train_members(
            self,
            build,
            Xn,
            yn,
            X_val=X_val,
            y_val=y_val,
            sample_weight=sample_weight,
            device=dev,
            rng=rng,
        )
        self.members_ = members
        self.n_classes_ = C
        self.feature_shape_ = feature_shape
        self.returns_embedding_, self.embedding_dim_ = probed["contract"]
        self.device_ = dev
        self.history_ = histories
        self.n_validation_ = n_val
        return self

    # -- inference ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            raise ValueError(
                "TorchEnsemble: this instance is not fitted yet; call fit(X, y) or load(path) first"
            )

    def bytes_per_row(self) -> int:
        """A conservative working-memory estimate of one item (for chunk sizing): the
        module's activations are taken as 64 floats per input value."""
        self._check_fitted()
        feat = math.prod(self.feature_shape_)
        M = len(self.members_)
        return int(4 * (64 * feat + M * (self.n_classes_ + self.embedding_dim_)))

    def _run(self, X: Any, *, batch_size: Any, want_probs: bool, want_emb: bool, fuse: bool):
        self._check_fitted()
        X = _check_items(X, self.feature_shape_)
        bs = _check_batch_size(batch_size)
        if bs == "auto":
            bs = chunk_rows(self.bytes_per_row(), device=self.device_)
        n, M, C, k = X.shape[0], len(self.members_), self.n_classes_, self.embedding_dim_
        probs = (
            torch.empty((M, n, C), dtype=torch.float32, device=self.device_) if want_probs else None
        )
        emb_shape = (n, k) if fuse else (M, n, k)
        emb = torch.empty(emb_shape, dtype=torch.float32, device=self.device_) if want_emb else None
        with torch.inference_mode():
            for s in range(0, n, bs):
                xb = X[s : s + bs]
                xb = (
                    xb.to(self.device_, torch.float32)
                    if is_torch(xb)
                    else torch.from_numpy(_host_array(xb)).to(self.device_)
                )
                if emb is not None and fuse:
                    emb[s : s + bs] = 0.0
                for i, m in enumerate(self.members_):
                    logits, e = _split_output(m(xb))
                    logits = logits.float()
                    if probs is not None:
                        probs[i, s : s + bs] = torch.softmax(logits, dim=-1)
                    if emb is not None:
                        e = logits if e is None else e.float()
                        if fuse:
                            emb[s : s + bs] += e / M
                        else:
                            emb[i, s : s + bs] = e
        return (
            None if probs is None else _to_output(probs, X),
            None if emb is None else _to_output(emb, X),
        )

    def predict_proba(self, X: Any, *, batch_size: Any = "auto"):
        """Class probabilities of every member.

        Parameters
        ----------
        X : array or tensor of shape (n, *feature_shape)
        batch_size : "auto" or int
            Rows per forward chunk ("auto": sized by :func:`gapscope.helpers.device.chunk_rows`).

        Returns
        -------
        probs : array of shape (M, n, C), float32
            numpy for numpy input; a tensor on X's device for tensor input.
        """
        return self._run(X, batch_size=batch_size, want_probs=True, want_emb=False, fuse=False)[0]

    def embed(self, X: Any, *, batch_size: Any = "auto"):
        """The fused embedding, shape (n, k), float32: the mean over members of their
        embedding outputs (of their logits when the module returns only logits)."""
        return self._run(X, batch_size=batch_size, want_probs=False, want_emb=True, fuse=True)[1]

    def member_embeddings(self, X: Any, *, batch_size: Any = "auto"):
        """Every member's embedding output, shape (M, n, k), float32."""
        return self._run(X, batch_size=batch_size, want_probs=False, want_emb=True, fuse=False)[1]

    def predict_proba_and_embed(self, X: Any, *, batch_size: Any = "auto"):
        """Both in one pass: probs (M, n, C) and per-member embeddings (M, n, k)."""
        return self._run(X, batch_size=batch_size, want_probs=True, want_emb=True, fuse=False)

    def predict(self, X: Any, *, batch_size: Any = "auto"):
        """Predicted classes, shape (n,): argmax of the mean probability over members."""
        return self.predict_proba(X, batch_size=batch_size).mean(0).argmax(-1)

    # -- checkpointing -----------------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the members' ``state_dict`` (with n_classes, feature_shape and the training
        histories) to ``path`` with ``torch.save``, atomically (temporary file, then
        ``os.replace``). The factory is not saved: :meth:`load` is called on a template that
        has it."""
        self._check_fitted()
        state = {
            "format": "gapscope.TorchEnsemble/1",
            "n_classes_": self.n_classes_,
            "feature_shape_": list(self.feature_shape_),
            "returns_embedding_": self.returns_embedding_,
            "embedding_dim_": self.embedding_dim_,
            "history_": self.history_,
            "n_validation_": self.n_validation_,
            "members": [
                {k: v.detach().cpu() for k, v in m.state_dict().items()} for m in self.members_
            ],
        }
        write_binary(path, lambda fh: torch.save(state, fh))

    def load(self, path: Any) -> TorchEnsemble:
        """A new fitted ensemble with this template's parameters and the weights in ``path``.

        The members are rebuilt with ``module_factory`` and their weights loaded with
        ``torch.load(..., weights_only=True)``; the template itself stays as it was.
        """
        self._check_factory()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != "gapscope.TorchEnsemble/1":
            raise ValueError(f"path: expected a file written by TorchEnsemble.save, got {path!s}")
        n_saved = len(state["members"])
        if n_saved != _check_n_members(self.n_members):
            raise ValueError(
                f"path: holds {n_saved} members, but this template has n_members={self.n_members}"
            )
        new = type(self)(**self.get_params(deep=False))
        dev = resolve_device(self.device)
        C, fs = int(state["n_classes_"]), tuple(int(s) for s in state["feature_shape_"])
        members = []
        for sd in state["members"]:
            m = self._build(C, fs)
            m.load_state_dict(sd)
            members.append(m.to(dev).eval())
        new.members_ = members
        new.n_classes_ = C
        new.feature_shape_ = fs
        new.returns_embedding_ = bool(state["returns_embedding_"])
        new.embedding_dim_ = int(state["embedding_dim_"])
        new.device_ = dev
        new.history_ = state["history_"]
        new.n_validation_ = int(state["n_validation_"])
        return new


class _MLPHead(nn.Module):
    """One hidden ReLU layer over a fixed embedding; forward returns (logits, hidden)."""

    def __init__(self, in_features: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.flatten(1))
        return self.head(h), h


def _mlp_head(*, n_classes: int, feature_shape: tuple[int, ...], hidden: int) -> nn.Module:
    return _MLPHead(math.prod(feature_shape), n_classes, hidden)


#: How many recent inputs :class:`FrozenEncoder` keeps the embeddings of.
ENCODER_CACHE_SIZE = 4
#: Rows of the strided sample hashed into the cache key (plus the last row).
_CACHE_SAMPLE_ROWS = 64
_MLP_HEAD_OPTIONS = (
    "hidden",
    "epochs",
    "lr",
    "weight_decay",
    "batch_size",
    "warmup_frac",
    "patience",
    "min_steps",
    "validation_fraction",
    "device",
)


def _cache_key(X: Any, encoder: Any) -> tuple:
    """Identity, shape, dtype and a checksum of a strided sample of rows of ``X``.

    Identity is the data pointer of a numpy array or tensor (so a view of the same memory
    is recognised; for other inputs ``id(X)``), with its strides; the checksum (BLAKE2b)
    covers about 64 evenly strided rows and the last row. In-place changes to rows outside
    the sample are therefore not seen: pass a new array after editing one.
    """
    n = len(X)
    stride = max(1, n // _CACHE_SAMPLE_ROWS)
    h = hashlib.blake2b(digest_size=16)
    if is_torch(X):
        ident: tuple = ("torch", X.data_ptr(), tuple(X.stride()), str(X.device))
        for part in (X[::stride], X[-1:]):
            t = part.detach().cpu().contiguous()
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(X, np.ndarray) and X.dtype != object:
        ident = ("numpy", X.__array_interface__["data"][0], X.strides)
        for part in (X[::stride], X[-1:]):
            h.update(np.ascontiguousarray(part).tobytes())
    else:
        ident = ("object", id(X))
        for item in [*X[::stride], *X[n - 1 :]]:
            h.update(repr(item).encode())
    shape = tuple(getattr(X, "shape", (n,)))
    dtype = str(getattr(X, "dtype", type(X).__name__))
    return (id(encoder), *ident, shape, dtype, h.hexdigest())


class FrozenEncoder(BaseEstimator):
    """A frozen embedding function with a light trainable head.

    ``encoder(X) -> (n, k)`` is never trained; only the head is, on its embeddings.
    The head is an ensemble of M members: through :class:`SklearnEnsemble` for a
    scikit-learn head, through :class:`TorchEnsemble` for the MLP.

    Parameters
    ----------
    encoder : callable X -> array of shape (n, k), optional
        Any callable (a pretrained network's forward, a sentence encoder). None: X already
        holds precomputed embeddings of shape (n, k).
    head : {"logistic", "mlp"} or scikit-learn classifier, default "logistic"
        "logistic": ``LogisticRegression(max_iter=1000)``; "mlp": one hidden ReLU layer
        (128 units) in torch, trained by :func:`gapscope.helpers.training.train`; or an unfitted
        classifier instance with ``predict_proba``.
    n_members : int, default 5
    bootstrap : bool, default True
        Fit each head member on a bootstrap resample (LogisticRegression is deterministic,
        so this is where its members differ).
    n_classes : int, optional
    random_state : None, int or numpy.random.Generator
    head_options : dict, optional
        "logistic": keyword arguments of LogisticRegression (e.g. ``{"C": 0.1}``); "mlp":
        ``hidden`` (int, default 128) and TorchEnsemble's ``epochs, lr, weight_decay,
        batch_size, warmup_frac, patience, min_steps, validation_fraction, device``. Not
        allowed with a classifier instance (set its parameters directly).

    Attributes
    ----------
    head_ : SklearnEnsemble or TorchEnsemble
        The fitted head on the embeddings.
    n_classes_ : int
    embedding_dim_ : int
        k.

    Notes
    -----
    The encoder is expensive, so the embeddings of the last :data:`ENCODER_CACHE_SIZE` (4)
    inputs are cached. The key is the input's identity (data pointer and strides for numpy
    arrays and tensors, ``id`` otherwise), shape and dtype, the encoder's ``id``, and a
    checksum of about 64 evenly strided rows plus the last one; rows changed in place
    outside that sample are not noticed. Cached embeddings are returned read-only.
    ``save`` and ``load`` persist only the head; the encoder is given again at construction.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 8)); y = (X[:, 0] > 0).astype(int)
    >>> m = FrozenEncoder(lambda a: a[:, :4], n_members=3, random_state=0).fit(X, y)
    >>> m.predict_proba(X).shape, m.embed(X).shape
    ((3, 60, 2), (60, 4))
    """

    head_: Any
    n_classes_: int
    embedding_dim_: int

    def __init__(
        self,
        encoder: Callable[[Any], Any] | None = None,
        *,
        head: Any = "logistic",
        n_members: int = 5,
        bootstrap: bool = True,
        n_classes: int | None = None,
        random_state: Any = None,
        head_options: dict | None = None,
    ) -> None:
        self.encoder = encoder
        self.head = head
        self.n_members = n_members
        self.bootstrap = bootstrap
        self.n_classes = n_classes
        self.random_state = random_state
        self.head_options = head_options

    def _make_head(self) -> SklearnEnsemble | TorchEnsemble:
        """The unfitted head ensemble that ``head`` and ``head_options`` describe."""
        opts = dict(self.head_options or {})
        common = {
            "n_members": self.n_members,
            "bootstrap": self.bootstrap,
            "n_classes": self.n_classes,
            "random_state": self.random_state,
        }
        if isinstance(self.head, str):
            check_choice(self.head, name="head", choices=("logistic", "mlp"))
            if self.head == "logistic":
                from sklearn.linear_model import LogisticRegression

                valid = set(LogisticRegression().get_params())
                unknown = sorted(set(opts) - valid)
                if unknown:
                    raise ValueError(
                        f"head_options: unknown option(s) {unknown} for head='logistic'; "
                        f"valid: {sorted(valid)}"
                    )
                est = LogisticRegression(**{"max_iter": 1000, **opts})
                return SklearnEnsemble(est, **common)
            unknown = sorted(set(opts) - set(_MLP_HEAD_OPTIONS))
            if unknown:
                raise ValueError(
                    f"head_options: unknown option(s) {unknown} for head='mlp'; "
                    f"valid: {sorted(_MLP_HEAD_OPTIONS)}"
                )
            hidden = opts.pop("hidden", 128)
            if isinstance(hidden, bool) or not isinstance(hidden, numbers.Integral) or hidden < 1:
                raise ValueError(f"head_options: expected 'hidden' an int >= 1, got {hidden!r}")
            return TorchEnsemble(partial(_mlp_head, hidden=int(hidden)), **common, **opts)
        _check_sklearn_classifier(self.head, name="head")
        if opts:
            raise ValueError(
                "head_options: expected None with a classifier instance as head (set its "
                f"parameters directly), got {sorted(opts)}"
            )
        return SklearnEnsemble(self.head, **common)

    def _encode(self, X: Any, *, name: str = "X") -> np.ndarray:
        """Embeddings of shape (n, k), float32, from the cache when ``X`` was seen lately."""
        if self.encoder is None:
            return check_array(X, name=name, ndim=2, min_rows=0, dtype=np.float32)
        if not callable(self.encoder):
            raise TypeError(
                "encoder: expected None or a callable X -> embeddings of shape (n, k), "
                f"got {type(self.encoder).__name__}"
            )
        try:
            n = len(X)
        except TypeError:
            raise TypeError(
                f"{name}: expected a sequence of items the encoder takes, got {type(X).__name__}"
            ) from None
        cache: OrderedDict = self.__dict__.setdefault("_cache", OrderedDict())
        key = _cache_key(X, self.encoder)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        Z = check_array(self.encoder(X), name="encoder(X)", ndim=2, min_rows=0, dtype=np.float32)
        if Z.shape[0] != n:
            raise ValueError(
                f"encoder(X): expected one embedding row per item ({n}), got shape {Z.shape}"
            )
        Z = np.array(Z, dtype=np.float32, copy=True)
        Z.setflags(write=False)
        cache[key] = Z
        while len(cache) > ENCODER_CACHE_SIZE:
            cache.popitem(last=False)
        return Z

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_cache", None)  # cached embeddings are not part of the model
        return state

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        X_val: Any = None,
        y_val: Any = None,
        sample_weight: Any = None,
        n_classes: int | None = None,
        random_state: Any = None,
    ) -> FrozenEncoder:
        """Encode X and fit the head on the embeddings; returns self.

        Parameters
        ----------
        X : items the encoder takes (n of them), or embeddings of shape (n, k)
        y : array of shape (n,), int labels
        X_val, y_val : optional
            Early-stopping data for the "mlp" head; scikit-learn heads have no early
            stopping and do not use them.
        sample_weight : array of shape (n,), optional
        n_classes, random_state : optional
            Override the constructor's for this fit.
        """
        head = self._make_head()
        Z = self._encode(X)
        kw: dict[str, Any] = {
            "sample_weight": sample_weight,
            "n_classes": n_classes,
            "random_state": random_state,
        }
        if isinstance(head, TorchEnsemble) and X_val is not None:
            kw.update(X_val=self._encode(X_val, name="X_val"), y_val=y_val)
        self.head_ = head.fit(Z, y, **kw)
        self.n_classes_ = int(head.n_classes_)
        self.embedding_dim_ = int(Z.shape[1])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise ValueError(
                "FrozenEncoder: this instance is not fitted yet; call fit(X, y) or load(path) first"
            )

    def embed(self, X: Any) -> np.ndarray:
        """The encoder's embedding, shape (n, k), float32 (read-only when cached)."""
        return self._encode(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of every head member, shape (M, n, C), float32."""
        self._check_fitted()
        return np.asarray(self.head_.predict_proba(self._encode(X)), dtype=np.float32)

    def predict_proba_and_embed(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Both with one encoder call: probs (M, n, C) and the embedding (n, k)."""
        self._check_fitted()
        Z = self._encode(X)
        return np.asarray(self.head_.predict_proba(Z), dtype=np.float32), Z

    def predict(self, X: Any) -> np.ndarray:
        """Predicted classes, shape (n,): argmax of the mean probability over members."""
        return self.predict_proba(X).mean(0).argmax(-1)

    def save(self, path: Any) -> None:
        """Write the fitted head to ``path`` (a pickle for scikit-learn heads, ``torch.save``
        for the MLP); the encoder is not saved."""
        self._check_fitted()
        self.head_.save(path)

    def load(self, path: Any) -> FrozenEncoder:
        """A new fitted FrozenEncoder with this template's encoder and parameters and the head
        read from ``path``; the template itself stays as it was."""
        head = self._make_head().load(path)
        new = type(self)(**self.get_params(deep=False))
        new.head_ = head
        new.n_classes_ = int(head.n_classes_)
        new.embedding_dim_ = int(math.prod(head.feature_shape_))
        return new
