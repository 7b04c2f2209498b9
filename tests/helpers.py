"""Float64 references for the mapping and loss tests (imported as ``helpers``: pytest puts
tests/ on the path).

``reference_entmax`` is an independent float64 NumPy reference for α-entmax, any α > 0:
the maximiser of p·x + H_α(p) over the simplex, with H_α the Tsallis α-entropy
H_α(p) = (1 − Σ_i p_i^α) / (α(α − 1))  (Shannon entropy at α = 1).
Its KKT conditions give p_i = [(α − 1)(x_i − t)]_+^{1/(α − 1)} for a threshold t with
Σ_i p_i = 1.  For α > 1 the map is sparse; for α < 1 the exponent is negative, the
entropy's slope is +∞ at p_i = 0, every p_i > 0 and t > max_i x_i.  In both cases
Σ_i p_i(t) decreases in t, so plain bisection on t finds the root.
"""
from __future__ import annotations

import numpy as np
import torch


def _rows(x: np.ndarray, axis: int):
    moved = np.moveaxis(x, axis, -1)
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def _unrows(rows: np.ndarray, moved_shape, axis: int) -> np.ndarray:
    return np.moveaxis(rows.reshape(moved_shape), -1, axis)


def _probs(x: np.ndarray, t: np.ndarray, am1: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = am1 * (x - t)  # > 0 on the support for both signs of α − 1
        z = np.where(np.isfinite(x), np.maximum(z, 0.0), 0.0)
        p = np.where(z > 0, np.power(np.where(z > 0, z, 1.0), 1.0 / am1), 0.0)
    return p


def reference_entmax(x, alpha, axis: int = -1, iters: int = 200) -> np.ndarray:
    """α-entmax of ``x`` along ``axis`` in float64; ``alpha`` a number or one value per row.

    ``alpha`` may be an array broadcastable to ``x`` with size 1 along ``axis``.
    Entries equal to −inf get probability 0; a row that is entirely −inf gives zeros.
    """
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64),
                            x.shape[:axis] + (1,) + x.shape[axis + 1:])
    rows, moved_shape = _rows(x, axis)
    a = _rows(np.ascontiguousarray(alpha), axis)[0]  # (n, 1)
    n, d = rows.shape
    out = np.zeros_like(rows)
    xmax = rows.max(axis=1, keepdims=True)
    live = np.isfinite(xmax)[:, 0]
    soft = live & (a[:, 0] == 1.0)
    if soft.any():
        e = np.exp(rows[soft] - xmax[soft])
        out[soft] = e / e.sum(axis=1, keepdims=True)
    root = live & ~soft
    if root.any():
        xr, mr, am1 = rows[root], xmax[root], a[root] - 1.0
        sparse = am1 > 0
        # t_lo: the top entry alone has p = 1 (sum >= 1); t_hi: every p <= 1/d (sum <= 1)
        lo = np.where(sparse, mr - 1.0 / np.where(sparse, am1, 1.0), mr + 1.0 / np.abs(am1))
        hi = mr + np.float64(d) ** (-am1) / (-am1)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            f = _probs(xr, mid, am1).sum(axis=1, keepdims=True) - 1.0
            lo, hi = np.where(f >= 0, mid, lo), np.where(f >= 0, hi, mid)
        p = _probs(xr, 0.5 * (lo + hi), am1)
        out[root] = p / p.sum(axis=1, keepdims=True)
    return _unrows(out, moved_shape, axis)


def tsallis_objective(p: np.ndarray, x: np.ndarray, alpha: float) -> float:
    """p·x + H_α(p) for one row (finite x)."""
    p = np.asarray(p, dtype=np.float64)
    if alpha == 1.0:
        ent = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0))
    else:
        ent = (1.0 - np.sum(p ** alpha)) / (alpha * (alpha - 1.0))
    return float(np.dot(p, x) + ent)


def well_separated(x: torch.Tensor, alpha, dim: int, margin: float = 1e-2) -> bool:
    """True when no score sits within ``margin`` of the support boundary (α > 1) or of a tie.

    Finite differences (gradcheck) straddling the boundary of the support are legitimately
    wrong for sparse mappings, so gradcheck inputs are drawn until this holds.
    """
    xn = x.detach().double().cpu().numpy()
    an = alpha.detach().double().cpu().numpy() if isinstance(alpha, torch.Tensor) else alpha
    p = reference_entmax(xn, an, dim)
    xr, _ = _rows(xn, dim % xn.ndim)
    pr, _ = _rows(p, dim % xn.ndim)
    s = np.sort(xr, axis=1)
    if np.any(np.diff(s, axis=1) < margin):
        return False
    a = np.broadcast_to(np.asarray(an, dtype=np.float64), xn.shape[:dim % xn.ndim] + (1,)
                        + xn.shape[dim % xn.ndim + 1:])
    ar = _rows(np.ascontiguousarray(a), dim % xn.ndim)[0]
    # the entry just outside/inside the support: p^{α-1} = (α-1)(x-t) must be far from 0
    gap = np.where(pr > 0, pr, 0.0) ** np.maximum(ar - 1.0, 0.0)
    sparse = (ar[:, 0] > 1.0)
    if sparse.any():
        small = np.where(pr[sparse] > 0, gap[sparse], np.inf).min(axis=1)
        if np.any(small < margin):
            return False
        # entries off the support: distance of (α-1)x from the threshold
        am1 = ar[sparse] - 1.0
        on = pr[sparse] > 0
        t_row = np.where(on, xr[sparse] - gap[sparse] / am1, np.nan)
        t = np.nanmean(t_row, axis=1, keepdims=True)
        off = np.where(~on, am1 * (t - xr[sparse]), np.inf)
        if np.any(off < margin):
            return False
    return True


def separated_input(shape, alpha, dim: int, seed: int, dtype=torch.float64, scale: float = 1.5,
                    device="cpu") -> torch.Tensor:
    """Random scores with no entry near the support boundary (see :func:`well_separated`)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
        if well_separated(x, alpha, dim):
            return x.to(dtype=dtype, device=device)
    raise RuntimeError("could not draw well-separated scores")
