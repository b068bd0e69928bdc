"""Synthesis: generate where the data is thin, filter, validate, and steer generation.

The generative half of the designs (``papers/000`` section 3.4, ``papers/004`` sections
4.3-4.4, ``papers/003``), as functions on arrays and any :class:`gapscope.helpers.generators.Generator`
(``encode(X)``, ``decode(z, condition)``):

* targeted sampling -- latents drawn with ``p(z) ∝ 1/(p(z) + eps)`` under a KDE of the
  encoder's latents, decoded by g (:func:`generate_low_density`); prior draws for the
  "random synthetic" baseline (:func:`generate_from_prior`);
* conditional generation ``x = g(z, c)`` (:func:`generate_conditional`) with conditions
  chosen against a target mix (:func:`estimate_bias`, :func:`counter_bias_weights`,
  :func:`draw_conditions`, :func:`generate_counter_bias`);
* controlled augmentation ``A(x, delta)`` (:func:`augment`, :func:`generate_augmented`);
* active synthesis, the prototype recipe (:func:`uncertainty_prototypes`,
  :func:`active_synthesis`);
* filters: too certain (uncertainty < u_min) or label-inconsistent (probability of the
  intended label under a separately trained classifier < tau) (:func:`filter_mask`,
  :func:`filter_batch`);
* dataset shaping, a multiplicative-weights curriculum over conditions
  (:class:`ConditionShaper`, :func:`per_condition_loss`);
* validation in simulation (:func:`reference_classifier`, :func:`validate_with_oracle`).

Every generated item carries a JSON-serialisable provenance dict, ready for
``LabelStore.add_items(..., source="synthetic", provenance=...)``::

    {"generator": "VAE(latent_dim=8)", "method": "low_density", "z": [0.12, -1.3, ...],
     "condition": 3 | None, "prototype": {...} | None, "params": {...}, "filters": {...}}

``z`` is rounded to 5 decimals (enough to re-decode the item; keeps rows short).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ._validation import (
    check_array,
    check_choice,
    check_in_range,
    check_positive,
    check_random_state,
    is_torch,
)

__all__ = [
    "SyntheticBatch",
    "make_provenance",
    "generate_from_prior",
    "generate_low_density",
    "generate_conditional",
    "estimate_bias",
    "counter_bias_weights",
    "draw_conditions",
    "generate_counter_bias",
    "augment",
    "generate_augmented",
    "AUGMENT_OPS",
    "uncertainty_prototypes",
    "active_synthesis",
    "filter_mask",
    "filter_batch",
    "ConditionShaper",
    "per_condition_loss",
    "reference_classifier",
    "validate_with_oracle",
    "synthesize",
    "SYNTHESIS_MODES",
]

#: Decimals kept for latent codes in provenance.
Z_DECIMALS = 5


# --------------------------------------------------------------------------------------
# the batch and its provenance
# --------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays -> plain Python, recursively (so json.dumps never fails)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"provenance: expected JSON-serialisable values, got {type(value).__name__}")


def make_provenance(
    *,
    generator: str,
    method: str,
    z: Any = None,
    condition: Any = None,
    prototype: dict | None = None,
    params: dict | None = None,
) -> dict:
    """One item's provenance dict (JSON-serialisable; ``z`` rounded to 5 decimals).

    Parameters
    ----------
    generator : str
        Name of the generator (see :func:`gapscope.helpers.generators.generator_name`).
    method : str
        ``"prior"``, ``"low_density"``, ``"conditional"``, ``"counter_bias"``,
        ``"prototype"`` or ``"augment"``.
    z : array-like of shape (latent_dim,), optional
    condition : int, optional
    prototype : dict, optional
        For the prototype recipe: pool index/id, uncertainty and cluster of x*.
    params : dict, optional
        The generation parameters (eps, radius, delta, ...).
    """
    zz = (
        None
        if z is None
        else [round(float(v), Z_DECIMALS) for v in np.asarray(z, dtype=np.float64).ravel()]
    )
    return _jsonable(
        {
            "generator": str(generator),
            "method": str(method),
            "z": zz,
            "condition": None if condition is None or int(condition) < 0 else int(condition),
            "prototype": prototype,
            "params": params or {},
            "filters": {},
        }
    )


@dataclass
class SyntheticBatch:
    """Generated items with what they were meant to be and where they came from.

    Attributes
    ----------
    X : ndarray of shape (n, *item_shape)
    intended_labels : ndarray of shape (n,), int64
        The label the generator meant (the class condition, or its head's prediction);
        -1 where it has none.
    provenance : list of dict, length n
        JSON-serialisable, one per item (see :func:`make_provenance`).
    filter_report : dict
        What :func:`filter_batch` removed (empty before filtering).
    shaper_state : dict or None
        :meth:`ConditionShaper.get_state` after a ``"shaped"`` :func:`synthesize` round.
    """

    X: np.ndarray
    intended_labels: np.ndarray
    provenance: list
    filter_report: dict = field(default_factory=dict)
    shaper_state: dict | None = None

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X)
        self.intended_labels = np.asarray(self.intended_labels, dtype=np.int64).reshape(-1)
        n = self.X.shape[0]
        if self.intended_labels.shape[0] != n or len(self.provenance) != n:
            raise ValueError(
                f"SyntheticBatch: expected X, intended_labels and provenance of one length, got "
                f"{n}, {self.intended_labels.shape[0]} and {len(self.provenance)}"
            )

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def subset(self, idx: Any) -> SyntheticBatch:
        """Rows ``idx`` (boolean mask or integer indices) as a new batch (report copied)."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"idx: expected a boolean mask of shape ({len(self)},), got {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return SyntheticBatch(
            self.X[idx],
            self.intended_labels[idx],
            [self.provenance[i] for i in idx],
            dict(self.filter_report),
        )

    def provenance_json(self) -> list[str]:
        """Each item's provenance as a JSON string."""
        return [json.dumps(p, sort_keys=True) for p in self.provenance]

    @staticmethod
    def concat(batches: list[SyntheticBatch]) -> SyntheticBatch:
        """Stack batches (item shapes must agree); the filter reports are listed under ``parts``."""
        if not batches:
            raise ValueError("batches: expected at least one SyntheticBatch, got none")
        X = np.concatenate([b.X for b in batches])
        y = np.concatenate([b.intended_labels for b in batches])
        prov = [p for b in batches for p in b.provenance]
        return SyntheticBatch(X, y, prov, {"parts": [b.filter_report for b in batches]})


# --------------------------------------------------------------------------------------
# decoding helpers
# --------------------------------------------------------------------------------------


def _check_generator(generator: Any) -> None:
    if not (
        callable(getattr(generator, "encode", None))
        and callable(getattr(generator, "decode", None))
    ):
        raise TypeError(
            "generator: expected an object with encode(X) and decode(z, condition) (helpers.generators.Generator), "
            f"got {type(generator).__name__}"
        )


def _latent_dim(generator: Any) -> int:
    dim = getattr(generator, "latent_dim", None)
    if not isinstance(dim, numbers.Integral) or dim < 1:
        raise TypeError(
            f"generator: expected an int attribute latent_dim to draw prior samples, got {dim!r}"
        )
    return int(dim)


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_torch(x) else np.asarray(x)


def _conditions_are_labels(generator: Any, conditions_are_labels: bool | None) -> bool:
    if conditions_are_labels is not None:
        return bool(conditions_are_labels)
    return bool(getattr(generator, "condition_is_label_", True))


def _intended(
    generator: Any, X: np.ndarray, cond: np.ndarray | None, cond_is_label: bool
) -> np.ndarray:
    """Intended labels: the class condition, else the generator's head on the sample, else -1."""
    if cond is not None and cond_is_label:
        return cond.astype(np.int64)
    classify = getattr(generator, "classify", None)
    if callable(classify):
        try:
            return _np(classify(X)).argmax(axis=1).astype(np.int64)
        except RuntimeError:  # fitted without labels
            pass
    return np.full(X.shape[0], -1, dtype=np.int64)


def _check_conditions(condition: Any, n: int, name: str = "condition") -> np.ndarray | None:
    if condition is None:
        return None
    if isinstance(condition, numbers.Integral) and not isinstance(condition, bool):
        return np.full(n, int(condition), dtype=np.int64)
    arr = check_array(condition, name=name, ndim=1, dtype=None)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: expected integer conditions, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} conditions, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: expected conditions >= 0, got min {arr.min()}")
    return arr.astype(np.int64)


def _decode_batch(
    generator, Z, cond, *, method, params, conditions_are_labels=None, prototypes=None, extra=None
):
    Z = np.asarray(Z, dtype=np.float32)
    X = _np(generator.decode(Z, cond) if cond is not None else generator.decode(Z))
    intended = _intended(
        generator, X, cond, _conditions_are_labels(generator, conditions_are_labels)
    )
    from .generators import generator_name

    # built column-wise (one numpy -> list conversion per field): per-item make_provenance
    # calls cost ~100 us each and dominated generation (measured 2.4 of 2.7 s for 20k items)
    name = generator_name(generator)
    zs = np.round(Z.astype(np.float64), Z_DECIMALS).tolist()
    conds = [None] * len(zs) if cond is None else [c if c >= 0 else None for c in cond.tolist()]
    params = _jsonable(params)
    extras = {} if extra is None else {k: _jsonable(np.asarray(v)) for k, v in extra.items()}
    prov = []
    for i in range(len(zs)):
        p = {
            "generator": name,
            "method": method,
            "z": zs[i],
            "condition": conds[i],
            "prototype": None if prototypes is None else dict(prototypes[i]),
            "params": dict(params),
            "filters": {},
        }
        for k, v in extras.items():
            p[k] = v[i]
        prov.append(p)
    return SyntheticBatch(X, intended, prov)


def _check_n(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name}: expected a positive int, got {n!r}")
    return int(n)


# --------------------------------------------------------------------------------------
# targeted sampling
# --------------------------------------------------------------------------------------


def generate_from_prior(
    generator: Any,
    n: int,
    *,
    condition: Any = None,
    conditions_are_labels: bool | None = None,
    random_state: Any = None,
) -> SyntheticBatch:
    """Decode ``n`` latents drawn from the prior N(0, I) (the "random synthetic" baseline).

    Parameters
    ----------
    generator : Generator with an int ``latent_dim``
    n : int >= 1
    condition : None, int or int array of shape (n,)
        Conditions for a conditional generator.
    conditions_are_labels : bool, optional
        Whether conditions are class labels (then they are the intended labels). Default:
        the generator's ``condition_is_label_`` when it has one, else True.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    SyntheticBatch with ``method="prior"``.
    """
    _check_generator(generator)
    n = _check_n(n)
    rng = check_random_state(random_state)
    Z = rng.standard_normal((n, _latent_dim(generator))).astype(np.float32)
    return _decode_batch(
        generator,
        Z,
        _check_conditions(condition, n),
        method="prior",
        params={},
        conditions_are_labels=conditions_are_labels,
    )


def generate_low_density(
    generator: Any,
    Z_ref: Any,
    n: int,
    *,
    eps: float | None = None,
    bandwidth: Any = "scott",
    proposal: str = "kde",
    temperature: float = 1.0,
    condition: Any = None,
    conditions_are_labels: bool | None = None,
    random_state: Any = None,
) -> SyntheticBatch:
    """Decode latents drawn where the encoder's latents are sparse: ``p(z) ∝ 1/(p(z)+eps)``.

    A :class:`gapscope.helpers.density.GaussianKDE` is fitted on ``Z_ref`` (typically
    ``generator.encode(X_train)``), latents are drawn with
    :func:`gapscope.helpers.density.sample_low_density` and decoded by g.

    Parameters
    ----------
    generator : Generator
    Z_ref : array-like of shape (n_ref, latent_dim)
        The latents that define "dense".
    n : int >= 1
    eps : float > 0, optional
        Default: the 5th percentile of the KDE density over ``Z_ref`` (so points sparser than
        the sparsest 5% of the data are all about equally preferred).
    bandwidth : float or {"scott", "silverman", "cv"}, default "scott"
    proposal : {"kde", "box"}, default "kde"
        See :func:`gapscope.helpers.density.sample_low_density`.
    temperature : float > 0, default 1.0
    condition, conditions_are_labels : as for :func:`generate_from_prior`.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    SyntheticBatch with ``method="low_density"``; each provenance has ``log_density``, the
    KDE log-density of its z.
    """
    from .density import GaussianKDE, sample_low_density

    _check_generator(generator)
    n = _check_n(n)
    Zr = check_array(Z_ref, name="Z_ref", ndim=2, min_rows=2)
    rng = check_random_state(random_state)
    kde = GaussianKDE(bandwidth=bandwidth, device="cpu", random_state=rng).fit(Zr)
    if eps is None:
        eps = float(np.exp(np.quantile(_np(kde.score_samples(Zr)).astype(np.float64), 0.05)))
    eps = check_positive(eps, name="eps")
    Z = np.asarray(
        sample_low_density(
            kde, n, eps=eps, proposal=proposal, temperature=temperature, random_state=rng
        ),
        dtype=np.float32,
    )
    logp = _np(kde.score_samples(Z)).astype(np.float64)
    params = {
        "eps": eps,
        "bandwidth": float(kde.bandwidth_),
        "proposal": proposal,
        "temperature": float(temperature),
    }
    return _decode_batch(
        generator,
        Z,
        _check_conditions(condition, n),
        method="low_density",
        params=params,
        conditions_are_labels=conditions_are_labels,
        extra={"log_density": logp},
    )


# --------------------------------------------------------------------------------------
# conditional and counter-bias generation
# --------------------------------------------------------------------------------------


def generate_conditional(
    generator: Any,
    conditions: Any,
    *,
    z: Any = None,
    conditions_are_labels: bool | None = None,
    random_state: Any = None,
) -> SyntheticBatch:
    """``x = g(z, c)`` for each condition ``c`` in ``conditions``.

    Parameters
    ----------
    generator : conditional Generator
    conditions : int array of shape (n,)
        One condition per item, e.g. from :func:`draw_conditions`.
    z : array-like of shape (n, latent_dim), optional
        Latents; default N(0, I) draws.
    conditions_are_labels, random_state : see :func:`generate_from_prior`.

    Returns
    -------
    SyntheticBatch with ``method="conditional"``.
    """
    _check_generator(generator)
    c = check_array(conditions, name="conditions", ndim=1, dtype=None)
    c = cast(np.ndarray, _check_conditions(c, c.shape[0], "conditions"))
    n = _check_n(c.shape[0], "conditions (length)")
    if z is None:
        rng = check_random_state(random_state)
        Z = rng.standard_normal((n, _latent_dim(generator))).astype(np.float32)
    else:
        Z = check_array(z, name="z", ndim=2, dtype=np.float32)
        if Z.shape[0] != n:
            raise ValueError(f"z: expected {n} rows to match conditions, got shape {Z.shape}")
    return _decode_batch(
        generator,
        Z,
        c,
        method="conditional",
        params={},
        conditions_are_labels=conditions_are_labels,
    )


def _counts(conditions: Any, n_conditions: int | None, name: str = "conditions") -> np.ndarray:
    c = check_array(conditions, name=name, ndim=1, min_rows=0, dtype=None)
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"{name}: expected integer conditions (-1 = unknown), got dtype {c.dtype}")
    c = c.astype(np.int64)
    known = c[c >= 0]
    if n_conditions is None:
        if not known.size:
            raise ValueError(
                f"{name}: no known condition to infer n_conditions from; pass n_conditions"
            )
        n_conditions = int(known.max()) + 1
    if not isinstance(n_conditions, numbers.Integral) or n_conditions < 1:
        raise ValueError(f"n_conditions: expected a positive int, got {n_conditions!r}")
    if known.size and known.max() >= n_conditions:
        raise ValueError(
            f"{name}: expected values < n_conditions={n_conditions}, got max {known.max()}"
        )
    return np.bincount(known, minlength=int(n_conditions)).astype(np.float64)


