"""SamplerPanel: controls that steer low-density selection / generation and draw the
proposal on a :class:`LatentMap` as they change; a button turns the proposal into a batch."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ._common import WIDGETS_VERSION

_STATIC = Path(__file__).parent / "static"
STRATEGIES = ("pool", "synthetic")
#: Bandwidth slider: this factor below and above the initial bandwidth.
_BANDWIDTH_SPAN = 4.0
#: Leave-one-out sums below this fraction of the self-kernel are not resolvable in float64
#: (the point has no neighbour within ~7 bandwidths); they are floored here.
_LOO_FLOOR = 1e-10


def ordinal(p: float) -> str:
    """``12.4 -> "12th"``, ``1 -> "1st"``, ``22 -> "22nd"``: a rounded percentile as a word."""
    k = int(round(float(p)))
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


class _DensitySpace:
    """Where the panel measures density: PCA of ``Z`` to ``k`` dims, standardised, and an
    exact Gaussian KDE of bandwidth ``h`` (in standard deviations) on the pool.

    ``log_p_pool`` are the pool items' leave-one-out log-densities (each item's own kernel
    left out): with it a small bandwidth makes isolated items rare instead of making every
    item equally dense (the self-kernel dominating every sum).
    """

    def __init__(self, pca: Any, R: np.ndarray, h: float) -> None:
        from ..helpers.density import GaussianKDE

        self.pca, self.bandwidth = pca, float(h)
        self.kde = GaussianKDE(
            bandwidth=self.bandwidth, standardize=True, device="cpu", dtype="float64"
        ).fit(R)
        n, k = R.shape
        a = np.asarray(self.kde.score_samples(R), dtype=np.float64) + math.log(n)  # log sum_j K
        log_k0 = -0.5 * k * math.log(2.0 * math.pi * h * h) + self.kde._log_jacobian
        rest = np.maximum(np.expm1(np.maximum(a - log_k0, 0.0)), _LOO_FLOOR)  # sum_{j!=i} / K0
        self.log_p_pool = log_k0 + np.log(rest) - math.log(n - 1)
        self._sorted = np.sort(self.log_p_pool)

    def transform(self, Z: Any) -> np.ndarray:
        return np.asarray(self.pca.transform(np.asarray(Z, dtype=np.float64)), dtype=np.float64)

    def score_samples(self, Z: Any) -> np.ndarray:
        """Log-density (full KDE, in the density space's units) of rows of ``Z`` (n, d)."""
        return np.asarray(self.kde.score_samples(self.transform(Z)), dtype=np.float64)

    def percentile(self, log_p: np.ndarray) -> np.ndarray:
        """Share of the pool (in %) whose leave-one-out density is at most ``log_p``."""
        n = self._sorted.shape[0]
        return 100.0 * np.searchsorted(self._sorted, log_p, side="right") / n

    def eps(self, q: float) -> float:
        """``eps`` of ``1/(p + eps)`` as the ``q``-th percentile of the pool's density."""
        return float(np.exp(np.percentile(self.log_p_pool, q)))


class SamplerPanel(anywidget.AnyWidget):
    """Bandwidth / eps / temperature / count / strategy controls over a latent pool.

    Density is measured where pool items actually differ: ``Z`` is reduced by PCA to
    ``density_dims`` components, each standardised to unit variance, and an exact Gaussian
    KDE (:class:`gapscope.helpers.density.GaussianKDE`) is fitted there on the pool. In the
    full latent (tens of dimensions) every item's KDE density is about the same, so no
    control would change the proposal. A pool item's density leaves its own kernel out.
    Items are drawn with probability ``∝ (1 / (p + eps)) ** (1 / temperature)``, as
    :func:`gapscope.helpers.density.select_low_density` does.

    Parameters
    ----------
    Z : array of shape (n, d)
        Latent vectors (e.g. ``Ensemble.fused_embedding``) of the pool.
    ids : sequence of length n
        Item ids of the rows of ``Z``.
    latent_map : LatentMap, optional
        Where the proposal is drawn. Pool proposals are drawn at the items' map positions.
    project : callable, optional
        ``project(Z_new) -> xy_new`` (array (k, 2)): places synthetic latents on the map
        (e.g. a fitted PCA's ``transform``). Needed for ``strategy="synthetic"``.
    density_dims : int, default 8
        Principal components of ``Z`` the density is computed on (2-8 work well; as
        ``LoopConfig.density_dims``); at most ``d``, ``n - 1`` and the rank of ``Z``.
    bandwidth : float, optional
        Initial KDE bandwidth in standard deviations of the density space (default: Scott's
        rule, ``n ** (-1 / (density_dims + 4))``). The slider spans 1/4 to 4 times it.
    eps_percentile : float in [0, 100], default 5
        ``eps`` of ``1/(p + eps)`` as a percentile of the pool's density: items sparser
        than that percentile are preferred about equally, denser ones less and less.
    temperature : float > 0, default 0.3
        Sharpens (< 1) or flattens (> 1) the preference for low density.
    count : int
        Proposal size.
    strategy : {"pool", "synthetic"}
        Select real pool items, or draw new latents
        (:func:`gapscope.helpers.density.sample_low_density` in the density space, mapped
        back to ``Z`` by the PCA: they lie in the span of its components).
    random_state : int
        Seed used for every redraw, so the same settings give the same proposal.

    Attributes
    ----------
    proposal : dict
        ``{"strategy", "ids" (pool) or None, "Z" (k, d), "xy" (k, 2) or None,
        "log_density" (k,), "density_percentile" (k,)}`` for the current settings;
        ``log_density`` is in the density space, ``density_percentile`` the share of the
        pool (0-100) at most as dense as each proposed point.
    pool_log_density : ndarray of shape (n,)
        The pool's (leave-one-out) log-densities at the current bandwidth.
    eps : float
        The ``eps`` in use (read it; set ``eps_percentile``).
    proposal_percentile : float
        Median ``density_percentile`` of the proposal (the panel shows it).

    Notes
    -----
    The browser debounces slider movement (250 ms) before sending; Python recomputes once
    per settled change set.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Z = np.concatenate([rng.normal(size=(300, 16)), rng.normal(size=(20, 16)) + 4])
    >>> sp = SamplerPanel(Z, range(320), count=10)
    >>> len(sp.proposal["ids"]), 0 <= sp.proposal_percentile <= 100
    (10, True)
    """

    _esm = (_STATIC / "sampler.js").read_text(encoding="utf-8")
    _css = (_STATIC / "sampler.css").read_text(encoding="utf-8")

    bandwidth = traitlets.Float(1.0).tag(sync=True)
    bandwidth_range = traitlets.List(traitlets.Float(), [0.1, 10.0]).tag(sync=True)
    eps_percentile = traitlets.Float(5.0).tag(sync=True)
    eps = traitlets.Float(1e-3).tag(sync=True)
    temperature = traitlets.Float(0.3).tag(sync=True)
    temperature_range = traitlets.List(traitlets.Float(), [0.02, 5.0]).tag(sync=True)
    count = traitlets.Int(20).tag(sync=True)
    max_count = traitlets.Int(50).tag(sync=True)
    strategy = traitlets.Unicode("pool").tag(sync=True)
    strategies = traitlets.List(traitlets.Unicode(), list(STRATEGIES)).tag(sync=True)
    density_dims = traitlets.Int(8).tag(sync=True)
    proposal_percentile = traitlets.Float(50.0).tag(sync=True)
    n_proposed = traitlets.Int(0).tag(sync=True)
    batches_made = traitlets.Int(0).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    message_kind = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Unicode(WIDGETS_VERSION).tag(sync=True)

    def __init__(
        self,
        Z: Any,
        ids: Sequence[Any],
        *,
        latent_map: Any = None,
        project: Callable[[np.ndarray], Any] | None = None,
        density_dims: int = 8,
        bandwidth: float | None = None,
        eps_percentile: float = 5.0,
        temperature: float = 0.3,
        count: int = 20,
        strategy: str = "pool",
        random_state: int = 0,
        **kwargs: Any,
    ) -> None:
        if "eps" in kwargs:
            raise TypeError(
                "eps: set eps_percentile instead (a percentile of the pool's density, 0-100), "
                f"got eps={kwargs['eps']!r}"
            )
        super().__init__(**kwargs)
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[0] < 3:
            raise ValueError(f"Z: expected shape (n >= 3, d), got {Z.shape}")
        if not np.isfinite(Z).all():
            raise ValueError("Z: expected finite latents, got NaN or inf")
        ids = [str(i) for i in ids]
        if len(ids) != Z.shape[0]:
            raise ValueError(f"ids: expected {Z.shape[0]} ids (one per row of Z), got {len(ids)}")
        if latent_map is not None and list(latent_map.ids) != ids:
            raise ValueError(
                "latent_map: expected a map of the same items in the same order as ids"
            )
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
        if not isinstance(random_state, int | np.integer) or isinstance(random_state, bool):
            raise TypeError(f"random_state: expected an int (a fixed seed), got {random_state!r}")
        if (
            not isinstance(density_dims, int | np.integer)
            or isinstance(density_dims, bool)
            or density_dims < 1
        ):
            raise ValueError(f"density_dims: expected an int >= 1, got {density_dims!r}")
        self.Z, self.ids, self.latent_map, self.project = Z, ids, latent_map, project
        self.random_state = int(random_state)
        self._batch_callbacks: list[Callable[[dict], Any]] = []
        self._kde_cache: _DensitySpace | None = None
        self._last_key: Any = None
        self.proposal: dict[str, Any] = {}
        self._pca, self._R = self._reduce(Z, int(density_dims))
        n, k = self._R.shape
        h0 = n ** (-1.0 / (k + 4)) if bandwidth is None else bandwidth
        if (
            isinstance(h0, bool)
            or not isinstance(h0, int | float)
            or not (math.isfinite(h0) and h0 > 0)
        ):
            raise ValueError(f"bandwidth: expected a positive float, got {bandwidth!r}")
        h0 = float(h0)
        self._check_settings(float(eps_percentile), float(temperature), h0)
        with self.hold_trait_notifications():
            self.density_dims = k
            self.bandwidth_range = [h0 / _BANDWIDTH_SPAN, h0 * _BANDWIDTH_SPAN]
            self.bandwidth = h0
            self.eps_percentile = float(eps_percentile)
            self.temperature = float(temperature)
            self.max_count = int(min(max(50, count), n))
            self.count = int(count)
            self.strategy = strategy
        self.on_msg(self._on_frontend_msg)
        self.observe(
            self._on_change,
            names=["bandwidth", "eps_percentile", "temperature", "count", "strategy"],
        )
        self.recompute()

    # ------------------------------------------------------------------ compute
    def _reduce(self, Z: np.ndarray, dims: int) -> tuple[Any, np.ndarray]:
        from sklearn.decomposition import PCA

        n, d = Z.shape
        if not np.ptp(Z, axis=0).any():
            raise ValueError(f"Z: expected latents that vary, got {n} identical rows")
        pca = PCA(n_components=min(dims, d, n - 1), random_state=self.random_state).fit(Z)
        var = pca.explained_variance_
        rank = max(1, int((var > 1e-12 * float(var.max())).sum()))
        if rank < pca.n_components_:
            pca = PCA(n_components=rank, random_state=self.random_state).fit(Z)
        return pca, np.asarray(pca.transform(Z), dtype=np.float64)

    def _kde(self, h: float) -> _DensitySpace:
        """The density space at bandwidth ``h``; ``.score_samples(Z)`` takes rows of ``Z``."""
        if self._kde_cache is None or self._kde_cache.bandwidth != float(h):
            self._kde_cache = _DensitySpace(self._pca, self._R, float(h))
        return self._kde_cache

    @property
    def pool_log_density(self) -> np.ndarray:
        return self._kde(self.bandwidth).log_p_pool.copy()

    @staticmethod
    def _check_settings(q: float, t: float, h: float) -> None:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"eps_percentile: expected a float in [0, 100], got {q}")
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"temperature: expected a positive float, got {t}")
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"bandwidth: expected a positive float, got {h}")

    def _on_change(self, change: dict) -> None:
        try:
            self.recompute()
        except (ValueError, TypeError):
            pass  # shown in the panel by recompute(); a browser change cannot raise

    def recompute(self) -> dict[str, Any]:
        """Recompute the proposal for the current settings and draw it on the map."""
        from ..helpers._validation import check_random_state
        from ..helpers.density import _gumbel_top_n, _log_weights, sample_low_density

        key = (self.bandwidth, self.eps_percentile, self.temperature, self.count, self.strategy)
        if key == self._last_key and self.proposal:
            return self.proposal
        try:
            if self.strategy not in STRATEGIES:
                raise ValueError(f"strategy: expected one of {STRATEGIES}, got {self.strategy!r}")
            if not 1 <= self.count <= self.Z.shape[0]:
                raise ValueError(
                    f"count: expected an int in [1, {self.Z.shape[0]}], got {self.count}"
                )
            self._check_settings(self.eps_percentile, self.temperature, self.bandwidth)
            space = self._kde(self.bandwidth)
            eps = space.eps(self.eps_percentile)
            if self.strategy == "pool":
                rng = check_random_state(self.random_state)
                log_w = _log_weights(space.log_p_pool, eps, self.temperature)
                idx = _gumbel_top_n(log_w, self.count, rng).astype(np.int64)
                Zp = self.Z[idx]
                ids = [self.ids[k] for k in idx]
                xy = self.latent_map.xy[idx] if self.latent_map is not None else None
                log_p = space.log_p_pool[idx]
            else:
                if self.project is None and self.latent_map is not None:
                    raise ValueError(
                        "project: strategy 'synthetic' needs project=callable(Z_new) -> xy "
                        "to place new latents on the map"
                    )
                Rp = np.asarray(
                    sample_low_density(
                        space.kde,
                        self.count,
                        eps=eps,
                        temperature=self.temperature,
                        random_state=self.random_state,
                    ),
                    dtype=np.float64,
                )
                Zp = np.asarray(self._pca.inverse_transform(Rp), dtype=np.float64)
                ids = None
                xy = None if self.project is None else np.asarray(self.project(Zp), float)
                log_p = np.asarray(space.kde.score_samples(Rp), dtype=np.float64)
        except (ValueError, TypeError) as e:
            self.message, self.message_kind = str(e), "error"
            raise
        pct = space.percentile(log_p)
        self.proposal = {
            "strategy": self.strategy,
            "ids": ids,
            "Z": Zp,
            "xy": xy,
            "log_density": log_p,
            "density_percentile": pct,
        }
        self._last_key = key
        if self.latent_map is not None and xy is not None:
            self.latent_map.show_proposal(xy)
        with self.hold_trait_notifications():
            self.eps = eps
            self.n_proposed = int(Zp.shape[0])
            self.proposal_percentile = float(np.median(pct))
            self.message = (
                f"{self.n_proposed} {'pool items' if ids is not None else 'new latents'}"
                f" proposed; proposal median density: {ordinal(self.proposal_percentile)}"
                " percentile of pool"
            )
            self.message_kind = ""
        return self.proposal

    # ------------------------------------------------------------------ batches
    def on_batch(self, callback: Callable[[dict], Any], *, remove: bool = False) -> None:
        """Register ``callback(proposal)``, called by the "Make batch" button."""
        if remove:
            self._batch_callbacks.remove(callback)
        else:
            self._batch_callbacks.append(callback)

    def make_batch(self) -> dict[str, Any]:
        """Hand the current proposal to the ``on_batch`` callbacks (the button does this)."""
        prop = self.recompute()
        for cb in list(self._batch_callbacks):
            try:
                cb(prop)
            except (ValueError, TypeError) as e:
                self.message, self.message_kind = f"batch refused: {e}", "error"
                raise
        self.batches_made += 1
        self.message = f"batch {self.batches_made}: {self.n_proposed} items sent to the labeler"
        self.message_kind = ""
        return prop

    def _on_frontend_msg(self, _w: Any, content: Any, _b: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "make_batch":
            try:
                self.make_batch()
            except (ValueError, TypeError):
                pass  # shown in the panel
