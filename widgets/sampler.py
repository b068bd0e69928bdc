"""SamplerPanel: controls that steer low-density selection / generation and draw the
proposal on a :class:`LatentMap` as they change; a button turns the proposal into a batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from ._common import WIDGETS_VERSION

_STATIC = Path(__file__).parent / "static"
STRATEGIES = ("pool", "synthetic")


class SamplerPanel(anywidget.AnyWidget):
    """Bandwidth / eps / temperature / count / strategy controls over a latent pool.

    Parameters
    ----------
    Z : array of shape (n, d)
        Latent vectors (e.g. ``Ensemble.fused_embedding``) the KDE is fitted on.
    ids : sequence of length n
        Item ids of the rows of ``Z``.
    latent_map : LatentMap, optional
        Where the proposal is drawn. Pool proposals are drawn at the items' map positions.
    project : callable, optional
        ``project(Z_new) -> xy_new`` (array (k, 2)): places synthetic latents on the map
        (e.g. a fitted PCA's ``transform``). Needed for ``strategy="synthetic"``.
    bandwidth : float, optional
        Initial KDE bandwidth in units of ``Z`` (default: Scott's rule).
    eps : float, optional
        Initial ``eps`` of ``1/(p + eps)`` (default: the 5% quantile of the pool density).
    temperature : float
    count : int
        Proposal size.
    strategy : {"pool", "synthetic"}
        Select real pool items (``helpers.density.select_low_density``) or draw new
        latents (``helpers.density.sample_low_density``).
    random_state : int
        Seed used for every redraw, so the same settings give the same proposal.

    Attributes
    ----------
    proposal : dict
        ``{"strategy", "ids" (pool) or None, "Z" (k, d), "xy" (k, 2) or None,
        "log_density" (k,)}`` for the current settings.

    Notes
    -----
    The browser debounces slider movement (250 ms) before sending; Python recomputes once
    per settled change set.
    """

    _esm = (_STATIC / "sampler.js").read_text(encoding="utf-8")
    _css = (_STATIC / "sampler.css").read_text(encoding="utf-8")

    bandwidth = traitlets.Float(1.0).tag(sync=True)
    bandwidth_range = traitlets.List(traitlets.Float(), [0.1, 10.0]).tag(sync=True)
    eps = traitlets.Float(1e-3).tag(sync=True)
    eps_range = traitlets.List(traitlets.Float(), [1e-9, 1.0]).tag(sync=True)
    temperature = traitlets.Float(1.0).tag(sync=True)
    count = traitlets.Int(20).tag(sync=True)
    max_count = traitlets.Int(50).tag(sync=True)
    strategy = traitlets.Unicode("pool").tag(sync=True)
    strategies = traitlets.List(traitlets.Unicode(), list(STRATEGIES)).tag(sync=True)
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
        bandwidth: float | None = None,
        eps: float | None = None,
        temperature: float = 1.0,
        count: int = 20,
        strategy: str = "pool",
        random_state: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[0] < 2:
            raise ValueError(f"Z: expected shape (n >= 2, d), got {Z.shape}")
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
        self.Z, self.ids, self.latent_map, self.project = Z, ids, latent_map, project
        self.random_state = int(random_state)
        self._batch_callbacks: list[Callable[[dict], Any]] = []
        self._kde_cache: tuple[float, Any] | None = None
        self._last_key: Any = None
        self.proposal: dict[str, Any] = {}
        n, d = Z.shape
        sigma = float(np.sqrt(np.mean(Z.var(axis=0)))) or 1.0
        h0 = sigma * n ** (-1.0 / (d + 4)) if bandwidth is None else float(bandwidth)
        if not np.isfinite(h0) or h0 <= 0:
            raise ValueError(f"bandwidth: expected a positive float, got {bandwidth!r}")
        log_p = self._kde(h0).score_samples(Z)
        log_p = np.asarray(log_p, dtype=np.float64)
        q05, qmin, qmax = np.quantile(log_p, [0.05, 0.0, 1.0])
        with self.hold_trait_notifications():
            self.bandwidth_range = [h0 / 10.0, h0 * 10.0]
            self.bandwidth = h0
            self.eps_range = [float(np.exp(qmin - 5)), float(np.exp(qmax + 2))]
            self.eps = float(np.exp(q05)) if eps is None else float(eps)
            self.temperature = float(temperature)
            self.max_count = int(min(max(50, count), n))
            self.count = int(count)
            self.strategy = strategy
        self.on_msg(self._on_frontend_msg)
        self.observe(
            self._on_change, names=["bandwidth", "eps", "temperature", "count", "strategy"]
        )
        self.recompute()

    # ------------------------------------------------------------------ compute
    def _kde(self, h: float) -> Any:
        from ..helpers.density import GaussianKDE

        if self._kde_cache is None or self._kde_cache[0] != h:
            self._kde_cache = (h, GaussianKDE(bandwidth=h, device="cpu").fit(self.Z))
        return self._kde_cache[1]

    def _on_change(self, change: dict) -> None:
        try:
            self.recompute()
        except (ValueError, TypeError):
            pass  # shown in the panel by recompute(); a browser change cannot raise

    def recompute(self) -> dict[str, Any]:
        """Recompute the proposal for the current settings and draw it on the map."""
        from ..helpers.density import sample_low_density, select_low_density

        key = (self.bandwidth, self.eps, self.temperature, self.count, self.strategy)
        if key == self._last_key and self.proposal:
            return self.proposal
        try:
            if self.strategy not in STRATEGIES:
                raise ValueError(f"strategy: expected one of {STRATEGIES}, got {self.strategy!r}")
            if not 1 <= self.count <= self.Z.shape[0]:
                raise ValueError(
                    f"count: expected an int in [1, {self.Z.shape[0]}], got {self.count}"
                )
            kde = self._kde(float(self.bandwidth))
            if self.strategy == "pool":
                idx = select_low_density(
                    self.Z,
                    kde,
                    self.count,
                    eps=self.eps,
                    temperature=self.temperature,
                    random_state=self.random_state,
                )
                Zp = self.Z[idx]
                ids = [self.ids[k] for k in idx]
                xy = self.latent_map.xy[idx] if self.latent_map is not None else None
            else:
                if self.project is None and self.latent_map is not None:
                    raise ValueError(
                        "project: strategy 'synthetic' needs project=callable(Z_new) -> xy "
                        "to place new latents on the map"
                    )
                Zp = np.asarray(
                    sample_low_density(
                        kde,
                        self.count,
                        eps=self.eps,
                        temperature=self.temperature,
                        random_state=self.random_state,
                    )
                )
                ids = None
                xy = None if self.project is None else np.asarray(self.project(Zp), float)
            log_p = np.asarray(kde.score_samples(Zp), dtype=np.float64)
        except (ValueError, TypeError) as e:
            self.message, self.message_kind = str(e), "error"
            raise
        self.proposal = {
            "strategy": self.strategy,
            "ids": ids,
            "Z": Zp,
            "xy": xy,
            "log_density": log_p,
        }
        self._last_key = key
        if self.latent_map is not None and xy is not None:
            self.latent_map.show_proposal(xy)
        self.n_proposed = int(Zp.shape[0])
        self.message = (
            f"{self.n_proposed} {'pool items' if ids is not None else 'new latents'}"
            f" proposed; median log p {np.median(log_p):.2f}"
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
