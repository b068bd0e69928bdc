"""Small shared pieces of the widgets: item previews, map density, selection geometry.

Nothing here owns data; these are pure functions on arrays used by the widget views.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from typing import Any

import numpy as np

WIDGETS_VERSION = "0.1.0"

ITEM_KINDS = ("image", "signal", "vector", "text")


# --------------------------------------------------------------------------- previews
def png_bytes(img: np.ndarray) -> bytes:
    """Encode a grey image with values in [0, 1] as a PNG (zlib only, no Pillow).

    Parameters
    ----------
    img : array of shape (h, w)
        Grey levels in [0, 1]; values outside are clipped, NaN becomes 0.

    Returns
    -------
    bytes
        An 8-bit greyscale PNG file.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"img: expected a non-empty 2-D array, got shape {a.shape}")
    a = np.nan_to_num(a, nan=0.0)
    u8 = np.ascontiguousarray(np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8))
    h, w = u8.shape
    raw = b"".join(b"\x00" + u8[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def png_data_uri(img: np.ndarray) -> str:
    """``data:image/png;base64,...`` for :func:`png_bytes` of ``img``."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def sparkline_svg(y: np.ndarray, *, width: int = 96, height: int = 32) -> str:
    """An inline SVG polyline of a 1-D signal (min-max scaled into the box)."""
    v = np.asarray(y, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("y: expected a non-empty 1-D signal, got 0 values")
    v = np.nan_to_num(v, nan=0.0)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else 1.0
    xs = np.linspace(1, width - 1, v.size) if v.size > 1 else np.array([width / 2])
    ys = (height - 2) - (v - lo) / span * (height - 4)
    pts = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in zip(xs, ys, strict=True))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><polyline fill="none" stroke="#1f77b4" '
        f'stroke-width="1.5" points="{pts}"/></svg>'
    )


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def item_preview(x: Any, kind: str) -> dict[str, str]:
    """A JSON-able preview of one item for the front end.

    Returns ``{"src": data-uri}`` for images (PNG) and signals/vectors (SVG sparkline),
    ``{"text": ...}`` for text.
    """
    if kind == "text":
        return {"text": str(x)}
    a = np.asarray(x, dtype=np.float64)
    if kind == "image":
        if a.ndim == 1:
            side = int(round(np.sqrt(a.size)))
            if side * side != a.size:
                raise ValueError(f"x: an image item must be 2-D or a square vector, got {a.shape}")
            a = a.reshape(side, side)
        if a.ndim == 3:  # (h, w, c): show the channel mean
            a = a.mean(axis=-1)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo < 0.0 or hi > 1.0:  # rescale anything outside [0, 1]
            a = (a - lo) / (hi - lo if hi > lo else 1.0)
        return {"src": png_data_uri(a)}
    if kind in ("signal", "vector"):
        return {"src": svg_data_uri(sparkline_svg(a.ravel()))}
    raise ValueError(f"kind: expected one of {ITEM_KINDS}, got {kind!r}")


# --------------------------------------------------------------------------- density
def map_density(
    xy: np.ndarray, *, bandwidth: float | str = "scott", grid_size: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian KDE of a 2-D map with KDEpy's ``FFTKDE`` (binned, approximate).

    The map is standardised per axis first, so one scalar bandwidth fits both axes.

    Parameters
    ----------
    xy : array of shape (n, 2)
    bandwidth : float or "scott"
        Kernel standard deviation in standardised units; "scott" gives ``n ** (-1/6)``.
    grid_size : int
        Grid points per axis.

    Returns
    -------
    gx : array of shape (grid_size,)   grid x coordinates (map units)
    gy : array of shape (grid_size,)   grid y coordinates (map units)
    z : array of shape (grid_size, grid_size)
        Density on the grid in map units, ``z[j, i]`` at ``(gx[i], gy[j])`` (plotly's layout).
    at_points : array of shape (n,)
        Density at each point of ``xy`` (bilinear interpolation of the grid).
    """
    from KDEpy import FFTKDE
    from scipy.interpolate import RegularGridInterpolator

    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2:
        raise ValueError(f"xy: expected shape (n >= 2, 2), got {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError("xy: expected finite coordinates, got NaN or inf")
    n = xy.shape[0]
    mu = xy.mean(axis=0)
    sd = xy.std(axis=0)
    sd[sd <= 0] = 1.0
    u = (xy - mu) / sd
    if isinstance(bandwidth, str):
        if bandwidth != "scott":
            raise ValueError(f"bandwidth: expected a positive float or 'scott', got {bandwidth!r}")
        h = float(n ** (-1.0 / 6.0))
    else:
        h = float(bandwidth)
        if not np.isfinite(h) or h <= 0:
            raise ValueError(f"bandwidth: expected a positive float, got {bandwidth!r}")
    # grid strictly containing the data plus 4 bandwidths (FFTKDE needs every point inside)
    lo = u.min(axis=0) - 4 * h
    hi = u.max(axis=0) + 4 * h
    g0 = np.linspace(lo[0], hi[0], grid_size)
    g1 = np.linspace(lo[1], hi[1], grid_size)
    grid = np.stack(np.meshgrid(g0, g1, indexing="ij"), axis=-1).reshape(-1, 2)
    dens = FFTKDE(kernel="gaussian", bw=h).fit(u).evaluate(grid)
    dens = np.maximum(np.asarray(dens, dtype=np.float64), 0.0).reshape(grid_size, grid_size)
    dens = dens / (sd[0] * sd[1])  # back to map units
    at = RegularGridInterpolator((g0, g1), dens, method="linear")(u)
    return g0 * sd[0] + mu[0], g1 * sd[1] + mu[1], dens.T.copy(), at


# --------------------------------------------------------------------------- selection
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_svg_path(path: str) -> np.ndarray:
    """Vertices of plotly's lasso path ``"M x,y L x,y ... Z"`` as an array of shape (k, 2)."""
    nums = re.findall(_NUM, path or "")
    if len(nums) < 6 or len(nums) % 2:
        raise ValueError(f"path: expected an SVG polygon with >= 3 vertices, got {path!r:.80}")
    return np.asarray(nums, dtype=np.float64).reshape(-1, 2)


def points_in_polygon(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorised over points.

    Parameters
    ----------
    xy : array of shape (n, 2)
    poly : array of shape (k, 2)
        Polygon vertices (closed implicitly).

    Returns
    -------
    array of bool, shape (n,)
    """
    x, y = xy[:, 0][:, None], xy[:, 1][:, None]
    x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    hit = crosses & (x < xint)
    return (hit.sum(axis=1) % 2).astype(bool)


def selection_mask(xy: np.ndarray, selections: Any) -> np.ndarray:
    """Which points fall in the union of plotly ``layout.selections`` shapes.

    ``rect`` selections carry x0/x1/y0/y1 in data units; lasso selections a ``path``.
    """
    xy = np.asarray(xy, dtype=np.float64)
    mask = np.zeros(xy.shape[0], dtype=bool)
    for sel in selections or ():
        s = sel if isinstance(sel, dict) else sel.to_plotly_json()
        if s.get("xref", "x") not in ("x", None) or s.get("yref", "y") not in ("y", None):
            continue  # a shape on some other axis (the preview inset) is not a map selection
        if s.get("type") == "path" or (s.get("path") and s.get("x0") is None):
            mask |= points_in_polygon(xy, parse_svg_path(s["path"]))
        else:
            x0, x1 = sorted((float(s["x0"]), float(s["x1"])))
            y0, y1 = sorted((float(s["y0"]), float(s["y1"])))
            mask |= (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    return mask


# --------------------------------------------------------------------------- exemplars
def nearest_exemplars(
    Z_query: np.ndarray, Z_ref: np.ndarray, ref_ids: Any, *, k: int = 3
) -> list[list[Any]]:
    """Ids of the ``k`` nearest reference items (Euclidean) for each query row.

    Parameters
    ----------
    Z_query : array of shape (n, d)
    Z_ref : array of shape (m, d)
    ref_ids : sequence of length m
    k : int
        At most ``m`` neighbours are returned.

    Returns
    -------
    list of n lists of ids, nearest first.
    """
    from sklearn.neighbors import NearestNeighbors

    Zq = np.asarray(Z_query, dtype=np.float64)
    Zr = np.asarray(Z_ref, dtype=np.float64)
    ref_ids = list(ref_ids)
    if Zr.ndim != 2 or Zr.shape[0] != len(ref_ids):
        raise ValueError(f"Z_ref: expected shape (len(ref_ids)={len(ref_ids)}, d), got {Zr.shape}")
    if Zq.ndim != 2 or Zq.shape[1] != Zr.shape[1]:
        raise ValueError(f"Z_query: expected shape (n, {Zr.shape[1]}), got {Zq.shape}")
    if Zr.shape[0] == 0:
        return [[] for _ in range(Zq.shape[0])]
    kk = min(int(k), Zr.shape[0])
    _, idx = NearestNeighbors(n_neighbors=kk).fit(Zr).kneighbors(Zq)
    return [[ref_ids[j] for j in row] for row in idx]
