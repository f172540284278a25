"""The matchmaker: who learns from whom, chosen by a contextual bandit over agent profiles.

A matchmaker is a strategy object behind the ``Matchmaker`` protocol; the loop
that calls it lives once, in the coordinator. ``select`` proposes unordered,
disjoint pairs among the agents present in ``profiles`` (an agent missing from
``profiles`` is unavailable this round and never paired); ``update`` feeds back
the reward a pair earned; ``state``/``from_state`` round-trip through JSON
exactly, random generator included, so a restarted coordinator makes the same
next choices.

Pair features. For profiles ``p_i, p_j`` of length ``dim`` the pair context is::

    phi(p_i, p_j) = [1, p_i + p_j, p_i**2 + p_j**2, p_i * p_j]     (length 3*dim + 1)

It is symmetric (``phi(p_i, p_j) == phi(p_j, p_i)`` exactly), the same at
select and update time, and spans every symmetric quadratic function of the
two profiles with a diagonal interaction: a per-agent level, a per-feature
similarity ``p_i * p_j`` and a per-feature complementarity
``(p_i - p_j)**2 = p_i**2 + p_j**2 - 2 p_i p_j``. Only interaction terms make
pairing matter (with additive rewards every perfect matching is worth the
same), and this is the smallest interaction whose uncertainty term can still be
evaluated for all pairs with matrix products (see ``ucb_matrix``).

LinUCB. With ``A = lam*I + sum x x^T`` and ``b = sum r x`` over the pairs
seen, ``theta = A^-1 b`` and a pair scores
``theta^T x + (beta0 / sqrt(t)) * sqrt(x^T A^-1 x)`` with ``t = round + 1``
(rounds count from 0). Pairs are taken greedily by score, disjoint, up to
``max_pairs``. ``A^-1`` is kept by Sherman-Morrison rank-1 updates and
recomputed from ``A`` every ``reinvert_every`` updates against drift.

Ties (equal scores) are broken by the seeded generator: each ``select`` draws a
random order of the agents, and among equal scores the pair earlier in that
order wins. Teacher and student are decided afterwards by ``orient_pairs``
(the higher evaluation score teaches).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from swarm.errors import MatchmakerError

__all__ = [
    "Matchmaker",
    "LinUCBMatchmaker",
    "GreedyMatchmaker",
    "RandomMatchmaker",
    "make_matchmaker",
    "matchmaker_from_state",
    "pair_features",
    "pair_dim",
    "ucb_matrix",
    "greedy_disjoint_pairs",
    "improve_pairs",
    "orient_by_score",
    "orient_pairs",
]

Array = NDArray[np.float64]
STATE_VERSION = 1


@runtime_checkable
class Matchmaker(Protocol):
    """What the coordinator calls to pair agents and to report rewards."""

    def select(self, profiles: Mapping[str, np.ndarray], max_pairs: int,
               round: int) -> list[tuple[str, str]]: ...
    def update(self, pair: tuple[str, str], profiles: Mapping[str, np.ndarray],
               reward: float) -> None: ...
    def state(self) -> dict[str, Any]: ...
    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Matchmaker: ...


# -- pair features and scores ---------------------------------------------------------


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
    out = np.zeros((n, n))
    for start in range(0, n, block):
        stop = min(start + block, n)
        part = mean_l[start:stop] @ mean_r[start:].T
        if width_l is not None and width_r is not None:
            quad = width_l[start:stop] @ width_r[start:].T
            part += coef * np.sqrt(np.maximum(quad, 0.0, out=quad), out=quad)
        out[start:stop, start:] = part
    out = np.triu(out, 1)
    out += out.T
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
    fast with ~500k pairs it works tier by tier: the top ``8n`` pairs are sorted
    and scanned, then the next tier (twice as large) is drawn only from pairs of
    agents still free, and so on; the scan itself drops the pairs of taken agents
    chunk by chunk with one vectorized mask before its Python loop.
    """
    n = score.shape[0]
    free = np.ones(n, dtype=bool)
    out: list[tuple[int, int, float]] = []
    rows, cols = _triu32(n)
    vals = score[rows, cols]
    cand: NDArray[np.intp] | None = None  # None: every pair
    tier = 8 * n
    while len(out) < max_pairs:
        neg = -vals if cand is None else -vals[cand]
        if neg.size == 0:
            break
        cut = np.partition(neg, tier - 1)[tier - 1] if neg.size > tier else np.inf
        top = np.flatnonzero((neg <= cut) & np.isfinite(neg))
        top = top if cand is None else cand[top]
        top = rng.permutation(top)  # equal scores: their order follows this draw
        top = top[np.argsort(-vals[top])]
        _scan(rows[top], cols[top], vals[top], free, out, max_pairs)
        if cut == np.inf:
            break
        rest = np.flatnonzero((neg > cut) & np.isfinite(neg))
        rest = rest if cand is None else cand[rest]
        cand = rest[free[rows[rest]] & free[cols[rest]]]
        tier *= 2
    return out


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
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    gain = np.empty((k, k))
    changed = np.arange(k)
    for _ in range(sweeps):
        _gain_rows(gain, score, a, b, changed)
        good = np.flatnonzero(gain > 1e-12)
        if good.size == 0:
            break
        if good.size > 4 * k:  # at most k / 2 swaps fit in one sweep
            good = good[np.argpartition(-gain.flat[good], 4 * k)[:4 * k]]
        used = bytearray(k)
        for t in good[np.argsort(-gain.flat[good], kind="stable")].tolist():
            p, q = divmod(t, k)
            if used[p] or used[q]:
                continue
            used[p] = used[q] = 1
            if score[a[p], a[q]] + score[b[p], b[q]] >= score[a[p], b[q]] + score[b[p], a[q]]:
                a[q], b[p] = b[p], a[q]
            else:
                a[q], b[q], b[p] = b[p], a[q], b[q]
        changed = np.flatnonzero(np.frombuffer(bytes(used), dtype=np.uint8))
    lo, hi, value = np.minimum(a, b), np.maximum(a, b), score[a, b]
    return [(int(lo[t]), int(hi[t]), float(value[t])) for t in np.argsort(-value, kind="stable")]


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