def _target(target: Any, K: int) -> np.ndarray:
    if target is None:
        return np.full(K, 1.0 / K)
    t = check_array(target, name="target", ndim=1)
    if t.shape[0] != K or (t < 0).any() or t.sum() <= 0:
        raise ValueError(
            f"target: expected {K} non-negative shares with a positive sum, got {t.tolist()}"
        )
    return t / t.sum()


def estimate_bias(
    conditions: Any, *, n_conditions: int | None = None, target: Any = None
) -> np.ndarray:
    """The bias B: over-representation of each condition against a target mix.

    ``B_c = share_c - target_c`` where ``share_c`` is the fraction of rows with condition
    c (unknown ``-1`` rows ignored). Positive = over-represented; sums to 0.

    Parameters
    ----------
    conditions : int array of shape (n,)
        Class, attribute or cluster index per item (-1 = unknown).
    n_conditions : int, optional
        Default ``max(conditions) + 1``.
    target : array-like of shape (n_conditions,), optional
        Target mix (normalised); default uniform.

    Returns
    -------
    B : ndarray of shape (n_conditions,), float64
    """
    counts = _counts(conditions, n_conditions)
    if counts.sum() == 0:
        raise ValueError("conditions: expected at least one known condition (>= 0), got none")
    return counts / counts.sum() - _target(target, counts.shape[0])


