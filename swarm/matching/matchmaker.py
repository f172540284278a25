"""The matchmaker: who learns from whom, chosen by a contextual bandit over agent profiles.

A matchmaker is a strategy object behind the ``Matchmaker`` protocol; the loop
that calls it lives once, in the coordinator. ``select`` proposes unordered,
disjoint pairs among the agents present in ``profiles`` (an agent missing from
``profiles`` is unavailable this round and never paired); ``update`` feeds back
the reward a pair earned; ``state``/``from_state`` round-trip through JSON
exactly, random generator included, so a restarted coordinator makes the same
next choices.

Pair features (``features``): ``symmetric`` (the default,
``swarm.matching.pairing``): ``phi(p_i, p_j) = [1, p_i + p_j, p_i**2 + p_j**2,
p_i * p_j]``, the same whichever agent comes first; ``directed`` (``[1, t, s,
t - s, t * s]``) and ``concat`` (``[t, s]``) for rewards that depend on who
teaches (``swarm.matching.directed``). A directed pair is scored and updated in
one orientation, ``(teacher, student)``: ``select(..., orient=scores)`` takes
the protocol's rule (the higher score teaches, ``orient_by_score``), and
without it the smaller id teaches; ``update`` reads its pair as ``(teacher,
student)``, which is how the coordinator reports a pair's reward.

LinUCB. With ``A = lam*I + sum x x^T`` and ``b = sum r x`` over the pairs
seen, ``theta = A^-1 b`` and a pair scores
``theta^T x + (beta0 / sqrt(t)) * sqrt(x^T A^-1 x)`` with ``t = round + 1``
(rounds count from 0). Pairs are taken greedily by score, disjoint, up to
``max_pairs``, then improved by partner swaps between two chosen pairs (2-opt,
at most ``refine`` sweeps; ``refine=0`` keeps the greedy pairs as they are).
``A^-1`` is kept by Sherman-Morrison rank-1 updates and recomputed from ``A``
every ``reinvert_every`` updates against drift.

Ties (equal scores) are broken by the matchmaker's seeded generator, whose
state is part of ``state()``, so a run is reproducible. Teacher and student
are decided afterwards by ``orient_pairs`` (the higher evaluation score
teaches; equal scores: the smaller id).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from swarm.errors import MatchmakerError
from swarm.matching.directed import (
    DIRECTED_KINDS,
    FEATURE_KINDS,
    directed_features,
    feature_dim,
    oriented,
    ucb_directed,
)
from swarm.matching.pairing import (
    greedy_disjoint_pairs,
    improve_pairs,
    pair_dim,
    pair_features,
    ucb_matrix,
)
from swarm.matching.query import Query, QueryModel, random_choice, top

__all__ = [
    "Matchmaker",
    "Query",
    "LinUCBMatchmaker",
    "GreedyMatchmaker",
    "RandomMatchmaker",
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
    """What the coordinator calls to pair agents, choose partners and report rewards.

    ``select``: disjoint, unordered pairs for a round. ``choose``: the best
    ``query.k`` answerers for one asker's query, ``(answerer, score)`` best
    first (``swarm.matching.query``). ``update``: an oriented pair
    ``(teacher or answerer, student or asker)`` earned ``reward``; with the
    query's ``context`` it teaches the query model, without it the pair model.
    """

    def select(self, profiles: Mapping[str, np.ndarray], max_pairs: int,
               round: int) -> list[tuple[str, str]]: ...
    # A matchmaker whose pair value depends on the order sets ``directed = True``;
    # it is then called ``select(profiles, max_pairs, round, orient=scores)``.
    def choose(self, query: Query, profiles: Mapping[str, np.ndarray],
               round: int) -> list[tuple[str, float]]: ...
    def update(self, pair: tuple[str, str], profiles: Mapping[str, np.ndarray],
               reward: float, context: Sequence[float] | None = None) -> None: ...
    def state(self) -> dict[str, Any]: ...
    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Matchmaker: ...


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
        features: the pair context: ``symmetric``, ``directed`` or ``concat``.
    """

    kind: ClassVar[str] = "linucb"

    def __init__(self, dim: int, lam: float = 1.0, beta0: float = 1.0,
                 seed: int | np.random.Generator | None = 0, reinvert_every: int = 1000,
                 refine: int = 4, features: str = "symmetric") -> None:
        if dim < 1 or not lam > 0 or not beta0 >= 0 or reinvert_every < 0 or refine < 0:
            raise MatchmakerError(f"need dim >= 1, lam > 0, beta0 >= 0, reinvert_every >= 0, "
                                  f"refine >= 0; got dim={dim}, lam={lam}, beta0={beta0}, "
                                  f"reinvert_every={reinvert_every}, refine={refine}")
        if features not in FEATURE_KINDS:
            raise MatchmakerError(f"unknown pair features {features!r}; "
                                  f"allowed: {', '.join(FEATURE_KINDS)}")
        self.features = features
        self.dim, self.lam, self.beta0 = int(dim), float(lam), float(beta0)
        self.reinvert_every, self.refine = int(reinvert_every), int(refine)
        # The pair model (A, A^-1, b) is allocated on first use: a swarm that only
        # chooses partners per query (the query model) never pays for pair_dim(dim)^2.
        self._pair: list[Array] | None = None
        self.updates = 0
        self.rng = _make_rng(seed)
        self.query = QueryModel(self.lam, self.beta0)

    def _model(self) -> list[Array]:
        if self._pair is None:
            size = feature_dim(self.features, self.dim)
            self._pair = [np.eye(size) * self.lam, np.eye(size) / self.lam, np.zeros(size)]
        return self._pair

    @property
    def a(self) -> Array:
        """``lam * I + sum x x^T`` over the pairs seen."""
        return self._model()[0]

    @a.setter
    def a(self, value: Array) -> None:
        self._model()[0] = value

    @property
    def a_inv(self) -> Array:
        """``A^-1``, kept by Sherman-Morrison updates."""
        return self._model()[1]

    @a_inv.setter
    def a_inv(self, value: Array) -> None:
        self._model()[1] = value

    @property
    def b(self) -> Array:
        """``sum r x`` over the pairs seen."""
        return self._model()[2]

    @b.setter
    def b(self, value: Array) -> None:
        self._model()[2] = value

    @property
    def theta(self) -> Array:
        """The current reward model ``A^-1 b``."""
        return self.a_inv @ self.b

    @property
    def directed(self) -> bool:
        """Whether a pair's value depends on its order (``select`` then takes ``orient``)."""
        return self.features in DIRECTED_KINDS

    def scores(self, profiles: Mapping[str, np.ndarray], round: int) -> tuple[list[str], Array]:
        """Every pair's score: sorted ids and the ``(n, n)`` matrix (diagonal ``-inf``).

        Symmetric features: the symmetric matrix. Directed ones: ``S[t, s]`` with
        ``t`` teaching ``s``.
        """
        _check_select(0, round)
        ids, p = _stack(profiles, self.dim)
        return ids, self._score(p, round)

    def _score(self, p: Array, round: int) -> Array:
        if self.directed:
            return ucb_directed(self.features, p, self.theta, self.a_inv, self._coef(round))
        return ucb_matrix(p, self.theta, self.a_inv, self._coef(round))

    def select(self, profiles: Mapping[str, np.ndarray], max_pairs: int, round: int,
               orient: Mapping[str, float] | None = None) -> list[tuple[str, str]]:
        """Up to ``max_pairs`` disjoint pairs of available agents, best score first.

        ``orient``: scores that decide who teaches in a pair (the higher;
        equal: the smaller id); only directed features read it, and return
        their pairs as ``(teacher, student)``.
        """
        _check_select(max_pairs, round)
        ids, p = _stack(profiles, self.dim)
        if max_pairs == 0 or len(ids) < 2:
            return []
        score = self._score(p, round)
        keys = None
        if self.directed:
            keys = _orient_keys(ids, orient)
            score = oriented(score, keys)
        chosen = greedy_disjoint_pairs(score, int(max_pairs), self.rng)
        chosen = improve_pairs(chosen, score, self.refine)
        if keys is None:
            return [(ids[i], ids[j]) for i, j, _ in chosen]
        return [(ids[i], ids[j]) if keys[i] >= keys[j] else (ids[j], ids[i])
                for i, j, _ in chosen]  # i < j: equal keys, the smaller id teaches

    def choose(self, query: Query, profiles: Mapping[str, np.ndarray],
               round: int) -> list[tuple[str, float]]:
        """The ``query.k`` best answerers for ``query.asker`` (query model, UCB), best first."""
        _check_select(0, round)
        return top(self.query.rank(query, profiles, round, self.rng), query.k)

    def update(self, pair: tuple[str, str], profiles: Mapping[str, np.ndarray],
               reward: float, context: Sequence[float] | None = None) -> None:
        """Learn that ``pair`` earned ``reward``: ``A += x x^T``, ``b += r x``, A^-1 by Sherman-Morrison.

        With ``context`` (the query ``pair = (answerer, asker)`` answered) the
        query model learns instead.
        """
        p = _check_update(pair, profiles, reward, self.dim)
        if context is not None:  # oriented: (answerer, asker), whatever their ids' order
            answerer, asker = (np.asarray(profiles[a], dtype=np.float64) for a in pair)
            self.query.update(answerer, asker, np.asarray(context, dtype=np.float64), reward)
            return
        if self.directed:  # _check_update's rows are in id order; the pair's order counts here
            x = directed_features(self.features, *(np.asarray(profiles[a], dtype=np.float64)
                                                   for a in pair))
        else:
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
                "beta0": self.beta0, "features": self.features, "reinvert_every": self.reinvert_every, "refine": self.refine,
                "updates": self.updates, **self._pair_state(),
                "rng": _rng_state(self.rng), "query": self.query.state()}

    def _pair_state(self) -> dict[str, Any]:
        if self._pair is None:  # never used: nothing to save (restored as a fresh model)
            return {"a": None, "a_inv": None, "b": None}
        return {"a": self.a.tolist(), "a_inv": self.a_inv.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LinUCBMatchmaker:
        """Rebuild a matchmaker from ``state()``; raises ``MatchmakerError`` on a bad state."""
        _expect_kind(state, cls.kind)
        try:
            out = cls.__new__(cls)
            LinUCBMatchmaker.__init__(out, int(state["dim"]), float(state["lam"]),
                                      float(state["beta0"]), 0, int(state["reinvert_every"]),
                                      int(state["refine"]),
                                      str(state.get("features", "symmetric")))
            out.updates = int(state["updates"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MatchmakerError(f"bad matchmaker state: {exc!r}") from exc
        size = feature_dim(out.features, out.dim)
        if state.get("a") is not None or state.get("b") is not None:
            out.a = _matrix(state, "a", (size, size))
            out.a_inv = _matrix(state, "a_inv", (size, size))
            out.b = _matrix(state, "b", (size,))
        out.rng = _rng_from(state.get("rng", {}))
        out.query = QueryModel.from_state(state.get("query"), out.lam, out.beta0)
        return out


class GreedyMatchmaker(LinUCBMatchmaker):
    """Exploit-only baseline: the same linear model and pairing, no exploration bonus.

    ``beta0`` is accepted (so one config can name either kind) and ignored.
    """

    kind: ClassVar[str] = "greedy"

    def __init__(self, dim: int, lam: float = 1.0, beta0: float = 0.0,
                 seed: int | np.random.Generator | None = 0, reinvert_every: int = 1000,
                 refine: int = 4, features: str = "symmetric") -> None:
        super().__init__(dim, lam, 0.0, seed, reinvert_every, refine, features)


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

    def choose(self, query: Query, profiles: Mapping[str, np.ndarray],
               round: int) -> list[tuple[str, float]]:
        """``query.k`` candidates drawn uniformly at random."""
        _check_select(0, round)
        _stack(profiles, self.dim)
        return top(random_choice(query, profiles, self.rng), query.k)

    def update(self, pair: tuple[str, str], profiles: Mapping[str, np.ndarray],
               reward: float, context: Sequence[float] | None = None) -> None:
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
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise MatchmakerError(f"bad matchmaker state: 'dim' is {dim!r}")
        out = cls(dim, 0)
        out.rng = _rng_from(state.get("rng", {}))
        return out


def _orient_keys(ids: Sequence[str], orient: Mapping[str, float] | None) -> Array | None:
    """The teaching keys of ``ids`` (sorted), or ``None`` for the canonical order."""
    if orient is None:
        return None
    missing = [a for a in ids if a not in orient]
    if missing:
        raise MatchmakerError(f"orient has no score for agent(s) {missing[:5]}")
    keys = np.array([float(orient[a]) for a in ids])
    if not np.isfinite(keys).all():
        raise MatchmakerError("orient holds NaN or infinity")
    return keys


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)
