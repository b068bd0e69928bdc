"""Exact Gaussian kernel density estimation in torch, and low-density sampling.

:class:`GaussianKDE` is the same density as scikit-learn's
``KernelDensity(kernel="gaussian", rtol=0)`` for the same bandwidth -- an isotropic Gaussian
kernel of standard deviation ``h`` on every reference point,

.. math::  p(q) = \\frac{1}{n} \\sum_j (2\\pi h^2)^{-d/2} \\exp(-\\lVert q - r_j\\rVert^2 / 2h^2),

computed exactly (no tree, no approximation) blockwise in torch on the CPU or a GPU:

* pairwise logits come from one matmul per tile in the dot-product form
  ``q.r - |r|^2/2 - s_q`` (the norms and a per-query shift ``s_q`` ride along as two extra
  columns of the matmul, so the tile costs no extra pass);
* logits are clamped to ``[-87, 80]`` before ``exp`` -- below -87 float32 ``exp`` underflows
  into denormals, ~10-50x slower on x86 CPUs (we measured 0.04 vs 0.45 G/s on one core;
  flush-to-zero mode does not help), and such terms contribute < 1e-37 each anyway; the
  upper clamp is a guard whose (rare) trips are detected and recomputed exactly;
* tiles are written into one reused buffer (a fresh large tensor per tile costs ~4x in page
  faults), sized by :func:`gapscope.helpers.device.chunk_rows`, so memory stays bounded for any n, m.

Each query's shift comes from its best logit over a strided subsample of the references
(see ``_lse_kernel``), which keeps every row's sum in a safe float32 range without a separate
max pass over the full tile; the rare row where it does not (a reference much closer than the
subsample's best) is detected from its sum and recomputed exactly. float32 compute stays
within 1e-3 of a float64 reference in log space (tested): rows where the dot-product form
would cancel badly (|q|^2 + |r|^2 > 1000 in bandwidth units, e.g. tiny bandwidths far from
the data mean) are recomputed in float64.

Note: scikit-learn's tree KDE with ``rtol=0`` is not exact far in the tails (we measured
errors of 10+ nats at log-densities ~30 below the peak, d >= 5); its reference values are
only used where the density is high.

Low-density sampling, ``p_sample(z) ∝ 1 / (p(z) + eps)``, is done entirely in log space:
:func:`low_density_weights`, :func:`select_low_density` (pick pool points) and
:func:`sample_low_density` (draw new latent vectors).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._validation import (
    check_array,
    check_choice,
    check_positive,
    check_random_state,
    is_torch,
)

__all__ = [
    "GaussianKDE",
    "scott_factor",
    "silverman_factor",
    "low_density_weights",
    "select_low_density",
    "sample_low_density",
]

#: float32 ``exp`` underflows (to denormals, slowly) below this.
EXP_FLOOR = -87.0
#: Upper clamp for shifted logits; a row whose tile sum reaches exp(EXP_GUARD) is recomputed exactly.
EXP_CEIL = 80.0
EXP_GUARD = 70.0
#: The shift sits this far above the subsample's best logit (see ``_lse_kernel``).
EXP_SLACK = 50.0
#: Above this |q|^2/2 + |r|^2/2 (bandwidth units) float32 rows are redone in float64.
_F32_NORM_LIMIT = 500.0
#: CPU tile edge (queries x references); GPU reference-tile width.
_CPU_TILE = 2048
_GPU_REF_TILE = 16384
#: Reference points used to estimate each query's shift.
_SHIFT_SAMPLE = 1024
#: Points used by the "cv" bandwidth search at most.
_CV_MAX_POINTS = 2000
#: Candidate factors (relative to Scott's bandwidth) searched by "cv".
_CV_GRID = np.geomspace(0.1, 3.0, 17)
_BANDWIDTH_RULES = ("scott", "silverman", "cv")


def scott_factor(n: int, d: int) -> float:
    """Scott's rule factor ``n ** (-1 / (d + 4))`` (scikit-learn's and scipy's)."""
    return float(n) ** (-1.0 / (d + 4))


def silverman_factor(n: int, d: int) -> float:
    """Silverman's rule factor ``(n * (d + 2) / 4) ** (-1 / (d + 4))`` (scikit-learn's and scipy's)."""
    return (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))


