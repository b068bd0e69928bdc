"""The one training loop and seeded initialisation, shared by classifiers and generators.

:func:`train` trains any ``torch.nn.Module`` in place: AdamW, linear warmup then cosine
decay, early stopping on validation loss with the best weights restored, optional class and
sample weights, bf16 autocast on CUDA only, seeded without touching torch's global
generator. A custom ``loss_fn(model, xb, yb)`` lets other models (a VAE) use the same loop.
:func:`init_parameters` re-initialises a freshly built module from an explicit
``torch.Generator``; nothing here calls ``torch.manual_seed``. On the CPU, the same seeds give
bit-identical weights.

:mod:`gapscope.helpers.models` (classifier ensembles and the adapters of the seam) and
:mod:`gapscope.helpers.generators` (VAEs) both import from here, and this module imports neither.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from ._validation import check_array, check_choice, check_in_range, check_random_state, is_torch
from .device import resolve_device

__all__ = ["train", "init_parameters", "unseeded_modules", "MIN_VALIDATION_ROWS"]

#: A validation fold held out of the training labels (``validation_fraction``) needs at least
#: this many rows; below it the model trains on every label, without early stopping.
MIN_VALIDATION_ROWS = 10


def init_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise the randomly initialised layers of ``module`` from ``generator`` (in place).

    Uses torch's default schemes, but draws from ``generator`` instead of the global
    generator, so seeding never touches global state:

    - Linear and every convolution (``Conv1d/2d/3d``, ``ConvTranspose*``): Kaiming-uniform
      weights with a = sqrt(5), biases U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    - Embedding: N(0, 1), the ``padding_idx`` row zero;
    - RNN, LSTM, GRU: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size));
    - MultiheadAttention: Xavier-uniform input projections, zero input/output biases.

    Normalisation layers (deterministic ones/zeros) are left as built. Layers of other types
    keep the values their own reset code drew; :func:`unseeded_modules` lists them.

    Parameters
    ----------
    module : torch.nn.Module
    generator : torch.Generator
        On the device of the parameters (the CPU for a freshly built module).

    Returns
    -------
    module : torch.nn.Module
        The same object.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Linear, _ConvNd)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    fan_in = m.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, generator=generator)
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].fill_(0)
            elif isinstance(m, nn.RNNBase):
                bound = 1.0 / math.sqrt(m.hidden_size) if m.hidden_size > 0 else 0.0
                for p in m.parameters(recurse=False):
                    nn.init.uniform_(p, -bound, bound, generator=generator)
            elif isinstance(m, nn.MultiheadAttention):
                for name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                    w = getattr(m, name, None)
                    if w is not None:
                        nn.init.xavier_uniform_(w, generator=generator)
                if m.in_proj_bias is not None:
                    m.in_proj_bias.zero_()
                for name in ("bias_k", "bias_v"):
                    b = getattr(m, name, None)
                    if b is not None:
                        nn.init.xavier_normal_(b, generator=generator)
                # out_proj is a Linear (re-initialised above as its own module); torch zeroes its bias
                if m.out_proj.bias is not None:
                    m.out_proj.bias.zero_()
    return module


#: Layer types :func:`init_parameters` re-initialises from its generator.
SEEDED_LAYERS: tuple[type, ...] = (
    nn.Linear,
    _ConvNd,
    nn.Embedding,
    nn.RNNBase,
    nn.MultiheadAttention,
)
#: Layer types whose initial parameters are constants (ones and zeros), so need no seed.
CONSTANT_INIT_LAYERS: tuple[type, ...] = (
    _NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.PReLU,
)


def unseeded_modules(module: nn.Module) -> list[str]:
    """Names of the submodules whose own parameters :func:`init_parameters` does not set.

    A layer outside :data:`SEEDED_LAYERS` and :data:`CONSTANT_INIT_LAYERS` that holds
    parameters of its own (a custom layer, a learned positional table) keeps whatever its
    constructor drew, which no ``random_state`` controls.

    Returns
    -------
    list of str
        ``"name (TypeName)"`` per such submodule (``""`` is the root), in module order.
    """
    out = []
    for name, m in module.named_modules():
        if isinstance(m, SEEDED_LAYERS + CONSTANT_INIT_LAYERS):
            continue
        # the Linear out_proj of MultiheadAttention and similar children are visited on their own
        if any(True for _ in m.parameters(recurse=False)):
            out.append(f"{name or '<root>'} ({type(m).__name__})")
    return out


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


#: Fits on the CPU with at most this many items run on one thread (:func:`train`). Measured on
#: the 2-core machine with `benchmarks/bench_threads.py` (a 3-member MLP ensemble, 40 epochs,
#: on MNIST, medians of 5, load 2.2): one thread took 0.35 / 1.41 / 5.81 / 17.0 s at
#: n = 30 / 200 / 1000 / 3000 against 0.42 / 1.72 / 5.86 / 35.0 s with torch's default 2
#: threads, and single fits with 2 threads stalled for 12-69 s while another job held a core.
SMALL_FIT_ITEMS = 2000


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _small_cpu_fit(X: Any, device: Any) -> bool:
    try:
        n = len(X)
    except TypeError:
        return False
    if n > SMALL_FIT_ITEMS:
        return False
    dev = X.device if is_torch(X) and device == "auto" else resolve_device(device)
    return dev.type == "cpu"


def train(model: nn.Module, X: Any, y: Any = None, **options: Any) -> dict:
    """Train ``model`` in place (see :func:`_train` for every option).

    A fit on the CPU with at most :data:`SMALL_FIT_ITEMS` items runs on one torch thread
    (restored after): for small fits one thread is as fast and never spins against other work.
    """
    if _small_cpu_fit(X, options.get("device", "auto")):
        with torch_threads(1):
            return _train(model, X, y, **options)
    return _train(model, X, y, **options)


def _train(
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


def _check_labels(y: Any, *, n: int, name: str) -> np.ndarray:
    arr = y.detach().cpu().numpy() if is_torch(y) else np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    if n and arr.min() < 0:
        raise ValueError(f"{name}: expected labels >= 0 (no unlabeled -1 rows), got {arr.min()}")
    return arr.astype(np.int64)


def _check_validation_fraction(value: Any) -> float | None:
    """None, or a number in the open interval (0, 1); else an error naming the parameter."""
    if value is None:
        return None
    v = check_in_range(value, name="validation_fraction", low=0.0, high=1.0)
    if not 0.0 < v < 1.0:
        raise ValueError(f"validation_fraction: expected None or a number in (0, 1), got {value!r}")
    return v


def _holdout_split(
    y: np.ndarray, fraction: Any, rng: np.random.Generator, *, min_rows: int = MIN_VALIDATION_ROWS
) -> tuple[np.ndarray, np.ndarray] | None:
    """Seeded, stratified-where-possible split of the rows of ``y`` into (train, validation).

    The validation fold takes ``ceil(fraction * n)`` rows (as scikit-learn's
    ``train_test_split``), allotted to the classes in proportion to their counts (largest
    remainder first, ties to the smaller label) while leaving at least one row of every class
    in training, so a class seen once is never held out. Within each class the rows are drawn
    with ``rng``. Returns None, before any draw from ``rng``, when the fold would have fewer
    than ``min_rows`` rows. Both index arrays are sorted.
    """
    fraction = _check_validation_fraction(fraction)
    assert fraction is not None
    n = int(y.shape[0])
    classes, counts = np.unique(y, return_counts=True)
    cap = counts - 1  # keep one row of every class for training
    target = min(math.ceil(fraction * n), int(cap.sum()))
    if target < min_rows:
        return None
    quota = fraction * counts
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    order = np.lexsort((classes, -(quota - take)))  # largest remainder first
    while take.sum() < target:
        moved = False
        for c in order:
            if take.sum() >= target:
                break
            if take[c] < cap[c]:
                take[c] += 1
                moved = True
        assert moved, "capacity was checked above"
    val = []
    for c, k in zip(classes, take, strict=True):
        if k:
            val.append(rng.permutation(np.flatnonzero(y == c))[:k])
    val_idx = np.sort(np.concatenate(val))
    train_mask = np.ones(n, dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx
