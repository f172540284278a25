"""Directed pair features: rewards that depend on who teaches and who learns.

The reward of a pair in ``knexa`` is the student's gain from its teacher, which
is not symmetric in the two agents; the symmetric features of
``swarm.matching.pairing`` cannot represent a reward that depends on the
order. For a teacher profile ``t`` and a student profile ``s`` (length ``dim``)
the directed kinds are::

    directed:  x(t, s) = [1, t, s, t - s, t * s]     (length 4*dim + 1)
    concat:    x(t, s) = [t, s]                      (length 2*dim, KNEXA-FL's own LinUCB)

(``t - s`` is a linear function of ``t`` and ``s``; with the ridge prior it
shares the weight between the levels and their difference, it adds no new
function.) Each is ``F [1, t] + G [1, s] + H (t * s)`` for fixed 0/+-1
matrices ``F, G, H``, so the scores of all ``n * n`` directed pairs are sums of
matrix products of per-agent factors (``ucb_directed``), never a Python loop
over pairs.

Orientation: a pair is scored and updated as ``(teacher, student)``. Where the
protocol knows who will teach (``knexa``: the higher evaluation score, equal
scores the smaller id, ``orient_by_score``) it hands the matchmaker those
scores; otherwise the canonical order holds: the smaller id teaches.
``oriented`` turns the directed matrix into the symmetric one the disjoint
pairing reads, each unordered pair worth its value in that orientation.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["FEATURE_KINDS", "DIRECTED_KINDS", "feature_dim", "directed_features",
           "ucb_directed", "oriented", "teacher_mask"]

Array = NDArray[np.float64]

#: Every pair featurization a LinUCB matchmaker can use (``matchmaker.features``).
FEATURE_KINDS = ("symmetric", "directed", "concat")
#: The kinds whose value depends on the order of the pair.
DIRECTED_KINDS = ("directed", "concat")


def feature_dim(kind: str, dim: int) -> int:
    """Length of a pair context of ``kind`` for profiles of length ``dim``."""
    return {"symmetric": 3 * dim + 1, "directed": 4 * dim + 1, "concat": 2 * dim}[kind]


@cache
def _maps(kind: str, dim: int) -> tuple[Array, Array, Array | None]:
    """``F, G, H`` with ``x(t, s) = F [1, t] + G [1, s] + H (t * s)``."""
    size = feature_dim(kind, dim)
    f, g = np.zeros((size, dim + 1)), np.zeros((size, dim + 1))
    eye = np.eye(dim)
    if kind == "concat":
        f[:dim, 1:], g[dim:, 1:] = eye, eye
        return f, g, None
    if kind != "directed":
        raise ValueError(f"not a directed feature kind: {kind!r}")
    f[0, 0] = 1.0
    f[1:dim + 1, 1:] = eye                   # t
    g[dim + 1:2 * dim + 1, 1:] = eye         # s
    f[2 * dim + 1:3 * dim + 1, 1:] = eye     # t - s
    g[2 * dim + 1:3 * dim + 1, 1:] = -eye
    h = np.zeros((size, dim))
    h[3 * dim + 1:, :] = eye                 # t * s
    return f, g, h


def directed_features(kind: str, teacher: np.ndarray, student: np.ndarray) -> Array:
    """The pair context ``x(teacher, student)`` of a directed ``kind``."""
    t, s = np.asarray(teacher, dtype=np.float64), np.asarray(student, dtype=np.float64)
    if kind == "concat":
        return np.concatenate((t, s))
    if kind == "directed":
        return np.concatenate(([1.0], t, s, t - s, t * s))
    raise ValueError(f"not a directed feature kind: {kind!r}")


def ucb_directed(kind: str, profiles: Array, theta: Array, a_inv: Array, coef: float,
                 block: int = 256) -> Array:
    """``D[t, s] = theta^T x + coef * sqrt(x^T A^-1 x)``, ``x = x(p_t, p_s)``, for every ordered pair.

    With ``T~ = [1, p]`` and ``M = A^-1``: the mean is ``F^T theta . t~ +
    G^T theta . s~ + (H^T theta * t) . s``; the width's quadratic form splits
    into a teacher term, a student term, the bilinear ``t~ (F^T M G) s~``, the
    two mixed terms ``t~ F^T M H (t*s)``, ``s~ G^T M H (t*s)`` and, for the
    product features, ``(t*s)^T H^T M H (t*s)`` over the ``dim*(dim+1)/2``
    monomials. Each is a product of a teacher factor and a student factor,
    summed by one matrix product per block of teachers. The diagonal is
    ``-inf`` (no agent pairs with itself).
    """
    n, dim = profiles.shape
    f, g, h = _maps(kind, dim)
    tilde = np.hstack([np.ones((n, 1)), profiles])
    ones = np.ones((n, 1))
    mean_l = [(tilde @ (f.T @ theta))[:, None], ones]
    mean_r = [ones, (tilde @ (g.T @ theta))[:, None]]
    if h is not None:
        mean_l.append(profiles * (h.T @ theta))
        mean_r.append(profiles)
    left, right = np.hstack(mean_l), np.hstack(mean_r)
    wide_l = wide_r = None
    if coef != 0.0:
        wide_l, wide_r = _width_factors(tilde, profiles, a_inv, f, g, h)
    out = np.empty((n, n))
    for start in range(0, n, block):
        stop = min(start + block, n)
        part = left[start:stop] @ right.T
        if wide_l is not None and wide_r is not None:
            quad = wide_l[start:stop] @ wide_r.T
            part += coef * np.sqrt(np.maximum(quad, 0.0, out=quad), out=quad)
        out[start:stop] = part
    np.fill_diagonal(out, -np.inf)
    return out


def _width_factors(tilde: Array, p: Array, m: Array, f: Array, g: Array,
                   h: Array | None) -> tuple[Array, Array]:
    """``L, R`` with ``(L R^T)[t, s] = x(p_t, p_s)^T M x(p_t, p_s)``."""
    n = p.shape[0]
    ones = np.ones((n, 1))
    m_ff, m_gg, m_fg = f.T @ m @ f, g.T @ m @ g, f.T @ m @ g
    teacher = np.einsum("ij,jk,ik->i", tilde, m_ff, tilde)[:, None]
    student = np.einsum("ij,jk,ik->i", tilde, m_gg, tilde)[:, None]
    left = [teacher, ones, 2.0 * (tilde @ m_fg)]
    right = [ones, student, tilde]
    if h is not None:
        m_fh, m_gh, m_hh = f.T @ m @ h, g.T @ m @ h, h.T @ m @ h
        r, c = np.triu_indices(p.shape[1])
        z = p[:, r] * p[:, c]
        left += [2.0 * (tilde @ m_fh) * p, 2.0 * p, z * (m_hh[r, c] * np.where(r == c, 1.0, 2.0))]
        right += [p, (tilde @ m_gh) * p, z]
    return np.hstack(left), np.hstack(right)


def teacher_mask(keys: Array) -> NDArray[np.bool_]:
    """``T[i, j]``: agent ``i`` teaches agent ``j`` (higher key; equal keys: the smaller index).

    Indices follow the sorted ids, so equal keys give the smaller id, as
    ``orient_by_score`` does.
    """
    n = keys.shape[0]
    index = np.arange(n)
    mask: NDArray[np.bool_] = (keys[:, None] > keys[None, :]) | (
        (keys[:, None] == keys[None, :]) & (index[:, None] < index[None, :]))
    return mask


def oriented(directed: Array, keys: Array | None) -> Array:
    """The symmetric matrix of unordered pairs, each worth ``D[teacher, student]``.

    ``keys``: the scores that decide who teaches (``None``: all equal, so the
    smaller id teaches).
    """
    n = directed.shape[0]
    mask = teacher_mask(np.zeros(n) if keys is None else keys)
    out = np.where(mask, directed, directed.T)
    np.fill_diagonal(out, -np.inf)
    return out