# --------------------------------------------------------------------------------------------
# input handling
# --------------------------------------------------------------------------------------------


def _as_tensor(x: Any, *, name: str, device, min_rows: int = 1, dtype=None):
    """Validate a 2-D finite float array/tensor and return it as a tensor on ``device``."""
    import torch

    dtype = dtype or torch.float32
    if is_torch(x):
        if x.ndim != 2:
            raise ValueError(
                f"{name}: expected an array with ndim in (2,), got shape {tuple(x.shape)}"
            )
        if x.shape[0] < min_rows:
            raise ValueError(
                f"{name}: expected at least {min_rows} row(s), got shape {tuple(x.shape)}"
            )
        if not (x.dtype.is_floating_point or x.dtype in (torch.int32, torch.int64, torch.bool)):
            raise TypeError(f"{name}: expected a numeric tensor, got dtype {x.dtype}")
        t = x.detach().to(device=device, dtype=dtype)
        bad = ~torch.isfinite(t).all(dim=1)
        if bool(bad.any()):
            raise ValueError(
                f"{name}: expected finite values, got NaN or inf in {int(bad.sum())} row(s)"
            )
        return t
    arr = check_array(x, name=name, ndim=2, min_rows=min_rows, dtype=np.float64)
    return torch.as_tensor(arr, dtype=dtype, device=device)


def _resolve_fit_device(Z: Any, device: Any):
    from .device import resolve_device

    if device == "auto" and is_torch(Z):
        return Z.device
    return resolve_device(device)


def _check_fitted(kde: Any) -> None:
    if not hasattr(kde, "bandwidth_"):
        raise ValueError(
            f"{type(kde).__name__} is not fitted yet: call fit(Z) before score_samples/sample"
        )


# --------------------------------------------------------------------------------------------
# the blockwise kernel sum
# --------------------------------------------------------------------------------------------