def counter_bias_weights(
    conditions: Any,
    *,
    n_conditions: int | None = None,
    target: Any = None,
    n_new: int | None = None,
) -> np.ndarray:
    """Weights for drawing new conditions against the bias (the design's ``g(z, -B)``).

    Without ``n_new``, ``w_c ∝ max(0, -B_c)`` (the under-representation). With ``n_new``,
    ``w_c ∝ max(0, target_c * (n + n_new) - count_c)``: the deficit each condition has once
    ``n_new`` items are added, so drawing ``n_new`` conditions with these weights moves the
    mix as close to the target as that budget allows. When nothing is under-represented
    the weights are the target itself.

    Returns
    -------
    w : ndarray of shape (n_conditions,), float64, non-negative, summing to 1.
    """
    counts = _counts(conditions, n_conditions)
    t = _target(target, counts.shape[0])
    N = counts.sum()
    if n_new is None:
        deficit = np.maximum(0.0, t - (counts / N if N > 0 else t))
    else:
        n_new = _check_n(n_new, "n_new")
        deficit = np.maximum(0.0, t * (N + n_new) - counts)
    if deficit.sum() <= 1e-12:
        return t.copy()
    return deficit / deficit.sum()


def draw_conditions(
    weights: Any, n: int, *, method: str = "round", random_state: Any = None
) -> np.ndarray:
    """``n`` condition indices distributed as ``weights``.

    ``method="round"``: exact counts by largest remainder (``floor(n w_c)`` plus one for the
    largest fractional parts, ties broken at random), in random order. ``"sample"``:
    independent draws.

    Returns
    -------
    conditions : ndarray of shape (n,), int64
    """
    w = check_array(weights, name="weights", ndim=1)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            f"weights: expected non-negative weights with a positive sum, got {w.tolist()}"
        )
    w = w / w.sum()
    n = _check_n(n)
    check_choice(method, name="method", choices=("round", "sample"))
    rng = check_random_state(random_state)
    if method == "sample":
        return rng.choice(w.shape[0], size=n, p=w).astype(np.int64)
    raw = n * w
    counts = np.floor(raw).astype(np.int64)
    rest = n - int(counts.sum())
    if rest > 0:
        frac = raw - counts + rng.random(w.shape[0]) * 1e-9
        counts[np.argsort(-frac, kind="stable")[:rest]] += 1
    out = np.repeat(np.arange(w.shape[0]), counts)
    rng.shuffle(out)
    return out.astype(np.int64)


def generate_counter_bias(
    generator: Any,
    conditions: Any,
    n: int,
    *,
    n_conditions: int | None = None,
    target: Any = None,
    conditions_are_labels: bool | None = None,
    random_state: Any = None,
) -> SyntheticBatch:
    """Estimate the bias of ``conditions`` and generate ``n`` items that counter it.

    Conditions are drawn with :func:`counter_bias_weights` (``n_new=n``) and
    :func:`draw_conditions` (``"round"``), then decoded with :func:`generate_conditional`.
    Each provenance records the bias ``B`` and the weights under ``params``.
    """
    rng = check_random_state(random_state)
    K = int(_counts(conditions, n_conditions).shape[0])
    B = estimate_bias(conditions, n_conditions=K, target=target)
    w = counter_bias_weights(conditions, n_conditions=K, target=target, n_new=_check_n(n))
    c = draw_conditions(w, n, random_state=rng)
    batch = generate_conditional(
        generator, c, conditions_are_labels=conditions_are_labels, random_state=rng
    )
    for p in batch.provenance:
        p["method"] = "counter_bias"
        p["params"] = _jsonable({"bias": B, "weights": w})
    return batch


# --------------------------------------------------------------------------------------
# controlled augmentation
# --------------------------------------------------------------------------------------

#: Valid augmentation ops per kind (the defaults are all of them).
AUGMENT_OPS = {
    "vector": ("noise", "shift", "scale"),
    "signal": ("noise", "shift", "scale", "warp"),
    "image": ("noise", "shift", "scale", "warp"),
}


