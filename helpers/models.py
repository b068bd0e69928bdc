"""Small torch classifiers, a batched ensemble, and the one training loop.

Every classifier's ``forward(x)`` returns ``(logits, embedding)``: logits of shape
(n, C) and the penultimate activations of shape (n, k). An :class:`Ensemble` trains M
independently seeded members and evaluates them in ONE batched computation
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``); a plain loop over
members is kept (``batched=False``) and both agree to float32 rounding.

:func:`train` is the one training loop (AdamW, linear warmup then cosine decay, early
stopping on validation loss with the best weights restored, optional class and sample
weights, bf16 autocast on CUDA only, seeded without touching torch's global generator).
A custom ``loss_fn(model, xb, yb)`` lets other models (a VAE) use the same loop.

Randomness: parameter initialisation uses an explicit ``torch.Generator`` (see
:func:`init_parameters`), minibatch order another; nothing calls ``torch.manual_seed``.
On the CPU, the same seed gives bit-identical weights.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ._validation import check_array, check_choice, check_random_state, is_torch
from .device import chunk_rows, resolve_device

__all__ = [
    "MLP",
    "CNN2d",
    "CNN1d",
    "ARCHS",
    "make_classifier",
    "init_parameters",
    "train",
    "Ensemble",
]


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


def init_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every Linear/Conv layer of ``module`` from ``generator`` (in place).

    Uses torch's default scheme (Kaiming-uniform weights with a = sqrt(5), biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))), but draws from ``generator`` instead of the
    global generator, so seeding never touches global state.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return module


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
# Training
# --------------------------------------------------------------------------------------
def _to_tensor(x: Any, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if is_torch(x):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def _class_weight_vector(class_weight: Any, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    if isinstance(class_weight, str):
        check_choice(class_weight, name="class_weight", choices=("balanced",))
        counts = torch.bincount(y, minlength=n_classes).double()
        w = torch.where(
            counts > 0, y.numel() / (n_classes * counts.clamp(min=1)), torch.zeros_like(counts)
        )
        return w.float()
    wn = check_array(class_weight, name="class_weight", ndim=1, dtype=np.float32)
    if wn.shape[0] != n_classes or (wn < 0).any():
        raise ValueError(
            f"class_weight: expected {n_classes} non-negative weights or 'balanced', got {wn.tolist()}"
        )
    return torch.as_tensor(wn)


def _cosine_factor(step: int, total: int, warmup: int) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(
    model: nn.Module,
    X: Any,
    y: Any = None,
    *,
    X_val: Any = None,
    y_val: Any = None,
    epochs: int = 30,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    warmup_frac: float = 0.1,
    patience: int | None = 5,
    class_weight: Any = None,
    sample_weight: Any = None,
    device: Any = "auto",
    random_state: Any = None,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None,
    min_steps: int = 0,
) -> dict:
    """Train ``model`` in place with AdamW, warmup + cosine decay and early stopping.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning ``(logits, embedding)`` (or logits), or any module when
        ``loss_fn`` is given. Moved to ``device``.
    X : array of shape (n, *feature_shape)
    y : array of shape (n,), int, optional
        Class labels; may be None only with a ``loss_fn``.
    X_val, y_val : arrays, optional
        Validation data. With them the validation loss is computed after each epoch, and
        training stops after ``patience`` epochs without improvement; the weights of the
        best epoch are restored at the end.
    epochs : int, default 30
    lr : float, default 3e-3
        Peak learning rate of AdamW.
    weight_decay : float, default 1e-4
    batch_size : int, default 64
    warmup_frac : float in [0, 1), default 0.1
        Fraction of all steps spent in linear warmup; cosine decay to 0 after it.
    patience : int or None, default 5
        None disables early stopping (the last epoch's weights are kept).
    class_weight : None, "balanced" or array of shape (C,)
        Per-class loss weights ("balanced": n / (C * count_c) on the training labels).
    sample_weight : array of shape (n,), optional
        Per-sample loss weights; the loss of a batch is sum(w * l) / sum(w).
    device : str or torch.device, default "auto"
    random_state : None, int or numpy.random.Generator
        Seeds the minibatch order (init is the caller's, see :func:`make_classifier`).
    loss_fn : callable(model, xb, yb) -> scalar tensor, optional
        Replaces weighted cross-entropy (class/sample weights are then ignored); e.g. a
        VAE's ELBO. Also used for the validation loss.
    min_steps : int, default 0
        At least this many optimizer steps: with few training items an epoch is one or two
        steps, so ``epochs`` is raised to reach ``min_steps``; early stopping and the
        best-weights restore only consider epochs after it (measured on digits with 20
        labels: restoring the best-validation-loss weights of epoch 2 left the model at chance,
        0.11 test accuracy, against 0.55 after 150 steps).

    Returns
    -------
    history : dict
        ``train_loss`` and ``val_loss`` (per epoch; ``val_loss`` empty without
        validation data), ``lr`` (at the end of each epoch), ``best_epoch`` (0-based, or
        None), ``epochs_run`` and ``stopped_early``.

    Notes
    -----
    bf16 autocast is used on CUDA only; on the CPU the run is float32 and, for the same
    ``random_state`` and initial weights, bit-identical between runs.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    for arg, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{arg}: expected an int >= 1, got {v!r}")
    if patience is not None and (not isinstance(patience, numbers.Integral) or patience < 1):
        raise ValueError(f"patience: expected None or an int >= 1, got {patience!r}")
    if not (0.0 <= float(warmup_frac) < 1.0):
        raise ValueError(f"warmup_frac: expected a number in [0, 1), got {warmup_frac!r}")
    if not (float(lr) > 0):
        raise ValueError(f"lr: expected a number > 0, got {lr!r}")
    if y is None and loss_fn is None:
        raise ValueError("y: expected labels (or a loss_fn that needs none), got None")
    dev = resolve_device(device) if not is_torch(X) or device != "auto" else X.device
    Xn = (
        check_array(X, name="X", ndim=tuple(range(2, 8)), dtype=np.float32)
        if not is_torch(X)
        else X
    )
    Xt = _to_tensor(Xn, dtype=torch.float32, device=dev)
    n = Xt.shape[0]
    yt: torch.Tensor | None = None
    n_classes = 0
    if y is not None:
        yt = _to_tensor(_check_labels(y, n=n, name="y"), dtype=torch.long, device=dev)
    model.to(dev)
    w_class: torch.Tensor | None = None
    if loss_fn is None:
        assert yt is not None  # checked above: y is required without a loss_fn
        model.eval()
        with torch.no_grad():
            out = model(Xt[:1])
        n_classes = int((out[0] if isinstance(out, tuple) else out).shape[-1])
        if int(yt.max()) >= n_classes:
            raise ValueError(
                f"y: expected labels < n_classes={n_classes} of the model, got {int(yt.max())}"
            )
        if class_weight is not None:
            w_class = _class_weight_vector(class_weight, yt, n_classes).to(dev)
    w_sample = None
    if sample_weight is not None:
        sw = check_array(sample_weight, name="sample_weight", ndim=1, dtype=np.float32)
        if sw.shape[0] != n or (sw < 0).any():
            raise ValueError(
                f"sample_weight: expected {n} non-negative weights, got shape {sw.shape}"
            )
        w_sample = torch.as_tensor(sw, device=dev)
    Xv = yv = None
    if X_val is not None:
        Xv = _to_tensor(
            X_val
            if is_torch(X_val)
            else check_array(X_val, name="X_val", ndim=Xt.dim(), dtype=np.float32),
            dtype=torch.float32,
            device=dev,
        )
        if tuple(Xv.shape[1:]) != tuple(Xt.shape[1:]):
            raise ValueError(
                f"X_val: expected items of shape {tuple(Xt.shape[1:])}, got {tuple(Xv.shape[1:])}"
            )
        if y_val is not None:
            yv = _to_tensor(
                _check_labels(y_val, n=Xv.shape[0], name="y_val"), dtype=torch.long, device=dev
            )
        elif loss_fn is None:
            raise ValueError("y_val: expected labels for X_val, got None")

    def default_loss(
        m: nn.Module, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor | None
    ) -> torch.Tensor:
        out = m(xb)
        logits = (out[0] if isinstance(out, tuple) else out).float()
        per = nn.functional.cross_entropy(logits, yb, reduction="none")
        if w_class is not None:
            wb = w_class[yb] if wb is None else wb * w_class[yb]
        if wb is None:
            return per.mean()
        return (per * wb).sum() / wb.sum().clamp(min=1e-12)

    def batch_loss(xb, yb, wb):
        if loss_fn is not None:
            return loss_fn(model, xb, yb)
        return default_loss(model, xb, yb, wb)

    gen = torch.Generator().manual_seed(
        int(check_random_state(random_state).integers(0, 2**63 - 1))
    )
    opt = torch.optim.AdamW(model.parameters(), lr=float(lr), weight_decay=float(weight_decay))
    if isinstance(min_steps, bool) or not isinstance(min_steps, numbers.Integral) or min_steps < 0:
        raise ValueError(f"min_steps: expected an int >= 0, got {min_steps!r}")
    steps_per_epoch = math.ceil(n / batch_size)
    epochs = max(int(epochs), math.ceil(int(min_steps) / steps_per_epoch))
    total = epochs * steps_per_epoch
    warmup = int(round(float(warmup_frac) * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_factor(s, total, warmup))
    amp = dev.type == "cuda"
    history: dict = {
        "train_loss": [],
        "val_loss": [],
        "lr": [],
        "best_epoch": None,
        "epochs_run": 0,
        "stopped_early": False,
    }
    best = math.inf
    best_state = None
    bad_epochs = 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        total_loss = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            xb = Xt[idx]
            yb = yt[idx] if yt is not None else None
            wb = w_sample[idx] if w_sample is not None else None
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = batch_loss(xb, yb, wb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * idx.numel()
        history["train_loss"].append(total_loss / n)
        history["lr"].append(opt.param_groups[0]["lr"])
        history["epochs_run"] = epoch + 1
        if Xv is not None:
            model.eval()
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                vl = 0.0
                bs = max(batch_size, 1024)
                for s in range(0, Xv.shape[0], bs):
                    xb = Xv[s : s + bs]
                    yb = yv[s : s + bs] if yv is not None else None
                    vl += float(batch_loss(xb, yb, None)) * xb.shape[0]
                vl /= Xv.shape[0]
            history["val_loss"].append(vl)
            if (epoch + 1) * steps_per_epoch < min_steps:
                continue  # within the first min_steps: no best-weight tracking, no stopping
            if vl < best:
                best = vl
                best_state = copy.deepcopy(model.state_dict())
                history["best_epoch"] = epoch
                bad_epochs = 0
            else:
                bad_epochs += 1
                if patience is not None and bad_epochs >= patience:
                    history["stopped_early"] = True
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _host_array(a: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable float32 array (copies read-only memmap chunks)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a if a.flags.writeable else a.copy()


def _check_labels(y: Any, *, n: int, name: str) -> np.ndarray:
    arr = y.detach().cpu().numpy() if is_torch(y) else np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    if n and arr.min() < 0:
        raise ValueError(f"{name}: expected labels >= 0 (no unlabeled -1 rows), got {arr.min()}")
    return arr.astype(np.int64)


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
        Passed to :func:`train` (defaults 30, 3e-3, 1e-4, 64, 0.1, 5, None).
    min_steps : int, default 0
        Passed to :func:`train`: at least this many optimizer steps per member.
    batched : bool, default True
        Evaluate all members in one ``vmap`` pass; False loops over members (same result).
    device : str or torch.device, default "auto"
    random_state : None, int or numpy.random.Generator
        Seeds each member's initial weights, batch order and bootstrap sample.

    Attributes
    ----------
    members_ : list of torch.nn.Module
    n_classes_ : int
    feature_shape_ : tuple of int
    arch_ : str
    device_ : torch.device
    history_ : list of dict
        One :func:`train` history per member.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 4)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> ens = Ensemble(n_members=2, hidden=(16,), epochs=2, device="cpu", random_state=0).fit(X, y)
    >>> ens.predict_proba(X[:3]).shape
    (2, 3, 2)
    """

    members_: list[nn.Module]
    n_classes_: int
    feature_shape_: tuple[int, ...]
    arch_: str
    device_: torch.device
    history_: list[dict]
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
        self.batched = batched
        self.device = device
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------
    def fit(
        self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None, sample_weight: Any = None
    ) -> Ensemble:
        """Train every member independently on (X, y); returns self.

        Parameters
        ----------
        X : array of shape (n, *feature_shape)
        y : array of shape (n,), int labels in [0, n_classes)
        X_val, y_val : optional validation data for early stopping.
        sample_weight : array of shape (n,), optional
        """
        if (
            isinstance(self.n_members, bool)
            or not isinstance(self.n_members, numbers.Integral)
            or self.n_members < 1
        ):
            raise ValueError(f"n_members: expected an int >= 1, got {self.n_members!r}")
        dev = X.device if is_torch(X) and self.device == "auto" else resolve_device(self.device)
        Xn = (
            X
            if is_torch(X)
            else check_array(X, name="X", ndim=tuple(range(2, 8)), dtype=np.float32)
        )
        yn = _check_labels(y, n=Xn.shape[0], name="y")
        n_classes = self.n_classes if self.n_classes is not None else int(yn.max()) + 1
        if not isinstance(n_classes, numbers.Integral) or n_classes < 2:
            raise ValueError(
                f"n_classes: expected an int >= 2 (or labels with at least 2 classes), got {n_classes!r}"
            )
        if yn.max() >= n_classes:
            raise ValueError(f"y: expected labels < n_classes={n_classes}, got {int(yn.max())}")
        feature_shape = tuple(int(s) for s in Xn.shape[1:])
        arch = _resolve_arch(self.arch, feature_shape)
        rng = check_random_state(self.random_state)
        members, histories = [], []
        n = Xn.shape[0]
        for _ in range(int(self.n_members)):
            init_seed, train_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
            model = make_classifier(
                arch,
                n_classes=int(n_classes),
                feature_shape=feature_shape,
                hidden=self.hidden,
                random_state=init_seed,
            )
            if self.bootstrap:
                idx = rng.integers(0, n, size=n)
                Xi = Xn[torch.as_tensor(idx, device=Xn.device)] if is_torch(Xn) else Xn[idx]
                yi = yn[idx]
                wi = None if sample_weight is None else np.asarray(sample_weight)[idx]
            else:
                Xi, yi, wi = Xn, yn, sample_weight
            hist = train(
                model,
                Xi,
                yi,
                X_val=X_val,
                y_val=y_val,
                epochs=self.epochs,
                lr=self.lr,
                weight_decay=self.weight_decay,
                batch_size=self.batch_size,
                warmup_frac=self.warmup_frac,
                patience=self.patience,
                class_weight=self.class_weight,
                min_steps=self.min_steps,
                sample_weight=wi,
                device=dev,
                random_state=train_seed,
            )
            members.append(model.eval())
            histories.append(hist)
        self.members_ = members
        self.n_classes_ = int(n_classes)
        self.feature_shape_ = feature_shape
        self.arch_ = arch
        self.device_ = dev
        self.history_ = histories
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

    def _forward(self, x: torch.Tensor, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (M, b, C) and embeddings (M, b, k) for one chunk on the model device."""
        if batched:
            from torch.func import functional_call

            params, buffers, base = self._stack()

            def one(p, b, xx):
                return functional_call(base, (p, b), (xx,))

            return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, x)
        outs = [m(x) for m in self.members_]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def _check_X(self, X: Any) -> Any:
        self._check_fitted()
        if not is_torch(X):
            X = check_array(X, name="X", ndim=tuple(range(2, 8)), min_rows=0, dtype=np.float32)
        elif X.is_floating_point() and not bool(torch.isfinite(X).all()):
            raise ValueError("X: expected finite values, got NaN or inf")
        if tuple(X.shape[1:]) != self.feature_shape_:
            raise ValueError(
                f"X: expected items of shape {self.feature_shape_}, got {tuple(X.shape[1:])}"
            )
        return X

    def _run(
        self,
        X: Any,
        *,
        batch_size: Any,
        want_probs: bool,
        want_emb: bool,
        batched: bool | None = None,
    ):
        X = self._check_X(X)
        batched = self.batched if batched is None else batched
        n = X.shape[0]
        if batch_size == "auto":
            bs = chunk_rows(self.bytes_per_row(), device=self.device_)
            if batched and self.device_.type == "cpu":
                # measured (benchmarks/RESULTS.d/scoring.md): on the CPU the vmap pass is
                # fastest near 4k rows and loses ~40% at 16k
                bs = min(bs, CPU_BATCHED_ROWS)
        elif (
            isinstance(batch_size, numbers.Integral)
            and not isinstance(batch_size, bool)
            and int(batch_size) >= 1
        ):
            bs = int(batch_size)
        else:
            raise ValueError(f"batch_size: expected 'auto' or an int >= 1, got {batch_size!r}")
        M, C, k = len(self.members_), self.n_classes_, self.embedding_dim_
        probs = (
            torch.empty((M, n, C), dtype=torch.float32, device=self.device_) if want_probs else None
        )
        emb = torch.empty((M, n, k), dtype=torch.float32, device=self.device_) if want_emb else None
        with torch.inference_mode():
            for s in range(0, n, bs):
                xb = X[s : s + bs]
                xb = (
                    xb.to(self.device_, torch.float32)
                    if is_torch(xb)
                    else torch.from_numpy(_host_array(xb)).to(self.device_)
                )
                logits, e = self._forward(xb, batched)
                if probs is not None:
                    probs[:, s : s + bs] = torch.softmax(logits.float(), dim=-1)
                if emb is not None:
                    emb[:, s : s + bs] = e.float()
        back = (lambda t: t.to(X.device)) if is_torch(X) else (lambda t: t.cpu().numpy())
        return (back(probs) if want_probs else None), (back(emb) if want_emb else None)

    def predict_proba(self, X: Any, *, batch_size: Any = "auto", batched: bool | None = None):
        """Class probabilities of every member.

        Parameters
        ----------
        X : array or tensor of shape (n, *feature_shape)
        batch_size : "auto" or int
            Rows per forward chunk ("auto": sized by :func:`helpers.device.chunk_rows`).
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
        """Penultimate embeddings of every member, shape (M, n, k)."""
        return self._run(
            X, batch_size=batch_size, want_probs=False, want_emb=True, batched=batched
        )[1]

    def fused_embedding(self, X: Any, *, batch_size: Any = "auto"):
        """The fused embedding e(x) = mean over members of e_i(x), shape (n, k)."""
        return self.embed(X, batch_size=batch_size).mean(0)

    def predict_proba_and_embed(
        self, X: Any, *, batch_size: Any = "auto", batched: bool | None = None
    ):
        """Both in one pass: probs of shape (M, n, C) and embeddings of shape (M, n, k)."""
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
        self._stacked = None
        return self

    def save(self, path: Any) -> None:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: Any, *, device: Any = None) -> Ensemble:
        """Read an ensemble written by :meth:`save` (``device`` overrides the saved one)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if device is not None:
            state["params"]["device"] = str(device)
        return cls().load_state_dict(state)


def __getattr__(name: str) -> Any:
    """``VAE`` and ``ConditionalVAE`` live in :mod:`helpers.generators`; re-exported here
    lazily (DESIGN.md lists the VAE under models) without an import cycle."""
    if name in ("VAE", "ConditionalVAE"):
        from . import generators

        return getattr(generators, name)
    raise AttributeError(f"module 'gapscope.helpers.models' has no attribute {name!r}")
