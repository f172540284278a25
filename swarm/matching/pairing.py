"""Pair scoring and pairing math of the matchmaker: features, all-pairs scores, disjoint pairs.

Pair features. For profiles ``p_i, p_j`` of length ``dim`` the pair context is::

    phi(p_i, p_j) = [1, p_i + p_j, p_i**2 + p_j**2, p_i * p_j]     (length 3*dim + 1)

It is symmetric (``phi(p_i, p_j) == phi(p_j, p_i)`` exactly) and spans every
symmetric quadratic function of the two profiles with a diagonal interaction:
a per-agent level, a per-feature similarity ``p_i * p_j`` and a per-feature
complementarity ``(p_i - p_j)**2 = p_i**2 + p_j**2 - 2 p_i p_j``. Only
interaction terms make pairing matter (with additive rewards every perfect
matching is worth the same), and this is the smallest interaction whose
uncertainty term can still be evaluated for all pairs with matrix products
(see ``ucb_matrix``).

Pairing. ``greedy_disjoint_pairs`` takes pairs by decreasing score, disjoint
(equal scores in an order drawn from the caller's generator);
``improve_pairs`` then swaps partners between two chosen pairs while that
raises the total (2-opt), since a greedy pair can block two better ones.
Everything here is vectorized numpy over agents, never a Python loop over the
~n^2/2 pairs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["pair_dim", "pair_features", "ucb_matrix", "greedy_disjoint_pairs", "improve_pairs"]

Array = NDArray[np.float64]


def pair_dim(dim: int) -> int:
    """Length of ``phi(p_i, p_j)`` for profiles of length ``dim``."""
    return 3 * dim + 1


def pair_features(p_i: np.ndarray, p_j: np.ndarray) -> Array:
    """The symmetric pair context ``[1, p_i + p_j, p_i**2 + p_j**2, p_i * p_j]``."""
    a, b = np.asarray(p_i, dtype=np.float64), np.asarray(p_j, dtype=np.float64)
    return np.concatenate(([1.0], a + b, a * a + b * b, a * b))


def ucb_matrix(profiles: Array, theta: Array, a_inv: Array, coef: float,
               block: int = 128) -> Array:
    """Score every pair at once: ``S[i, j] = theta^T x + coef * sqrt(x^T A^-1 x)``, x = phi(p_i, p_j).

    The additive part of x is ``w_i + w_j`` with ``w_i = [1/2, p_i, p_i**2]``
    and the interaction part is ``m = p_i * p_j``, so both terms are products
    of per-agent factors, computed as matrix products over blocks of rows of
    the upper triangle (never a Python loop over pairs)::

        x^T M x = (w_i+w_j)^T Mww (w_i+w_j) + 2 (w_i+w_j)^T Mwm m + m^T Mmm m

    where the last term runs over the ``dim*(dim+1)/2`` monomials ``p_k p_l``.
    The upper triangle is mirrored, so ``S`` is exactly symmetric; its
    diagonal is ``-inf`` (no agent pairs with itself).
    """
    n = profiles.shape[0]
    mean_l, mean_r = _mean_factors(profiles, theta)
    width_l, width_r = _width_factors(profiles, a_inv) if coef != 0.0 else (None, None)
    out = np.empty((n, n))
    for start in range(0, n, block):
        stop = min(start + block, n)
        part = mean_l[start:stop] @ mean_r[start:].T
        if width_l is not None and width_r is not None:
            quad = width_l[start:stop] @ width_r[start:].T
            part += coef * np.sqrt(np.maximum(quad, 0.0, out=quad), out=quad)
        square = np.triu(part[:, : stop - start], 1)  # mirror the diagonal block's upper half
        part[:, : stop - start] = square + square.T
        out[start:stop, start:] = part
        out[start:, start:stop] = part.T
    np.fill_diagonal(out, -np.inf)
    return out


def _mean_factors(p: Array, theta: Array) -> tuple[Array, Array]:
    """``L, R`` with ``(L R^T)[i, j] = theta^T phi(p_i, p_j)``."""
    n, d = p.shape
    k = 2 * d + 1
    w = np.hstack([np.full((n, 1), 0.5), p, p * p])
    level = w @ theta[:k]
    ones = np.ones((n, 1))
    return (np.hstack([level[:, None], ones, p * theta[k:]]),
            np.hstack([ones, level[:, None], p]))


def _width_factors(p: Array, a_inv: Array) -> tuple[Array, Array]:
    """``L, R`` with ``(L R^T)[i, j] = phi(p_i, p_j)^T A^-1 phi(p_i, p_j)``."""
    n, d = p.shape
    k = 2 * d + 1
    m_ww, m_wm, m_mm = a_inv[:k, :k], a_inv[:k, k:], a_inv[k:, k:]
    w = np.hstack([np.full((n, 1), 0.5), p, p * p])
    wm = w @ m_ww
    g = np.einsum("ij,ij->i", wm, w)[:, None]
    vp = (w @ m_wm) * p
    r, c = np.triu_indices(d)
    z = p[:, r] * p[:, c]
    zw = z * (m_mm[r, c] * np.where(r == c, 1.0, 2.0))
    ones = np.ones((n, 1))
    return (np.hstack([g, ones, 2.0 * wm, 2.0 * vp, 2.0 * p, zw]),
            np.hstack([ones, g, w, p, vp, z]))


def greedy_disjoint_pairs(score: Array, max_pairs: int,
                          rng: np.random.Generator) -> list[tuple[int, int, float]]:
    """Greedy disjoint pairs, best first: ``(i, j, score)`` with i < j.

    ``score`` is a symmetric ``(n, n)`` matrix (only its upper triangle is
    read); a non-finite score means "never pair these two". The result is that
    of scanning all pairs by decreasing score (equal scores in an order drawn
    from ``rng``) and keeping each pair whose two agents are still free. To stay
    fast with ~500k pairs, only about the top ``8n`` pairs are sorted first
    (often enough to pair nearly everyone); the pairs of agents still free after them
    are cut into 64 equal-width score ranges, and range after range is sorted
    and scanned. Each scan drops the pairs of taken agents chunk by chunk
    with one vectorized mask before its Python loop.
    """
    n = score.shape[0]
    free = np.ones(n, dtype=bool)
    out: list[tuple[int, int, float]] = []
    if n < 2 or max_pairs <= 0:
        return out
    rows, cols = _triu32(n)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    vals = score[upper]  # row-major: the order of rows, cols
    neg = -vals
    cut = _first_cut(neg, 8 * n)
    _scan_sorted(np.flatnonzero((neg <= cut) & np.isfinite(neg)), rows, cols, vals, free, out,
                 max_pairs, rng)
    if cut < np.inf and len(out) < max_pairs:
        both_free = (free[:, None] & free[None, :])[upper]  # sequential, unlike a gather
        rest = np.flatnonzero((neg > cut) & np.isfinite(neg) & both_free)
        for part in _buckets(rest, vals[rest]):
            _scan_sorted(part[free[rows[part]] & free[cols[part]]], rows, cols, vals, free, out,
                         max_pairs, rng)
            if len(out) >= max_pairs:
                break
    return out


def _first_cut(neg: Array, tier: int) -> float:
    """A threshold with about ``tier`` values of ``neg`` at or below it (``inf``: all of them).

    Estimated from a fixed stride of the values: any threshold keeps the scan
    exact, it only decides how much is sorted in one go.
    """
    if neg.size <= 2 * tier:
        return float("inf")
    sample = neg[:: max(1, neg.size // (64 * 1024))]
    k = min(sample.size - 1, int(tier * sample.size / neg.size))
    return float(np.partition(sample, k)[k])


def _buckets(idx: NDArray[np.intp], vals: Array, count: int = 64) -> list[NDArray[np.intp]]:
    """``idx`` cut into ``count`` equal-width score ranges, highest first (equal scores together)."""
    if idx.size <= 4096:
        return [idx]
    lo, hi = float(vals.min()), float(vals.max())
    scale = count / (hi - lo) if hi > lo else 0.0
    if not (0.0 < scale < np.inf and np.isfinite(hi - lo)):
        return [idx]
    rank = np.minimum((hi - vals) * scale, count - 1).astype(np.uint8)
    order = idx[np.argsort(rank, kind="stable")]  # a radix sort on uint8
    return np.split(order, np.cumsum(np.bincount(rank, minlength=count))[:-1])


def _scan_sorted(idx: NDArray[np.intp], rows: NDArray[np.int32], cols: NDArray[np.int32],
                 vals: Array, free: NDArray[np.bool_], out: list[tuple[int, int, float]],
                 max_pairs: int, rng: np.random.Generator) -> None:
    """Sort candidates ``idx`` by decreasing score (ties in an order drawn from ``rng``), scan them."""
    if idx.size == 0:
        return
    idx = rng.permutation(idx)  # equal scores: their order follows this draw
    idx = idx[np.argsort(-vals[idx])]
    _scan(rows[idx], cols[idx], vals[idx], free, out, max_pairs)


def improve_pairs(pairs: list[tuple[int, int, float]], score: Array,
                  sweeps: int) -> list[tuple[int, int, float]]:
    """Raise the total score of disjoint pairs by swapping partners between two pairs (2-opt).

    For pairs ``(a, b)`` and ``(c, d)`` the alternatives are ``(a, c) + (b, d)``
    and ``(a, d) + (b, c)``. A sweep applies the best swaps that touch disjoint
    pairs (best gain first); gains live in a ``(k, k)`` matrix whose rows are
    recomputed only for the pairs the last sweep changed. It stops when no swap
    gains or after ``sweeps`` sweeps. Greedy pairing alone can leave a lot on
    the table (a pair that looked best can block two better ones); this closes
    most of that gap. Returns the pairs best first.
    """
    k = len(pairs)
    if k < 2 or sweeps <= 0:
        return pairs
    agents = np.array([p[0] for p in pairs] + [p[1] for p in pairs])
    local = score.take(agents, axis=0).take(agents, axis=1)  # pair p is (p, k + p) at first
    a, b = np.arange(k), np.arange(k, 2 * k)
    pair = local[a, b]
    gain = np.maximum(local[:k, :k] + local[k:, k:], local[:k, k:] + local[k:, :k])
    gain -= pair[:, None] + pair[None, :]
    np.fill_diagonal(gain, -np.inf)
    changed: NDArray[np.intp] = np.zeros(0, dtype=np.intp)
    for _ in range(sweeps):
        if changed.size:
            _gain_rows(gain, local, a, b, changed)
        changed = _apply_swaps(gain, local, a, b)
        if changed.size == 0:
            break
    i, j, value = agents[a], agents[b], local[a, b]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return [(int(lo[t]), int(hi[t]), float(value[t])) for t in np.argsort(-value, kind="stable")]


def _apply_swaps(gain: Array, local: Array, a: NDArray[np.intp],
                 b: NDArray[np.intp]) -> NDArray[np.intp]:
    """Apply the best improving swaps between disjoint pairs, best gain first; the pairs changed."""
    k = a.size
    good = np.flatnonzero(gain > 1e-12)
    if good.size > 4 * k:  # at most k / 2 swaps fit in one sweep
        good = good[np.argpartition(-gain.flat[good], 4 * k)[:4 * k]]
    used = bytearray(k)
    for t in good[np.argsort(-gain.flat[good], kind="stable")].tolist():
        p, q = divmod(t, k)
        if used[p] or used[q]:
            continue
        used[p] = used[q] = 1
        if local[a[p], a[q]] + local[b[p], b[q]] >= local[a[p], b[q]] + local[b[p], a[q]]:
            a[q], b[p] = b[p], a[q]  # (a_p, a_q) + (b_p, b_q)
        else:
            a[q], b[q], b[p] = b[p], a[q], b[q]  # (a_p, b_q) + (b_p, a_q)
    return np.flatnonzero(np.frombuffer(bytes(used), dtype=np.uint8))


def _gain_rows(gain: Array, score: Array, a: NDArray[np.intp], b: NDArray[np.intp],
               rows: NDArray[np.intp]) -> None:
    """Recompute the swap gains of pairs ``rows`` against every pair (both triangles)."""
    pair = score[a, b]
    ar, br = a[rows][:, None], b[rows][:, None]
    cross = score[ar, a[None, :]] + score[br, b[None, :]]
    twist = score[ar, b[None, :]] + score[br, a[None, :]]
    block = np.maximum(cross, twist) - (pair[rows][:, None] + pair[None, :])
    block[np.arange(rows.size), rows] = -np.inf
    gain[rows, :] = block
    gain[:, rows] = block.T


def _triu32(n: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """``numpy.triu_indices(n, 1)`` as int32, built without an ``(n, n)`` mask."""
    length = np.arange(n - 1, -1, -1)
    rows = np.repeat(np.arange(n, dtype=np.int32), length)
    starts = (np.cumsum(length) - length).astype(np.int32)
    cols = np.arange(rows.size, dtype=np.int32) - starts[rows] + rows + 1
    return rows, cols


def _scan(a: NDArray[np.int32], b: NDArray[np.int32], v: Array, free: NDArray[np.bool_],
          out: list[tuple[int, int, float]], max_pairs: int, chunk: int = 1024) -> None:
    """Sequential greedy over sorted candidates; marks the agents it pairs as taken.

    Before each chunk, one vectorized mask drops the pairs of agents already
    taken, so the Python loop only sees pairs that were free at the chunk's start.
    """
    taken = bytearray(free.size)
    for start in range(0, a.size, chunk):
        sa, sb, sv = a[start:start + chunk], b[start:start + chunk], v[start:start + chunk]
        keep = free[sa] & free[sb]
        for i, j, s in zip(sa[keep].tolist(), sb[keep].tolist(), sv[keep].tolist(), strict=True):
            if taken[i] or taken[j]:
                continue
            taken[i] = taken[j] = 1
            free[i] = free[j] = False
            out.append((i, j, s))
            if len(out) >= max_pairs:
                return