# -- orientation -----------------------------------------------------------------------


def orient_by_score(pair: tuple[str, str], scores: Mapping[str, float]) -> tuple[str, str]:
    """Order a pair as ``(teacher, student)``: the higher evaluation score teaches.

    Equal scores: the lexicographically smaller id teaches, so the rule does
    not depend on the order the matchmaker returned the pair in.
    """
    a, b = pair
    sa, sb = float(scores[a]), float(scores[b])
    return (a, b) if sa > sb or (sa == sb and a < b) else (b, a)


def orient_pairs(pairs: Sequence[tuple[str, str]],
                 scores: Mapping[str, float]) -> list[tuple[str, str]]:
    """``orient_by_score`` applied to every pair, order kept."""
    return [orient_by_score(p, scores) for p in pairs]


# -- validation and state helpers ---------------------------------------------------------


def _stack(profiles: Mapping[str, np.ndarray], dim: int | None) -> tuple[list[str], Array]:
    """Sorted ids and their profiles as one ``(n, dim)`` array, validated."""
    ids = sorted(profiles)
    rows = []
    for agent in ids:
        vec = np.asarray(profiles[agent], dtype=np.float64)
        if vec.ndim != 1 or (dim is not None and vec.shape[0] != dim):
            raise MatchmakerError(f"profile of agent {agent!r} has shape {vec.shape}, "
                                  f"expected ({dim if dim is not None else 'n'},)")
        if not np.isfinite(vec).all():
            raise MatchmakerError(f"profile of agent {agent!r} holds NaN or infinity")
        rows.append(vec)
    width = dim if dim is not None else (rows[0].shape[0] if rows else 0)
    if any(r.shape[0] != width for r in rows):
        raise MatchmakerError("profiles have different lengths")
    return ids, np.array(rows, dtype=np.float64).reshape(len(ids), width)


def _check_select(max_pairs: int, round: int) -> None:
    if not isinstance(max_pairs, int | np.integer) or max_pairs < 0:
        raise MatchmakerError(f"max_pairs must be an integer >= 0, got {max_pairs!r}")
    if not isinstance(round, int | np.integer) or round < 0:
        raise MatchmakerError(f"round must be an integer >= 0, got {round!r}")


def _check_update(pair: tuple[str, str], profiles: Mapping[str, np.ndarray], reward: float,
                  dim: int | None) -> Array:
    """The two profiles of an update's pair, ``(2, dim)``, once the arguments are checked."""
    i, j = pair
    if i == j:
        raise MatchmakerError(f"a pair needs two different agents, got {pair!r}")
    missing = [a for a in pair if a not in profiles]
    if missing:
        raise MatchmakerError(f"no profile for agent(s) {missing} of pair {pair!r}")
    if not math.isfinite(float(reward)):
        raise MatchmakerError(f"reward of pair {pair!r} is {reward!r}, not a finite number")
    return _stack({i: profiles[i], j: profiles[j]}, dim)[1]


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    st = rng.bit_generator.state
    if st.get("bit_generator") != "PCG64":
        raise MatchmakerError(f"only PCG64 generators can be saved, not {st.get('bit_generator')}")
    return {"bit_generator": "PCG64", "state": str(st["state"]["state"]),
            "inc": str(st["state"]["inc"]), "has_uint32": int(st["has_uint32"]),
            "uinteger": int(st["uinteger"])}