def _lse_kernel(Q, R, *, device, Q64=None, R64=None):
    """log sum_j exp(-|q - r_j|^2 / 2) for every row q of Q (already scaled by 1/h).

    Q : (m, d), R : (n, d) tensors on ``device`` (float32 or float64). Returns (m,) float64.
    When Q is float32 and float64 copies ``Q64``/``R64`` (R64 may be a callable making it on
    demand) are given, rows whose float32
    dot-product form would lose more than ~1e-4 in log space (|q|^2 + |r|^2 > 1000 in
    bandwidth units) are recomputed in float64.
    """
    import torch

    from .device import chunk_rows

    m, d = Q.shape
    n = R.shape[0]
    dt = Q.dtype
    # Shift per query. With full logits l_j = -|q - r_j|^2 / 2 <= 0 and S = the exact max
    # over a strided subsample of references, the true max M lies in [S, 0]. We use
    # shift = min(S + 50, 0), so M - shift <= 70 whenever M - S <= 120, and every row's
    # total is >= exp(M - shift) >= exp(-50): the -87 floor then costs < n * e^-37 relative.
    # A row whose tile sum reaches e^70 (a reference far closer than the subsample's best)
    # is recomputed exactly.
    stride = max(1, n // _SHIFT_SAMPLE)
    r_sq_half = 0.5 * (R * R).sum(dim=1)
    q_sq_half = 0.5 * (Q * Q).sum(dim=1)

    if device.type == "cpu":
        # ~16 MiB tiles stay in cache; bigger ones only add memory traffic.
        br = min(n, _CPU_TILE)
        bq_cap = _CPU_TILE
    else:
        br = min(n, _GPU_REF_TILE)
        bq_cap = _GPU_REF_TILE  # a 1 GiB float32 tile at most
    itemsize = torch.finfo(dt).bits // 8
    bq = max(1, min(m, bq_cap, chunk_rows(br * itemsize, device=device, min_rows=64)))
    # Augmented operands [r, -|r|^2/2, 1] and [q, 1, -c]: one matmul gives q.r - |r|^2/2 - c.
    Ra = torch.empty((n, d + 2), dtype=dt, device=device)
    Ra[:, :d] = R
    Ra[:, d] = -r_sq_half
    Ra[:, d + 1] = 1.0
    RaT = Ra.T.contiguous()
    Rsub_a = Ra[::stride].T.contiguous()
    sub_idx = torch.arange(0, n, stride, device=device)
    sub_w = Rsub_a.shape[1]
    buf = torch.empty(max(bq * br, bq * sub_w), dtype=dt, device=device)
    out = torch.empty(m, dtype=torch.float64, device=device)
    guard = math.exp(EXP_GUARD)
    precise = []

    for q0 in range(0, m, bq):
        q1 = min(m, q0 + bq)
        nq = q1 - q0
        qh = q_sq_half[q0:q1]
        Qa = torch.empty((nq, d + 2), dtype=dt, device=device)
        Qa[:, :d] = Q[q0:q1]
        Qa[:, d] = 1.0
        Qa[:, d + 1] = 0.0
        tile = buf[: nq * sub_w].view(nq, sub_w)
        torch.mm(Qa, Rsub_a, out=tile)
        sub_max, arg = tile.max(dim=1)
        S = sub_max - qh
        shift = torch.clamp(S + EXP_SLACK, max=0.0)
        Qa[:, d + 1] = -(shift + qh)
        if dt == torch.float32 and Q64 is not None:
            bad = (qh + r_sq_half[sub_idx[arg]]) > _F32_NORM_LIMIT
            if bool(bad.any()):
                precise.append(q0 + torch.nonzero(bad).flatten())
        acc = torch.zeros(nq, dtype=torch.float64, device=device)
        redo = torch.zeros(nq, dtype=torch.bool, device=device)
        for r0 in range(0, n, br):
            r1 = min(n, r0 + br)
            w = r1 - r0
            tile = buf[: nq * w].view(nq, w)
            torch.mm(Qa, RaT[:, r0:r1], out=tile)
            tile.clamp_(EXP_FLOOR, EXP_CEIL).exp_()
            s = tile.sum(dim=1)
            redo |= s >= guard
            acc += s.to(torch.float64)
        res = torch.log(acc) + shift.to(torch.float64)
        if bool(redo.any()):
            idx = torch.nonzero(redo).flatten()
            res[idx] = _lse_exact(Q[q0:q1][idx], R, r_sq_half, br)
        out[q0:q1] = res
    if precise:
        idx = torch.cat(precise)
        out[idx] = _lse_kernel(Q64[idx], R64() if callable(R64) else R64, device=device)
    return out


def _lse_exact(Q, R, r_sq_half, br):
    """Two-pass log-sum-exp (exact max first): the fallback for rows whose shift was too low."""
    import torch

    q_sq_half = 0.5 * (Q * Q).sum(dim=1)
    mx = torch.full((Q.shape[0],), -math.inf, dtype=Q.dtype, device=Q.device)
    for r0 in range(0, R.shape[0], br):
        lg = Q @ R[r0 : r0 + br].T - r_sq_half[r0 : r0 + br]
        mx = torch.maximum(mx, lg.amax(dim=1))
    acc = torch.zeros(Q.shape[0], dtype=torch.float64, device=Q.device)
    for r0 in range(0, R.shape[0], br):
        lg = Q @ R[r0 : r0 + br].T - r_sq_half[r0 : r0 + br] - mx[:, None]
        acc += lg.clamp_(min=EXP_FLOOR).exp_().sum(dim=1).to(torch.float64)
    return torch.log(acc) + mx.to(torch.float64) - q_sq_half.to(torch.float64)


# --------------------------------------------------------------------------------------------
# estimator
# --------------------------------------------------------------------------------------------


class GaussianKDE:
    """Exact isotropic Gaussian KDE in torch (CPU or GPU), scikit-learn estimator contract.

    Parameters
    ----------
    bandwidth : float or {"scott", "silverman", "cv"}, default "scott"
        Kernel standard deviation ``h`` (in the units of ``Z``, or of the standardised
        features when ``standardize=True``). A float gives exactly scikit-learn's
        ``KernelDensity(bandwidth=h, kernel="gaussian")``. The rules give
        ``h = factor * sigma`` with Scott's ``n**(-1/(d+4))`` or Silverman's
        ``(n*(d+2)/4)**(-1/(d+4))`` factor and ``sigma`` the root mean per-feature (population)
        standard deviation of ``Z`` (``sigma = 1`` after standardising, which makes ``"scott"``
        identical to scikit-learn's ``bandwidth="scott"`` on standardised data). ``"cv"``
        maximises the 3-fold held-out log-likelihood over ``h = c * h_scott`` for 17
        log-spaced ``c`` in [0.1, 3]; above 2000 points it searches on a random subsample
        and rescales the winner by ``(n_train / n) ** (1 / (d + 4))`` (the rule's n-scaling).
    standardize : bool, default False
        Scale every feature to zero mean and unit (population) variance before fitting, as
        scikit-learn's ``StandardScaler`` does. Densities are
        still returned in the original units (the Jacobian ``-sum(log std)`` is added).
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default "auto"
        Where to compute. ``"auto"``: the device of ``Z`` when it is a torch tensor, else
        :func:`gapscope.helpers.device.resolve_device`.
    dtype : {"float32", "float64"}, default "float32"
        Compute dtype. float32 is within 1e-3 of float64 in log space.
    random_state : None, int or numpy.random.Generator, default None
        Used only by ``bandwidth="cv"`` (fold split and subsample).

    Attributes
    ----------
    bandwidth_ : float
        The kernel standard deviation used (in standardised units when ``standardize``).
    n_samples_, n_features_in_ : int
    mean_, scale_ : ndarray of shape (n_features,)
        The standardisation (zeros / ones when ``standardize=False``).
    device_ : torch.device

    Notes
    -----
    Cost is one ``exp`` per (query, reference) pair: ``score_samples`` on m queries is
    O(m n d) flops plus m n exps, memory O(tile) independent of m and n. On a CPU the
    ``exp`` rate is the ceiling. For d <= 3 on very large n, KDEpy's ``FFTKDE`` (approximate,
    gridded) is much faster and fine for drawing contours.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.random.default_rng(0).normal(size=(500, 2))
    >>> kde = GaussianKDE(bandwidth=0.3).fit(Z)
    >>> kde.score_samples(Z[:3]).shape
    (3,)
    >>> kde.sample(4, random_state=0).shape
    (4, 2)
    """

    def __init__(
        self,
        bandwidth: float | str = "scott",
        *,
        standardize: bool = False,
        device: Any = "auto",
        dtype: str = "float32",
        random_state: Any = None,
    ) -> None:
        self.bandwidth = bandwidth
        self.standardize = standardize
        self.device = device
        self.dtype = dtype
        self.random_state = random_state

    # -- fitting ---------------------------------------------------------------------------
    def _torch_dtype(self):
        import torch

        check_choice(self.dtype, name="dtype", choices=("float32", "float64"))
        return torch.float32 if self.dtype == "float32" else torch.float64

    def fit(self, Z: Any, y: Any = None) -> GaussianKDE:
        """Fit on reference points ``Z`` of shape (n_samples, n_features); returns self.

        Raises
        ------
        ValueError
            NaN/inf rows, fewer than 2 points, a bandwidth <= 0 or an unknown rule.
        """
        import torch

        bw = self.bandwidth
        if isinstance(bw, str):
            check_choice(bw, name="bandwidth", choices=_BANDWIDTH_RULES)
        elif isinstance(bw, numbers.Real) and not isinstance(bw, bool):
            check_positive(bw, name="bandwidth")
        else:
            raise TypeError(
                f"bandwidth: expected a float > 0 or one of {list(_BANDWIDTH_RULES)}, "
                f"got {type(bw).__name__}"
            )
        dt = self._torch_dtype()
        dev = _resolve_fit_device(Z, self.device)
        Zt = _as_tensor(Z, name="Z", device=dev, min_rows=2, dtype=torch.float64)
        n, d = Zt.shape
        if self.standardize:
            mean = Zt.mean(dim=0)
            scale = Zt.std(dim=0, unbiased=False)
            if bool((scale <= 0).any()):
                k = int((scale <= 0).sum())
                raise ValueError(
                    f"Z: standardize=True needs every feature to vary, got {k} constant feature(s)"
                )
        else:
            # Centring (density unchanged) keeps the dot-product form accurate in float32.
            mean = Zt.mean(dim=0)
            scale = torch.ones(d, dtype=torch.float64, device=dev)
        Zs = (Zt - mean) / scale
        self.mean_ = mean.cpu().numpy()
        self.scale_ = scale.cpu().numpy()
        self.n_samples_, self.n_features_in_ = int(n), int(d)
        self.device_ = dev
        self._input_is_torch = is_torch(Z)
        self._log_jacobian = float(-np.log(self.scale_).sum())
        self._Zs64 = Zs  # float64 copy kept for sampling, cv and the float64 fallback rows

        if isinstance(bw, str):
            sigma = float(torch.sqrt(Zs.var(dim=0, unbiased=False).mean()))
            if not sigma > 0:
                raise ValueError(
                    f"Z: a bandwidth rule needs points that are not all identical, got {n} identical rows"
                )
            if bw == "scott":
                h = scott_factor(n, d) * sigma
            elif bw == "silverman":
                h = silverman_factor(n, d) * sigma
            else:
                h = self._cv_bandwidth(Zs, sigma)
        else:
            h = float(bw)
        self.bandwidth_ = float(h)
        self._R = (self._Zs64 / self.bandwidth_).to(dt)
        return self

    def _cv_bandwidth(self, Zs, sigma: float) -> float:
        import torch

        rng = check_random_state(self.random_state)
        n, d = Zs.shape
        if n < 6:
            raise ValueError(f'Z: bandwidth="cv" needs at least 6 points, got {n}')
        idx = rng.permutation(n)[: min(n, _CV_MAX_POINTS)]
        X = Zs[torch.as_tensor(idx, device=Zs.device)].to(self._torch_dtype())
        folds = np.array_split(np.arange(len(idx)), 3)
        n_train = len(idx) - len(folds[0])
        h0 = scott_factor(n_train, d) * sigma
        scores = []
        for c in _CV_GRID:
            h = c * h0
            total = 0.0
            for f in folds:
                mask = np.ones(len(idx), dtype=bool)
                mask[f] = False
                tr = X[torch.as_tensor(mask, device=X.device)]
                te = X[torch.as_tensor(f, device=X.device)]
                lse = _lse_kernel(te / h, tr / h, device=X.device)
                ll = lse - math.log(tr.shape[0]) - 0.5 * d * math.log(2 * math.pi * h * h)
                total += float(ll.sum())
            scores.append(total)
        best = float(_CV_GRID[int(np.argmax(scores))] * h0)
        self.cv_scores_ = np.asarray(scores)
        self.cv_grid_ = _CV_GRID * h0
        return best * (n_train / n) ** (1.0 / (d + 4))

    # -- scoring ---------------------------------------------------------------------------
    def score_samples(self, Q: Any):
        """Log-density log p(q) at every row of ``Q``.

        Parameters
        ----------
        Q : array or tensor of shape (m, n_features)

        Returns
        -------
        log_p : ndarray of shape (m,) float64, or a float64 tensor on ``Q``'s device when
            ``Q`` is a torch tensor.
        """
        import torch

        _check_fitted(self)
        Qt = _as_tensor(Q, name="Q", device=self.device_, dtype=torch.float64)
        if Qt.shape[1] != self.n_features_in_:
            raise ValueError(
                f"Q: expected {self.n_features_in_} features (as in fit), got shape {tuple(Qt.shape)}"
            )
        mean = torch.as_tensor(self.mean_, device=self.device_)
        scale = torch.as_tensor(self.scale_, device=self.device_)
        Qs64 = (Qt - mean) / scale / self.bandwidth_
        Qs = Qs64.to(self._R.dtype)
        lse = _lse_kernel(
            Qs, self._R, device=self.device_, Q64=Qs64, R64=lambda: self._Zs64 / self.bandwidth_
        )
        h, d = self.bandwidth_, self.n_features_in_
        log_p = (
            lse
            - math.log(self.n_samples_)
            - 0.5 * d * math.log(2.0 * math.pi * h * h)
            + self._log_jacobian
        )
        if is_torch(Q):
            return log_p.to(Q.device)
        return log_p.cpu().numpy()

    def score(self, Q: Any) -> float:
        """Total log-likelihood of ``Q`` (scikit-learn's ``score``)."""
        return float(np.sum(np.asarray(_to_numpy(self.score_samples(Q)))))

    def sample(self, n_samples: int = 1, *, random_state: Any = None):
        """Draw ``n_samples`` points from the fitted density.

        Returns an ndarray of shape (n_samples, n_features), or a tensor on the fit device
        when the model was fitted on a tensor.
        """
        _check_fitted(self)
        n_samples = _check_count(n_samples, name="n_samples")
        return self._sample(n_samples, random_state=random_state, widen=1.0)

    def _sample(self, n_samples: int, *, random_state: Any, widen: float):
        import torch

        rng = check_random_state(random_state)
        idx = rng.integers(0, self.n_samples_, size=n_samples)
        base = self._Zs64[torch.as_tensor(idx, device=self.device_)].cpu().numpy()
        noise = rng.standard_normal((n_samples, self.n_features_in_)) * (self.bandwidth_ * widen)
        out = (base + noise) * self.scale_ + self.mean_
        if self._input_is_torch:
            return torch.as_tensor(out, device=self.device_)
        return out


def _to_numpy(x: Any) -> np.ndarray:
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_count(n: Any, *, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {type(n).__name__}")
    if int(n) < 1:
        raise ValueError(f"{name}: expected a positive int, got {n}")
    return int(n)


# --------------------------------------------------------------------------------------------
# low-density sampling
# --------------------------------------------------------------------------------------------


def _log_weights(log_p: np.ndarray, eps: float, temperature: float) -> np.ndarray:
    lw = -np.logaddexp(log_p, math.log(eps)) / temperature
    return lw - np.logaddexp.reduce(lw)


def low_density_weights(log_p: Any, *, eps: float, temperature: float = 1.0) -> np.ndarray:
    """Sampling weights ``w ∝ (1 / (p + eps)) ** (1 / temperature)`` from log-densities.

    Computed as ``exp(-logaddexp(log_p, log eps) / T)`` normalised with a log-sum-exp, so a
    log-density of -1e4 (or +1e4) gives finite weights: every weight is at most
    ``1/eps``-proportional, never infinite.

    Parameters
    ----------
    log_p : array-like of shape (n,)
        Natural-log densities, e.g. ``GaussianKDE.score_samples``.
    eps : float > 0
        Added to the density ``p = exp(log_p)`` itself (not to ``log_p``), in the same
        units as ``p``. It caps how much a very sparse point can be preferred: points with
        ``p << eps`` all get about the same weight ``1/eps``, points with ``p >> eps`` get
        ``1/p``. A useful scale is a low quantile of ``exp(log_p)`` over the data, e.g.
        ``eps = np.exp(np.quantile(log_p, 0.05))``.
    temperature : float > 0, default 1.0
        Sharpens (< 1) or flattens (> 1) the weights; ``T -> inf`` is uniform.

    Returns
    -------
    w : ndarray of shape (n,), float64, non-negative, summing to 1.

    Examples
    --------
    >>> w = low_density_weights(np.array([-1e4, 0.0, 2.0]), eps=1e-3)
    >>> bool(np.isclose(w.sum(), 1.0)), bool(w[0] > w[1] > w[2])
    (True, True)
    """
    log_p = check_array(_to_numpy(log_p), name="log_p", ndim=1, finite=False)
    if np.isnan(log_p).any():
        raise ValueError(f"log_p: expected no NaN, got {int(np.isnan(log_p).sum())} NaN value(s)")
    if np.isposinf(log_p).any():
        raise ValueError("log_p: expected finite or -inf values, got +inf")
    eps = check_positive(eps, name="eps")
    temperature = check_positive(temperature, name="temperature")
    w = np.exp(_log_weights(log_p, eps, temperature))
    return w / w.sum()


def _gumbel_top_n(log_w: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Weighted sampling without replacement (Efraimidis-Spirakis via Gumbel-top-k)."""
    keys = log_w + rng.gumbel(size=log_w.shape[0])
    top = np.argpartition(-keys, n - 1)[:n]
    return top[np.argsort(-keys[top], kind="stable")]


def select_low_density(
    Z_pool: Any,
    kde: GaussianKDE,
    n: int,
    *,
    eps: float,
    temperature: float = 1.0,
    random_state: Any = None,
) -> np.ndarray:
    """Pick ``n`` distinct pool points with probability ∝ ``(1/(p(z)+eps))**(1/T)``.

    Sequential weighted sampling without replacement (Gumbel-top-k on the log-weights), so
    ``temperature -> 0`` approaches "the n lowest-density points" and ``temperature -> inf``
    uniform random selection.

    Parameters
    ----------
    Z_pool : array or tensor of shape (n_pool, n_features)
    kde : fitted GaussianKDE
    n : int, 1 <= n <= n_pool
    eps, temperature : see :func:`low_density_weights`.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    indices : ndarray of shape (n,), int64, into ``Z_pool``, most-preferred first.
    """
    _check_fitted(kde)
    n = _check_count(n, name="n")
    eps = check_positive(eps, name="eps")
    temperature = check_positive(temperature, name="temperature")
    n_pool = int(Z_pool.shape[0]) if hasattr(Z_pool, "shape") else len(Z_pool)
    if n > n_pool:
        raise ValueError(
            f"n: expected at most the pool size {n_pool} (sampling without replacement), got {n}"
        )
    rng = check_random_state(random_state)
    log_p = _to_numpy(kde.score_samples(Z_pool)).astype(np.float64)
    return _gumbel_top_n(_log_weights(log_p, eps, temperature), n, rng).astype(np.int64)


def sample_low_density(
    kde: GaussianKDE,
    n: int,
    *,
    eps: float,
    proposal: str = "kde",
    n_candidates: int | None = None,
    widen: float = 2.0,
    margin: float = 0.1,
    temperature: float = 1.0,
    random_state: Any = None,
):
    """Draw ``n`` new latent vectors concentrated where the fitted density is low.

    Sampling-importance-resampling: draw candidates from a proposal ``q``, then keep ``n``
    of them (without replacement, Gumbel-top-k) with weights ``w`` computed in log space.

    * ``proposal="box"``: candidates uniform in the data's bounding box widened by
      ``margin`` of its extent on every side; ``w ∝ 1/(p+eps)``, so the draws follow
      ``1/(p(z)+eps)`` restricted to the box (the exact SIR target as ``n_candidates/n``
      grows).
    * ``proposal="kde"``: candidates from the KDE with bandwidth ``widen * h``; weights
      ``w ∝ 1/(p+eps)``, so the draws follow ``q_widen(z) / (p(z)+eps)``: low-density
      regions *near* the data (edges, gaps between clusters), not the empty space far away
      where ``1/(p+eps)`` alone is flat and unnormalisable.

    Parameters
    ----------
    kde : fitted GaussianKDE
    n : int >= 1
    eps, temperature : see :func:`low_density_weights`.
    proposal : {"kde", "box"}, default "kde"
    n_candidates : int, default ``max(20 * n, 2000)``; must be >= n.
    widen : float > 0, default 2.0 (``"kde"`` only)
    margin : float >= 0, default 0.1 (``"box"`` only)
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    Z_new : ndarray of shape (n, n_features) (a tensor on the fit device when the KDE was
        fitted on a tensor).
    """
    import torch

    _check_fitted(kde)
    n = _check_count(n, name="n")
    eps = check_positive(eps, name="eps")
    temperature = check_positive(temperature, name="temperature")
    check_choice(proposal, name="proposal", choices=("kde", "box"))
    widen = check_positive(widen, name="widen")
    margin = check_positive(margin, name="margin", strict=False)
    n_cand = (
        max(20 * n, 2000)
        if n_candidates is None
        else _check_count(n_candidates, name="n_candidates")
    )
    if n_cand < n:
        raise ValueError(f"n_candidates: expected at least n={n}, got {n_cand}")
    rng = check_random_state(random_state)
    if proposal == "kde":
        cand = _to_numpy(kde._sample(n_cand, random_state=rng, widen=widen))
    else:
        Z = kde._Zs64.cpu().numpy() * kde.scale_ + kde.mean_
        lo, hi = Z.min(axis=0), Z.max(axis=0)
        ext = hi - lo
        lo, hi = lo - margin * ext, hi + margin * ext
        cand = rng.uniform(lo, hi, size=(n_cand, Z.shape[1]))
    log_p = _to_numpy(kde.score_samples(cand)).astype(np.float64)
    keep = _gumbel_top_n(_log_weights(log_p, eps, temperature), n, rng)
    out = cand[keep]
    if kde._input_is_torch:
        return torch.as_tensor(out, device=kde.device_)
    return out