def _interp1d(x: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows ``x`` (n, L) at ``coords`` (n, L); edges replicated."""
    L = x.shape[1]
    c = np.clip(coords, 0.0, L - 1.0)
    i0 = np.floor(c).astype(np.int64)
    i1 = np.minimum(i0 + 1, L - 1)
    f = c - i0
    rows = np.arange(x.shape[0])[:, None]
    return (1.0 - f) * x[rows, i0] + f * x[rows, i1]


def _interp2d(x: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of images ``x`` (n, H, W) at (cy, cx) (n, H, W); 0 outside."""
    n, H, W = x.shape
    pad = np.zeros((n, H + 2, W + 2), dtype=np.float64)
    pad[:, 1:-1, 1:-1] = x
    # coordinates in the padded frame; beyond one pixel outside everything reads 0
    py = np.clip(cy + 1.0, 0.0, H + 1.0)
    px = np.clip(cx + 1.0, 0.0, W + 1.0)
    y0 = np.minimum(np.floor(py).astype(np.int64), H)
    x0 = np.minimum(np.floor(px).astype(np.int64), W)
    fy, fx = py - y0, px - x0
    b = np.arange(n)[:, None, None]
    v00 = pad[b, y0, x0]
    v01 = pad[b, y0, x0 + 1]
    v10 = pad[b, y0 + 1, x0]
    v11 = pad[b, y0 + 1, x0 + 1]
    return (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11)


def _smooth_field(rng, shape, sigma):
    """Random displacement field, Gaussian-smoothed over the item axes, max |.| = 1 per item."""
    from scipy.ndimage import gaussian_filter

    f = rng.standard_normal(shape)
    f = gaussian_filter(f, sigma=(0,) + (sigma,) * (len(shape) - 1), mode="reflect")
    m = np.abs(f).reshape(shape[0], -1).max(axis=1)
    m[m == 0] = 1.0
    return f / m.reshape((-1,) + (1,) * (len(shape) - 1))


def augment(
    X: Any,
    delta: float,
    *,
    kind: str = "vector",
    ops: tuple[str, ...] | None = None,
    clip: tuple[float, float] | None = None,
    random_state: Any = None,
) -> np.ndarray:
    """Controlled augmentation ``A(x, delta)``: apply ``ops`` in order with strength ``delta``.

    ``delta = 0`` returns X unchanged (as float64). Per kind and op (``s`` is the feature
    standard deviation over X for vectors, each item's own standard deviation for
    signals/images; draws are independent per item):

    ========  =====================================  ========================================  ===========================
    op        vector (n, d)                          signal (n, L)                             image (n, H, W)
    ========  =====================================  ========================================  ===========================
    noise     ``x + delta * s_j * N(0, 1)``           ``x + delta * s * N(0, 1)``                same as signal
    shift     ``x + delta * s_j * t``, one t~N(0,1)   translate by t ~ U(-delta L, delta L)      translate by (ty, tx) ~
              per item (a common offset)             samples, linear interp., edges repeated   U(-delta H, delta H) pixels,
                                                                                               bilinear, 0 outside
    scale     ``x * (1 + delta * N(0, 1))``           time-stretch about the centre by           zoom about the centre by
                                                     ``exp(delta * N(0, 1))``                  ``exp(delta * N(0, 1))``
    warp      (not defined)                          elastic: smooth random displacement,       elastic (Simard et al.):
                                                     max ``delta * L`` samples                  smooth field, max
                                                                                               ``delta * H`` pixels
    ========  =====================================  ========================================  ===========================

    Parameters
    ----------
    X : array-like of shape (n, d), (n, L) or (n, H, W)
    delta : float in [0, 1]
        Strength.
    kind : {"vector", "signal", "image"}, default "vector"
    ops : tuple of str, optional
        Subset (in order) of ``AUGMENT_OPS[kind]``; default all of them.
    clip : (low, high), optional
        Clip the result, e.g. (0, 1) for pixel intensities.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    X_aug : ndarray, float64, same shape as X.
    """
    check_choice(kind, name="kind", choices=tuple(AUGMENT_OPS))
    ndim = {"vector": 2, "signal": 2, "image": 3}[kind]
    x = check_array(X, name="X", ndim=ndim).copy()
    delta = check_in_range(delta, name="delta", low=0.0, high=1.0)
    valid = AUGMENT_OPS[kind]
    ops = valid if ops is None else tuple(ops)
    for op in ops:
        if op not in valid:
            raise ValueError(f"ops: expected ops from {list(valid)} for kind={kind!r}, got {op!r}")
    rng = check_random_state(random_state)
    n = x.shape[0]
    if delta == 0.0 or n == 0:
        return x if clip is None else np.clip(x, *clip)
    if kind == "vector":
        s = x.std(axis=0) if n > 1 else np.ones(x.shape[1])
        s = np.where(s > 0, s, 1.0)
    else:
        s = x.reshape(n, -1).std(axis=1)
        s = np.where(s > 0, s, 1.0).reshape((n,) + (1,) * (x.ndim - 1))
    for op in ops:
        if op == "noise":
            x = x + delta * s * rng.standard_normal(x.shape)
        elif kind == "vector":
            if op == "shift":
                x = x + delta * s * rng.standard_normal((n, 1))
            else:  # scale
                x = x * (1.0 + delta * rng.standard_normal((n, 1)))
        elif kind == "signal":
            L = x.shape[1]
            t = np.arange(L, dtype=np.float64)[None, :]
            if op == "shift":
                coords = t - rng.uniform(-delta * L, delta * L, size=(n, 1))
            elif op == "scale":
                centre = (L - 1) / 2.0
                coords = centre + (t - centre) / np.exp(delta * rng.standard_normal((n, 1)))
            else:  # warp
                coords = t + delta * L * _smooth_field(rng, (n, L), sigma=max(1.0, L / 8.0))
            x = _interp1d(x, coords)
        else:
            H, W = x.shape[1:]
            gy, gx = np.meshgrid(
                np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij"
            )
            if op == "shift":
                ty = rng.uniform(-delta * H, delta * H, size=(n, 1, 1))
                tx = rng.uniform(-delta * W, delta * W, size=(n, 1, 1))
                cy, cx = gy[None] - ty, gx[None] - tx
            elif op == "scale":
                f = np.exp(delta * rng.standard_normal((n, 1, 1)))
                cyc, cxc = (H - 1) / 2.0, (W - 1) / 2.0
                cy, cx = cyc + (gy[None] - cyc) / f, cxc + (gx[None] - cxc) / f
            else:  # warp
                sig = max(1.0, min(H, W) / 6.0)
                cy = gy[None] + delta * H * _smooth_field(rng, (n, H, W), sig)
                cx = gx[None] + delta * W * _smooth_field(rng, (n, H, W), sig)
            x = _interp2d(x, cy, cx)
    return x if clip is None else np.clip(x, *clip)


def generate_augmented(
    X: Any,
    delta: float,
    *,
    labels: Any = None,
    source_ids: Any = None,
    kind: str = "vector",
    ops: tuple[str, ...] | None = None,
    clip: tuple[float, float] | None = None,
    random_state: Any = None,
) -> SyntheticBatch:
    """:func:`augment` as a :class:`SyntheticBatch`: intended label = the source's label.

    ``source_ids`` (default: row positions) are recorded in each provenance as ``source_id``.
    """
    Xa = augment(X, delta, kind=kind, ops=ops, clip=clip, random_state=random_state)
    n = Xa.shape[0]
    y = (
        np.full(n, -1, dtype=np.int64)
        if labels is None
        else cast(np.ndarray, _check_conditions(labels, n, "labels"))
    )
    src = np.arange(n) if source_ids is None else np.asarray(source_ids)
    if src.shape != (n,):
        raise ValueError(f"source_ids: expected shape ({n},), got {src.shape}")
    used = AUGMENT_OPS[kind] if ops is None else tuple(ops)
    prov = []
    for i in range(n):
        p = make_provenance(
            generator="augment",
            method="augment",
            params={"delta": delta, "ops": list(used), "kind": kind},
        )
        p["source_id"] = _jsonable(src[i])
        prov.append(p)
    return SyntheticBatch(Xa, y, prov)


# --------------------------------------------------------------------------------------
# active synthesis: prototypes of the uncertain regions
# --------------------------------------------------------------------------------------


def uncertainty_prototypes(
    Z: Any,
    uncertainty: Any,
    *,
    top_m: int,
    n_prototypes: int,
    metric: str = "euclidean",
    random_state: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster the ``top_m`` most uncertain points in latent space; return each cluster's medoid.

    k-means (scikit-learn, ``n_init=4``) on the top-M latents (L2-normalised first for
    ``metric="cosine"``); the medoid of a cluster is its member with the smallest sum of
    distances (euclidean, or cosine distance) to the other members.

    Parameters
    ----------
    Z : array-like of shape (n, latent_dim)
    uncertainty : array-like of shape (n,)
    top_m : int, 1 <= top_m <= n
    n_prototypes : int, 1 <= n_prototypes <= top_m
    metric : {"euclidean", "cosine"}
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    medoids : ndarray of shape (n_prototypes,), int64
        Indices into Z of the prototypes x*, ordered by cluster.
    top : ndarray of shape (top_m,), int64
        Indices of the top-M uncertain points (most uncertain first).
    cluster : ndarray of shape (top_m,), int64
        Cluster of each point in ``top``.
    """
    from sklearn.cluster import KMeans

    Zn = check_array(Z, name="Z", ndim=2)
    u = check_array(uncertainty, name="uncertainty", ndim=1)
    if u.shape[0] != Zn.shape[0]:
        raise ValueError(
            f"uncertainty: expected {Zn.shape[0]} scores to match Z, got shape {u.shape}"
        )
    top_m = _check_n(top_m, "top_m")
    n_prototypes = _check_n(n_prototypes, "n_prototypes")
    if top_m > Zn.shape[0]:
        raise ValueError(f"top_m: expected at most the number of points {Zn.shape[0]}, got {top_m}")
    if n_prototypes > top_m:
        raise ValueError(f"n_prototypes: expected at most top_m={top_m}, got {n_prototypes}")
    check_choice(metric, name="metric", choices=("euclidean", "cosine"))
    rng = check_random_state(random_state)
    top = np.argsort(-u, kind="stable")[:top_m]
    Zt = Zn[top]
    if metric == "cosine":
        Zt = Zt / np.maximum(np.linalg.norm(Zt, axis=1, keepdims=True), 1e-12)
    km = KMeans(
        n_clusters=n_prototypes, n_init=4, random_state=int(rng.integers(0, 2**31 - 1))
    ).fit(Zt)
    cluster = km.labels_.astype(np.int64)
    medoids = np.empty(n_prototypes, dtype=np.int64)
    for k in range(n_prototypes):
        members = np.flatnonzero(cluster == k)
        P = Zt[members]
        if metric == "cosine":
            D = 1.0 - P @ P.T
        else:
            sq = (P * P).sum(1)
            D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * P @ P.T, 0.0))
        medoids[k] = top[members[int(np.argmin(D.sum(1)))]]
    return medoids, top.astype(np.int64), cluster


def active_synthesis(
    generator: Any,
    X_pool: Any,
    uncertainty: Any,
    *,
    top_m: int = 200,
    n_prototypes: int = 10,
    n_per_prototype: int = 10,
    radius: float = 0.5,
    Z_pool: Any = None,
    pool_ids: Any = None,
    condition: Any = None,
    metric: str = "euclidean",
    conditions_are_labels: bool | None = None,
    classifier: Any = None,
    random_state: Any = None,
) -> SyntheticBatch:
    """The prototype recipe of active synthesis (``papers/004`` 4.3-4.4).

    1. take the ``top_m`` most uncertain pool points, cluster them in latent space and take
       each cluster's medoid x* (:func:`uncertainty_prototypes`);
    2. its code c* = f(x*);
    3. draw L = ``n_per_prototype`` latents ``z = c* + radius * sd(Z_pool) * N(0, I)``
       (``sd`` per latent dimension, so ``radius`` is in units of the pool's spread);
    4. decode them (with the prototype's condition for a conditional generator).

    Parameters
    ----------
    generator : Generator
    X_pool : array-like of shape (n, *item_shape)
    uncertainty : array-like of shape (n,)
        The model's uncertainty on the pool (e.g. :func:`gapscope.helpers.scoring.ensemble_uncertainty`).
    top_m, n_prototypes, metric : see :func:`uncertainty_prototypes`.
    n_per_prototype : int >= 1
    radius : float >= 0
    Z_pool : array-like of shape (n, latent_dim), optional
        ``generator.encode(X_pool)`` when not given.
    pool_ids : array of shape (n,), optional
        Ids recorded as the prototype's ``id``.
    condition : None, int or int array of shape (n_prototypes,)
        For a conditional generator. Default: the generator's predicted condition of each
        x* (``predict_condition`` or ``classify``, argmax), else ``classifier``'s.
    classifier : object with ``predict_proba``, optional
        Picks prototype conditions when the generator has no head of its own.
    conditions_are_labels, random_state : see :func:`generate_from_prior`.

    Returns
    -------
    SyntheticBatch of ``n_prototypes * n_per_prototype`` items, ``method="prototype"``, with
    ``prototype = {"index", "id", "cluster", "uncertainty", "z"}`` in each provenance.
    """
    _check_generator(generator)
    rng = check_random_state(random_state)
    L = _check_n(n_per_prototype, "n_per_prototype")
    radius = check_positive(radius, name="radius", strict=False)
    Xp = _np(X_pool)
    u = check_array(uncertainty, name="uncertainty", ndim=1)
    Zp = check_array(_np(generator.encode(Xp)) if Z_pool is None else Z_pool, name="Z_pool", ndim=2)
    if Zp.shape[0] != Xp.shape[0]:
        raise ValueError(
            f"Z_pool: expected {Xp.shape[0]} rows to match X_pool, got shape {Zp.shape}"
        )
    medoids, top, cluster = uncertainty_prototypes(
        Zp, u, top_m=top_m, n_prototypes=n_prototypes, metric=metric, random_state=rng
    )
    conditional = (
        getattr(generator, "n_conditions_", None) is not None
        or getattr(generator, "n_conditions", None) is not None
    )
    cond_proto = None
    if condition is not None:
        cond_proto = _check_conditions(condition, len(medoids))
    elif conditional:
        pick = getattr(generator, "predict_condition", None) or getattr(generator, "classify", None)
        if pick is None and classifier is not None:
            cond_proto = _mean_probs(classifier, Xp[medoids]).argmax(axis=1).astype(np.int64)
        elif pick is None:
            raise ValueError(
                "condition: the generator is conditional; pass condition= or classifier= "
                "for the prototypes"
            )
        else:
            cond_proto = _np(pick(Xp[medoids])).argmax(axis=1).astype(np.int64)
    if cond_proto is not None:
        c_star = _np(generator.encode(Xp[medoids], cond_proto)) if conditional else Zp[medoids]
    else:
        c_star = Zp[medoids]
    c_star = np.asarray(c_star, dtype=np.float64)
    sd = Zp.std(axis=0)
    Z = np.repeat(c_star, L, axis=0) + radius * sd * rng.standard_normal(
        (len(medoids) * L, Zp.shape[1])
    )
    cond = None if cond_proto is None else np.repeat(cond_proto, L)
    ids = None if pool_ids is None else np.asarray(pool_ids)
    where = {int(i): k for k, i in enumerate(top)}
    protos = []
    for k, m in enumerate(medoids):
        info = _jsonable(
            {
                "index": int(m),
                "id": None if ids is None else ids[m],
                "cluster": int(cluster[where[int(m)]]),
                "uncertainty": float(u[m]),
                "z": [round(float(v), Z_DECIMALS) for v in c_star[k]],
            }
        )
        protos += [info] * L
    params = {
        "top_m": top_m,
        "n_prototypes": n_prototypes,
        "n_per_prototype": L,
        "radius": radius,
        "metric": metric,
    }
    return _decode_batch(
        generator,
        Z,
        cond,
        method="prototype",
        params=params,
        conditions_are_labels=conditions_are_labels,
        prototypes=protos,
    )


# --------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------


def filter_mask(
    intended_labels: Any,
    *,
    uncertainty: Any = None,
    u_min: float | None = None,
    label_probs: Any = None,
    tau: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Which synthetic items to keep, and a report of what each filter removed.

    * uncertainty filter (when ``u_min`` is given): remove items with ``uncertainty < u_min``
      (the model already finds them trivial);
    * label-consistency filter (when ``tau`` is given): remove items whose intended label
      gets probability ``< tau`` from a separately trained classifier (``label_probs``);
      items with no intended label (-1) have consistency 0 and are removed.

    Both filters are judged on every item independently, so the counts do not depend on
    their order.

    Parameters
    ----------
    intended_labels : int array of shape (n,)
    uncertainty : array-like of shape (n,), required with ``u_min``
    u_min : float, optional
    label_probs : array-like of shape (n, n_classes), required with ``tau``
    tau : float in [0, 1], optional

    Returns
    -------
    keep : ndarray of shape (n,), bool
    report : dict
        ``n_in``, ``u_min``, ``tau``, ``removed_low_uncertainty`` (items failing the
        uncertainty test), ``removed_label_inconsistent`` (items failing the consistency
        test), ``removed_both``, ``n_removed``, ``n_kept``, and the per-item scores
        ``uncertainty`` and ``label_consistency`` (lists, None where not computed).
    """
    y = check_array(intended_labels, name="intended_labels", ndim=1, min_rows=0, dtype=None)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(
            f"intended_labels: expected integer labels (-1 = none), got dtype {y.dtype}"
        )
    y = y.astype(np.int64)
    n = y.shape[0]
    low_u = np.zeros(n, dtype=bool)
    bad_c = np.zeros(n, dtype=bool)
    u = cons = None
    if u_min is not None and uncertainty is None:
        raise ValueError("uncertainty: expected scores of shape (n,) with u_min, got None")
    if uncertainty is not None:
        u = check_array(uncertainty, name="uncertainty", ndim=1, min_rows=0)
        if u.shape[0] != n:
            raise ValueError(f"uncertainty: expected {n} scores, got shape {u.shape}")
    if u_min is not None:
        if isinstance(u_min, bool) or not isinstance(u_min, numbers.Real):
            raise TypeError(f"u_min: expected a real number, got {type(u_min).__name__}")
        low_u = u < float(u_min)
    if tau is not None:
        tau = check_in_range(tau, name="tau", low=0.0, high=1.0)
    if tau is not None and label_probs is None:
        raise ValueError(
            "label_probs: expected probabilities of shape (n, n_classes) with tau, got None"
        )
    if label_probs is not None:
        P = check_array(label_probs, name="label_probs", ndim=2, min_rows=0)
        if P.shape[0] != n:
            raise ValueError(f"label_probs: expected {n} rows, got shape {P.shape}")
        if y.size and y.max() >= P.shape[1]:
            raise ValueError(
                f"intended_labels: expected labels < {P.shape[1]} (label_probs width), got {y.max()}"
            )
        cons = np.where(y >= 0, P[np.arange(n), np.maximum(y, 0)], 0.0)
        if tau is not None:
            bad_c = cons < tau
    keep = ~(low_u | bad_c)
    report = {
        "n_in": int(n),
        "u_min": None if u_min is None else float(u_min),
        "tau": None if tau is None else float(tau),
        "removed_low_uncertainty": int(low_u.sum()),
        "removed_label_inconsistent": int(bad_c.sum()),
        "removed_both": int((low_u & bad_c).sum()),
        "n_removed": int((~keep).sum()),
        "n_kept": int(keep.sum()),
        "uncertainty": None if u is None else u.astype(np.float64).tolist(),
        "label_consistency": None if cons is None else cons.astype(np.float64).tolist(),
    }
    return keep, report


def filter_batch(
    batch: SyntheticBatch,
    *,
    uncertainty: Any = None,
    u_min: float | None = None,
    label_probs: Any = None,
    tau: float | None = None,
) -> SyntheticBatch:
    """Apply :func:`filter_mask` to a batch: the kept items, scores in their provenance.

    Each kept item's ``provenance["filters"]`` gets ``uncertainty`` and
    ``label_consistency`` (when computed); the returned batch's ``filter_report`` holds the
    counts (not the per-item lists).
    """
    if not isinstance(batch, SyntheticBatch):
        raise TypeError(f"batch: expected a SyntheticBatch, got {type(batch).__name__}")
    keep, report = filter_mask(
        batch.intended_labels,
        uncertainty=uncertainty,
        u_min=u_min,
        label_probs=label_probs,
        tau=tau,
    )
    out = batch.subset(keep)
    kept = np.flatnonzero(keep)
    out.provenance = []
    for i in kept:
        p = dict(batch.provenance[i])
        scores = dict(p.get("filters") or {})
        if report["uncertainty"] is not None:
            scores["uncertainty"] = report["uncertainty"][i]
        if report["label_consistency"] is not None:
            scores["label_consistency"] = report["label_consistency"][i]
        p["filters"] = scores
        out.provenance.append(p)
    out.filter_report = {
        k: v for k, v in report.items() if k not in ("uncertainty", "label_consistency")
    }
    return out


# --------------------------------------------------------------------------------------
# dataset shaping
# --------------------------------------------------------------------------------------


class ConditionShaper:
    """A curriculum over conditions steered by the downstream model's failures (``papers/003``).

    ``pi_0`` is uniform (or ``init``). After each round, with ``loss_c`` the downstream
    model's loss on real validation data of condition c::

        p_c     ∝ pi_t,c * exp(eta * loss_c)          (multiplicative weights, in log space)
        pi_t+1  = floor + (1 - K * floor) * p        (mixing with uniform)

    so every condition keeps at least ``floor`` of the mass and conditions the model fails on
    get more generation next round. A NaN loss (no validation data for that condition) is
    replaced by the mean of the finite losses of that round.

    Parameters
    ----------
    n_conditions : int >= 1
    eta : float > 0, default 1.0
        Step size.
    floor : float in [0, 1 / n_conditions], default 0.01
    init : array-like of shape (n_conditions,), optional
        Initial distribution (normalised); default uniform.

    Attributes
    ----------
    pi_ : ndarray of shape (n_conditions,)
        The current distribution.
    curriculum_ : list of ndarray
        ``pi`` per round, starting with ``pi_0``.
    losses_ : list of ndarray
        The per-condition losses given to :meth:`update` (after NaN imputation).

    Examples
    --------
    >>> s = ConditionShaper(3, eta=2.0, floor=0.05)
    >>> _ = s.update([0.1, 0.1, 1.0])
    >>> bool(s.pi_[2] > s.pi_[0])
    True
    """

    def __init__(
        self, n_conditions: int, *, eta: float = 1.0, floor: float = 0.01, init: Any = None
    ) -> None:
        if (
            isinstance(n_conditions, bool)
            or not isinstance(n_conditions, numbers.Integral)
            or n_conditions < 1
        ):
            raise ValueError(f"n_conditions: expected a positive int, got {n_conditions!r}")
        self.n_conditions: int = int(n_conditions)
        self.eta: float = check_positive(eta, name="eta")
        self.floor: float = check_in_range(
            floor, name="floor", low=0.0, high=1.0 / self.n_conditions
        )
        pi = _target(init, self.n_conditions)
        if init is not None and (pi < self.floor - 1e-12).any():
            pi = self.floor + (1.0 - self.n_conditions * self.floor) * pi
        self.pi_: np.ndarray = pi
        self.curriculum_: list[np.ndarray] = [pi.copy()]
        self.losses_: list[np.ndarray] = []

    def update(self, per_condition_loss: Any) -> np.ndarray:
        """One round: ``pi <- floor-mix(pi * exp(eta * loss))``; returns the new ``pi_``."""
        loss = check_array(per_condition_loss, name="per_condition_loss", ndim=1, finite=False)
        if loss.shape[0] != self.n_conditions:
            raise ValueError(
                f"per_condition_loss: expected {self.n_conditions} losses, got shape {loss.shape}"
            )
        if np.isinf(loss).any():
            raise ValueError("per_condition_loss: expected finite losses or NaN (no data), got inf")
        finite = np.isfinite(loss)
        if not finite.any():
            raise ValueError("per_condition_loss: expected at least one finite loss, got all NaN")
        loss = np.where(finite, loss, loss[finite].mean())
        logp = np.log(np.maximum(self.pi_, 1e-300)) + self.eta * loss
        p = np.exp(logp - logp.max())
        p /= p.sum()
        self.pi_ = self.floor + (1.0 - self.n_conditions * self.floor) * p
        self.curriculum_.append(self.pi_.copy())
        self.losses_.append(loss)
        return self.pi_.copy()

    def get_state(self) -> dict:
        """JSON-serialisable state (parameters, ``pi_``, curriculum, losses)."""
        return _jsonable(
            {
                "n_conditions": self.n_conditions,
                "eta": self.eta,
                "floor": self.floor,
                "pi": self.pi_,
                "curriculum": self.curriculum_,
                "losses": self.losses_,
            }
        )

    @classmethod
    def from_state(cls, state: dict) -> ConditionShaper:
        """Rebuild a shaper saved with :meth:`get_state`."""
        try:
            obj = cls(int(state["n_conditions"]), eta=state["eta"], floor=state["floor"])
            obj.pi_ = np.asarray(state["pi"], dtype=np.float64)
            obj.curriculum_ = [np.asarray(c, dtype=np.float64) for c in state["curriculum"]]
            obj.losses_ = [np.asarray(c, dtype=np.float64) for c in state["losses"]]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"state: expected a dict from ConditionShaper.get_state(), got {exc!r}"
            ) from exc
        if obj.pi_.shape != (obj.n_conditions,):
            raise ValueError(
                f"state: expected pi of shape ({obj.n_conditions},), got {obj.pi_.shape}"
            )
        return obj

    def sample(self, n: int, *, random_state: Any = None, method: str = "sample") -> np.ndarray:
        """``n`` conditions drawn from ``pi_`` (``method`` as in :func:`draw_conditions`)."""
        return draw_conditions(self.pi_, n, method=method, random_state=random_state)


def per_condition_loss(
    probs: Any, y_true: Any, conditions: Any, *, n_conditions: int
) -> np.ndarray:
    """Mean cross-entropy of ``probs`` per condition (NaN where a condition has no rows).

    Parameters
    ----------
    probs : array-like of shape (n, n_classes) (or (M, n, n_classes), averaged over members)
    y_true : int array of shape (n,)
    conditions : int array of shape (n,)
        Condition of each validation row (its class, attribute or cluster).
    n_conditions : int

    Returns
    -------
    loss : ndarray of shape (n_conditions,), float64
    """
    P = check_array(probs, name="probs", ndim=(2, 3))
    if P.ndim == 3:
        P = P.mean(axis=0)
    n = P.shape[0]
    y = cast(
        np.ndarray,
        _check_conditions(check_array(y_true, name="y_true", ndim=1, dtype=None), n, "y_true"),
    )
    c = cast(
        np.ndarray,
        _check_conditions(
            check_array(conditions, name="conditions", ndim=1, dtype=None), n, "conditions"
        ),
    )
    if y.max() >= P.shape[1]:
        raise ValueError(f"y_true: expected labels < {P.shape[1]}, got {y.max()}")
    if c.max() >= n_conditions:
        raise ValueError(
            f"conditions: expected values < n_conditions={n_conditions}, got {c.max()}"
        )
    ce = -np.log(np.clip(P[np.arange(n), y], 1e-12, 1.0))
    tot = np.bincount(c, weights=ce, minlength=n_conditions)
    cnt = np.bincount(c, minlength=n_conditions)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


# --------------------------------------------------------------------------------------
# validation in simulation
# --------------------------------------------------------------------------------------


class _ClassConditionalGMM:
    """Generative classifier: one GaussianMixture per class, Bayes rule with class priors."""

    def __init__(self, n_components: int, random_state: int) -> None:
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ClassConditionalGMM:
        from sklearn.mixture import GaussianMixture

        self.classes_ = np.unique(y)
        self.models_ = []
        self.log_prior_ = np.log(np.bincount(y)[self.classes_] / y.shape[0])
        for c in self.classes_:
            Xc = X[y == c]
            k = max(1, min(self.n_components, Xc.shape[0] // 10))
            self.models_.append(
                GaussianMixture(
                    k, covariance_type="full", reg_covar=1e-4, random_state=self.random_state
                ).fit(Xc)
            )
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        ll = np.stack([m.score_samples(X) for m in self.models_], axis=1) + self.log_prior_
        return softmax(ll, axis=1)


def reference_classifier(dataset: Any, *, random_state: Any = None) -> Any:
    """A classifier trained on all real labeled data of a built-in dataset: the validation proxy.

    In simulation nobody can look at a synthetic item, so it is "validated" by a strong
    model that saw all the real data -- a proxy for a person, stated as such in results:

    * ``"mixture"``: the data are Gaussian components, so a per-class Gaussian mixture
      (4 full-covariance components: main/rare subgroup x attribute) with the Bayes rule --
      it recovers the generating components, i.e. "the true component" of a point;
    * the others: multinomial logistic regression on flattened, standardised items.

    Trained on the pool (true labels from the oracle) and the validation split; the test
    splits are left out.

    Returns
    -------
    An object with ``predict_proba(X) -> (n, n_classes)`` taking items of the dataset's shape.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    for attr in ("pool", "val", "oracle", "name"):
        if not hasattr(dataset, attr):
            raise TypeError(
                f"dataset: expected a helpers.data.Dataset, got {type(dataset).__name__}"
            )
    rng = check_random_state(random_state)
    X = np.concatenate([dataset.pool.flat_X(), dataset.val.flat_X()]).astype(np.float64)
    y = np.concatenate([dataset.oracle.query(dataset.pool.ids), dataset.val.labels]).astype(
        np.int64
    )
    seed = int(rng.integers(0, 2**31 - 1))
    if dataset.name == "mixture":
        model: Any = _ClassConditionalGMM(4, seed).fit(X, y)
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(X, y)
    return _FlatProba(model)


class _FlatProba:
    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, X: Any) -> np.ndarray:
        arr = _np(X)
        return self.model.predict_proba(arr.reshape(arr.shape[0], -1).astype(np.float64))


def validate_with_oracle(
    dataset: Any,
    X: Any,
    intended_labels: Any,
    *,
    reference: Any = None,
    min_prob: float = 0.5,
    random_state: Any = None,
    details: bool = False,
) -> Any:
    """Simulated validation of synthetic items -- a stated proxy for a person's accept/reject.

    Nobody can look at a synthetic item in simulation, so a reference classifier that saw all
    the real labeled data (:func:`reference_classifier`: for ``"mixture"`` the class-conditional
    Gaussian mixtures, i.e. the item's most likely true component; a logistic regression for
    the others) stands in. An item is accepted when the reference's most likely class has
    probability at least ``min_prob`` and equals the intended label (any class when the
    intended label is -1).

    Parameters
    ----------
    dataset : helpers.data.Dataset
        Used to build the reference when ``reference`` is None.
    X : array-like of shape (n, *item_shape)
    intended_labels : int array of shape (n,), -1 = none
    reference : object with ``predict_proba(X)``, optional
        Pass one to reuse it across rounds (building it refits on all real data).
    min_prob : float in [0, 1], default 0.5
    random_state : None, int or numpy.random.Generator
        Seeds the reference's fit.
    details : bool, default False

    Returns
    -------
    accepted : ndarray of shape (n,), bool -- or, with ``details=True``, a dict with
        ``accepted``, ``labels`` (the reference's class), ``confidence`` (its probability),
        ``agreement`` (share of items with an intended label that the reference confirms),
        ``n_accepted`` and ``proxy`` (a sentence saying what stood in for the person).
    """
    min_prob = check_in_range(min_prob, name="min_prob", low=0.0, high=1.0)
    Xa = _np(X)
    y = check_array(intended_labels, name="intended_labels", ndim=1, min_rows=0, dtype=None)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"intended_labels: expected integer labels, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if Xa.shape[0] != y.shape[0]:
        raise ValueError(
            f"intended_labels: expected {Xa.shape[0]} labels to match X, got shape {y.shape}"
        )
    if reference is None:
        reference = reference_classifier(dataset, random_state=random_state)
    elif not callable(getattr(reference, "predict_proba", None)):
        raise TypeError(
            f"reference: expected an object with predict_proba(X), got {type(reference).__name__}"
        )
    n = y.shape[0]
    if n:
        P = np.asarray(reference.predict_proba(Xa), dtype=np.float64)
        lab, conf = P.argmax(axis=1).astype(np.int64), P.max(axis=1)
    else:
        lab, conf = np.zeros(0, np.int64), np.zeros(0)
    has = y >= 0
    accepted = np.where(has, lab == y, True) & (conf >= min_prob)
    if not details:
        return accepted
    name = type(getattr(reference, "model", reference)).__name__
    return {
        "accepted": accepted,
        "labels": lab,
        "confidence": conf,
        "agreement": float((lab[has] == y[has]).mean()) if has.any() else float("nan"),
        "n_accepted": int(accepted.sum()),
        "proxy": f"reference classifier {name} trained on all real labeled data stands in "
        "for a person's accept/reject",
    }


# --------------------------------------------------------------------------------------
# one entry point for the loop
# --------------------------------------------------------------------------------------

#: Modes of :func:`synthesize`.
SYNTHESIS_MODES = ("random", "low_density", "active", "shaped", "counter_bias")


def _mean_probs(classifier: Any, X: np.ndarray) -> np.ndarray:
    P = _np(classifier.predict_proba(X)).astype(np.float64)
    return P.mean(axis=0) if P.ndim == 3 else P


def synthesize(
    mode: str,
    *,
    generator: Any,
    n: int,
    X_train: Any = None,
    y_train: Any = None,
    X_pool: Any = None,
    pool_uncertainty: Any = None,
    classifier: Any = None,
    n_classes: int | None = None,
    shaper_state: dict | None = None,
    val: tuple | None = None,
    u_min: float | None = None,
    tau: float | None = None,
    eps: float | None = None,
    top_m: int | None = None,
    n_prototypes: int | None = None,
    radius: float = 0.5,
    eta: float = 1.0,
    floor: float = 0.02,
    random_state: Any = None,
) -> SyntheticBatch:
    """One round's synthetic batch, for the loop's synthesize step and the experiment baselines.

    ``mode``:

    * ``"random"`` -- z ~ N(0, I); for a conditional generator, conditions uniformly at random
      (the "real + random synthetic" / "random conditions" baselines);
    * ``"low_density"`` -- :func:`generate_low_density` over ``generator.encode(X_train)``
      (``X_pool`` when fewer than 2 training rows); a conditional generator gets the
      under-represented classes of ``y_train`` (:func:`counter_bias_weights`);
    * ``"active"`` -- :func:`active_synthesis` on ``X_pool`` and ``pool_uncertainty``
      (``n_prototypes`` default ``min(10, n)``, L = ceil(n / n_prototypes), trimmed to n);
    * ``"shaped"`` -- a :class:`ConditionShaper` (restored from ``shaper_state``) is updated
      with the classifier's per-class loss on ``val`` (real data), then ``n`` conditions are
      drawn from it; needs a conditional generator. The new state is returned as
      ``batch.shaper_state``;
    * ``"counter_bias"`` -- :func:`generate_counter_bias` on the class mix of ``y_train``
      (target uniform): conditions drawn against the bias, z ~ N(0, I); needs a conditional
      generator (the design's counter-bias generation, ``g(z, -B)``).

    When ``classifier`` (``predict_proba`` -> (M, n, C) or (n, C)) is given, every item gets
    its predictive entropy (``uncertainty``) and the probability of its intended label
    (``label_consistency``) in ``provenance["filters"]``; items with uncertainty < ``u_min``
    or consistency < ``tau`` are removed (each filter only when its threshold is given) and
    ``batch.filter_report`` says how many each removed.

    Returns
    -------
    SyntheticBatch (at most ``n`` items), with a ``shaper_state`` attribute (None except
    for ``"shaped"``).
    """
    from .scoring import predictive_entropy

    check_choice(mode, name="mode", choices=SYNTHESIS_MODES)
    _check_generator(generator)
    n = _check_n(n)
    rng = check_random_state(random_state)
    conditional = getattr(generator, "n_conditions_", getattr(generator, "n_conditions", None))
    K = int(conditional) if conditional is not None else (int(n_classes) if n_classes else None)
    ytr = (
        None
        if y_train is None
        else check_array(y_train, name="y_train", ndim=1, min_rows=0, dtype=None).astype(np.int64)
    )
    state = None
    if mode == "random":
        cond = rng.integers(0, K, n) if conditional is not None else None
        batch = generate_from_prior(generator, n, condition=cond, random_state=rng)
    elif mode == "low_density":
        Xref = X_train if X_train is not None and len(X_train) >= 2 else X_pool
        if Xref is None:
            raise ValueError(
                "X_train: expected rows to define the latent density, got none (and no X_pool)"
            )
        Zref = _np(generator.encode(_np(Xref)))
        cond = None
        if conditional is not None:
            assert K is not None  # K = int(conditional)
            known = ytr if ytr is not None and (ytr >= 0).any() else np.zeros(0, np.int64)
            w = (
                counter_bias_weights(known, n_conditions=K, n_new=n)
                if known.size
                else np.full(K, 1.0 / K)
            )
            cond = draw_conditions(w, n, random_state=rng)
        batch = generate_low_density(generator, Zref, n, eps=eps, condition=cond, random_state=rng)
    elif mode == "active":
        if X_pool is None or pool_uncertainty is None:
            raise ValueError("X_pool, pool_uncertainty: the 'active' mode needs both, got None")
        npool = len(X_pool)
        k = min(n_prototypes or min(10, n), npool)
        L = int(math.ceil(n / k))
        m = min(npool, top_m or max(5 * k, 200))
        batch = active_synthesis(
            generator,
            _np(X_pool),
            pool_uncertainty,
            top_m=m,
            n_prototypes=k,
            n_per_prototype=L,
            radius=radius,
            classifier=classifier,
            random_state=rng,
        )
        if len(batch) > n:
            batch = batch.subset(np.sort(rng.choice(len(batch), n, replace=False)))
    elif mode == "counter_bias":
        if conditional is None:
            raise ValueError(
                "generator: the 'counter_bias' mode needs a conditional generator (n_conditions)"
            )
        assert K is not None
        known = ytr[ytr >= 0] if ytr is not None else np.zeros(0, np.int64)
        if known.size:
            batch = generate_counter_bias(generator, known, n, n_conditions=K, random_state=rng)
        else:
            cond = draw_conditions(np.full(K, 1.0 / K), n, random_state=rng)
            batch = generate_conditional(generator, cond, random_state=rng)
    else:  # shaped
        if conditional is None:
            raise ValueError(
                "generator: the 'shaped' mode needs a conditional generator (n_conditions)"
            )
        assert K is not None  # K = int(conditional)
        shaper = (
            ConditionShaper.from_state(shaper_state)
            if shaper_state
            else ConditionShaper(K, eta=eta, floor=floor)
        )
        if val is not None and classifier is not None:
            Xv, yv = val
            yv = np.asarray(yv, dtype=np.int64)
            P = _mean_probs(classifier, _np(Xv))
            shaper.update(per_condition_loss(P, yv, yv, n_conditions=K))
        cond = shaper.sample(n, random_state=rng)
        batch = generate_conditional(generator, cond, random_state=rng)
        for p in batch.provenance:
            p["method"] = "shaped"
            p["params"] = _jsonable({"pi": shaper.pi_, "round": len(shaper.curriculum_) - 1})
        state = shaper.get_state()
    if classifier is not None and len(batch):
        P = _mean_probs(classifier, batch.X)
        u = np.asarray(predictive_entropy(P[None]), dtype=np.float64)
        batch = filter_batch(batch, uncertainty=u, u_min=u_min, label_probs=P, tau=tau)
    batch.shaper_state = state
    return batch