def _rng_from(state: Mapping[str, Any]) -> np.random.Generator:
    try:
        bits = np.random.PCG64()
        bits.state = {"bit_generator": "PCG64",
                      "state": {"state": int(state["state"]), "inc": int(state["inc"])},
                      "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise MatchmakerError(f"bad generator state: {exc}") from exc
    return np.random.Generator(bits)


def _make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    _rng_state(rng)  # refuse an unsaveable generator now, not at the first commit
    return rng


def _matrix(state: Mapping[str, Any], key: str, shape: tuple[int, ...]) -> Array:
    try:
        arr = np.array(state[key], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise MatchmakerError(f"bad matchmaker state: {key!r}: {exc}") from exc
    if arr.shape != shape or not np.isfinite(arr).all():
        raise MatchmakerError(f"bad matchmaker state: {key!r} has shape {arr.shape}, "
                              f"expected {shape} of finite numbers")
    return arr


def _expect_kind(state: Mapping[str, Any], kind: str) -> None:
    if not isinstance(state, Mapping):
        raise MatchmakerError(f"matchmaker state must be a mapping, got {type(state).__name__}")
    if state.get("kind") != kind or state.get("version") != STATE_VERSION:
        raise MatchmakerError(f"state is kind {state.get('kind')!r} version "
                              f"{state.get('version')!r}, expected {kind!r} version {STATE_VERSION}")


# -- the bandits ---------------------------------------------------------------------------


class LinUCBMatchmaker:
    """LinUCB over symmetric pair contexts (see the module docstring).

    Args:
        dim: length of one agent's profile vector.
        lam: ridge weight, ``A`` starts as ``lam * I``.
        beta0: exploration weight; the bonus is ``beta0 / sqrt(round + 1)`` times the width.
        seed: seed of the tie-breaking generator, or the generator itself (PCG64).
        reinvert_every: recompute ``A^-1`` from ``A`` after this many updates (0: never).
        refine: at most this many sweeps of ``improve_pairs`` after the greedy
            pairing (0: the greedy pairing as it is).
    """

    kind: ClassVar[str] = "linucb"

    def __init__(self, dim: int, lam: float = 1.0, beta0: float = 1.0,
                 seed: int | np.random.Generator | None = 0, reinvert_every: int = 1000,
                 refine: int = 16) -> None:
        if dim < 1 or not lam > 0 or not beta0 >= 0 or reinvert_every < 0 or refine < 0:
            raise MatchmakerError(f"need dim >= 1, lam > 0, beta0 >= 0, reinvert_every >= 0, "
                                  f"refine >= 0; got dim={dim}, lam={lam}, beta0={beta0}, "
                                  f"reinvert_every={reinvert_every}, refine={refine}")
        self.dim, self.lam, self.beta0 = int(dim), float(lam), float(beta0)
        self.reinvert_every, self.refine = int(reinvert_every), int(refine)
        size = pair_dim(self.dim)
        self.a = np.eye(size) * self.lam
        self.a_inv = np.eye(size) / self.lam
        self.b = np.zeros(size)
        self.updates = 0
        self.rng = _make_rng(seed)

    @property
    def theta(self) -> Array:
        """The current reward model ``A^-1 b``."""
        return self.a_inv @ self.b

    def scores(self, profiles: Mapping[str, np.ndarray], round: int) -> tuple[list[str], Array]:
        """Every pair's score: sorted ids and the symmetric ``(n, n)`` matrix (diagonal ``-inf``)."""
        _check_select(0, round)
        ids, p = _stack(profiles, self.dim)
        return ids, ucb_matrix(p, self.theta, self.a_inv, self._coef(round))

    def select(self, profiles: Mapping[str, np.ndarray], max_pairs: int,
               round: int) -> list[tuple[str, str]]:
        """Up to ``max_pairs`` disjoint pairs of available agents, best score first."""
        _check_select(max_pairs, round)
        ids, p = _stack(profiles, self.dim)
        if max_pairs == 0 or len(ids) < 2:
            return []
        score = ucb_matrix(p, self.theta, self.a_inv, self._coef(round))
        chosen = greedy_disjoint_pairs(score, int(max_pairs), self.rng)
        chosen = improve_pairs(chosen, score, self.refine)
        return [(ids[i], ids[j]) for i, j, _ in chosen]

    def update(self, pair: tuple[str, str], profiles: Mapping[str, np.ndarray],
               reward: float) -> None:
        """Learn that ``pair`` earned ``reward``: ``A += x x^T``, ``b += r x``, A^-1 by Sherman-Morrison."""
        p = _check_update(pair, profiles, reward, self.dim)
        x = pair_features(p[0], p[1])
        ax = self.a_inv @ x
        self.a_inv -= np.outer(ax, ax) / (1.0 + float(x @ ax))
        self.a += np.outer(x, x)
        self.b += float(reward) * x
        self.updates += 1
        if self.reinvert_every and self.updates % self.reinvert_every == 0:
            self.a_inv = np.asarray(np.linalg.inv(self.a), dtype=np.float64)
        # keep A^-1 exactly symmetric, as A is
        self.a_inv = (self.a_inv + self.a_inv.T) * 0.5

    def _coef(self, round: int) -> float:
        return self.beta0 / math.sqrt(round + 1)

    def state(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as JSON-ready lists, numbers and strings."""
        return {"kind": self.kind, "version": STATE_VERSION, "dim": self.dim, "lam": self.lam,
                "beta0": self.beta0, "reinvert_every": self.reinvert_every, "refine": self.refine,
                "updates": self.updates, "a": self.a.tolist(), "a_inv": self.a_inv.tolist(),
                "b": self.b.tolist(), "rng": _rng_state(self.rng)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinUCBMatchmaker:
        """Rebuild a matchmaker from ``state()``; raises ``MatchmakerError`` on a bad state."""
        _expect_kind(state, cls.kind)
        try:
            out = cls.__new__(cls)
            LinUCBMatchmaker.__init__(out, int(state["dim"]), float(state["lam"]),
                                      float(state["beta0"]), 0, int(state["reinvert_every"]),
                                      int(state["refine"]))
            out.updates = int(state["updates"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MatchmakerError(f"bad matchmaker state: {exc!r}") from exc
        size = pair_dim(out.dim)
        out.a = _matrix(state, "a", (size, size))
        out.a_inv = _matrix(state, "a_inv", (size, size))
        out.b = _matrix(state, "b", (size,))
        out.rng = _rng_from(state.get("rng", {}))
        return out


class GreedyMatchmaker(LinUCBMatchmaker):
    """Exploit-only baseline: the same linear model and pairing, no exploration bonus."""

    kind: ClassVar[str] = "greedy"

    def __init__(self, dim: int, lam: float = 1.0, beta0: float = 0.0,
                 seed: int | np.random.Generator | None = 0, reinvert_every: int = 1000,
                 refine: int = 16) -> None:
        super().__init__(dim, lam, 0.0, seed, reinvert_every, refine)


class RandomMatchmaker:
    """Baseline: a uniformly random disjoint pairing of the available agents each round."""

    kind: ClassVar[str] = "random"

    def __init__(self, dim: int | None = None, seed: int | np.random.Generator | None = 0) -> None:
        self.dim = dim
        self.rng = _make_rng(seed)

    def select(self, profiles: Mapping[str, np.ndarray], max_pairs: int,
               round: int) -> list[tuple[str, str]]:
        """Shuffle the available agents and pair them off, up to ``max_pairs`` pairs."""
        _check_select(max_pairs, round)
        ids, _ = _stack(profiles, self.dim)
        order = self.rng.permutation(len(ids))
        count = min(int(max_pairs), len(ids) // 2)
        return [_pair(ids[order[2 * k]], ids[order[2 * k + 1]]) for k in range(count)]

    def update(self, pair: tuple[str, str], profiles: Mapping[str, np.ndarray],
               reward: float) -> None:
        """Check the arguments; a random matchmaker learns nothing."""
        _check_update(pair, profiles, reward, self.dim)

    def state(self) -> dict[str, Any]:
        """The generator's state (and the profile length), JSON-ready."""
        return {"kind": self.kind, "version": STATE_VERSION, "dim": self.dim,
                "rng": _rng_state(self.rng)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RandomMatchmaker:
        """Rebuild from ``state()``."""
        _expect_kind(state, cls.kind)
        dim = state.get("dim")
        out = cls(None if dim is None else int(dim), None)
        out.rng = _rng_from(state.get("rng", {}))
        return out


_KINDS: dict[str, type[LinUCBMatchmaker] | type[RandomMatchmaker]] = {
    "linucb": LinUCBMatchmaker, "greedy": GreedyMatchmaker, "random": RandomMatchmaker,
}


def make_matchmaker(kind: str, dim: int, *, lam: float = 1.0, beta0: float = 1.0,
                    seed: int | np.random.Generator | None = 0, **params: Any) -> Matchmaker:
    """Build the matchmaker named by the config's ``matchmaker.kind``.

    ``lam`` and ``beta0`` apply to ``linucb`` (``greedy`` takes ``lam`` only,
    ``random`` neither); extra ``params`` (``reinvert_every``, ``refine``) go to the
    linear ones. ``max_pairs`` is not a matchmaker setting: the coordinator
    passes it to ``select``.
    """
    if kind == "linucb":
        return LinUCBMatchmaker(dim, lam=lam, beta0=beta0, seed=seed, **params)
    if kind == "greedy":
        return GreedyMatchmaker(dim, lam=lam, seed=seed, **params)
    if kind == "random":
        return RandomMatchmaker(dim, seed=seed)
    raise MatchmakerError(f"unknown matchmaker kind {kind!r}; allowed: {sorted(_KINDS)}")


def matchmaker_from_state(state: dict[str, Any]) -> Matchmaker:
    """Rebuild whichever matchmaker wrote ``state`` (its ``kind`` says which)."""
    kind = state.get("kind") if isinstance(state, Mapping) else None
    if kind not in _KINDS:
        raise MatchmakerError(f"unknown matchmaker kind {kind!r} in state; allowed: {sorted(_KINDS)}")
    return _KINDS[kind].from_state(state)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)
