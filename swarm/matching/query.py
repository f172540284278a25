"""Choosing partners for one query: oriented pairs (asker -> answerer) in a query's context.

``select`` pairs agents off, disjoint and unordered, once a round. An agent
that needs an answer instead asks the matchmaker ``choose(query, profiles,
round)``: who, among the candidates, should answer *this* query? The answer
is a ranked list of ``(answerer, score)``, best first; the pair it teaches
the matchmaker about is oriented ``(answerer, asker)`` — the same order as
``(teacher, student)`` — and ``update(pair, profiles, reward, context=...)``
feeds back what that answer was worth.

Disjoint pairing is the special case without a context: ``select`` still
serves the round protocols. The query model is a LinUCB of its own over
directed query features (``query_features``)::

    phi(answerer a, asker s, context c) = [1, cos(c, p_a), cos(p_s, p_a)]

so it learns how much the answerer's likeness to the query (and to the
asker) predicts a good answer, with an exploration bonus that shrinks as
rounds pass. Profiles and contexts must live in one space (an agent's
profile summarises what it knows, a query's context is the query embedded
the same way), and the features stay three numbers whatever the profile
length, so the model is small and its state cheap to commit every round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from swarm.errors import MatchmakerError

__all__ = ["Query", "QueryModel", "query_features", "QUERY_DIM", "candidates_of", "unit"]

Array = NDArray[np.float64]
QUERY_DIM = 3


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks, among whom to choose (empty: every profiled agent but the asker),
    the query's context vector (empty: none) and how many partners to return."""

    asker: str
    candidates: tuple[str, ...] = ()
    context: tuple[float, ...] = ()
    k: int = 1


def unit(v: Array) -> Array:
    """``v`` scaled to length 1 (a zero vector stays zero)."""
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def query_features(answerer: Array, asker: Array, context: Array | None) -> Array:
    """``[1, cos(context, answerer), cos(asker, answerer)]`` (0 for a missing context)."""
    a = unit(np.asarray(answerer, dtype=np.float64))
    s = unit(np.asarray(asker, dtype=np.float64))
    c = 0.0
    if context is not None and len(context):
        ctx = np.asarray(context, dtype=np.float64)
        if ctx.shape != a.shape:
            raise MatchmakerError(f"a query's context has length {ctx.shape[0]}, the profiles "
                                  f"{a.shape[0]}: they must be embedded in the same space")
        c = float(unit(ctx) @ a)
    return np.array([1.0, c, float(s @ a)])


def candidates_of(query: Query, profiles: Mapping[str, np.ndarray]) -> list[str]:
    """The query's candidates that have a profile (sorted), never the asker.

    Raises:
        MatchmakerError: the asker has no profile, or ``k`` is below 1.
    """
    if query.asker not in profiles:
        raise MatchmakerError(f"no profile for the asking agent {query.asker!r}")
    if query.k < 1:
        raise MatchmakerError(f"a query needs k >= 1 partners, got {query.k}")
    pool = query.candidates or tuple(profiles)
    return sorted({c for c in pool if c in profiles and c != query.asker})


class QueryModel:
    """LinUCB over ``query_features``: ranks answerers for a query, learns from rewards."""

    def __init__(self, lam: float = 1.0, beta0: float = 1.0) -> None:
        self.lam, self.beta0 = float(lam), float(beta0)
        self.a = np.eye(QUERY_DIM) * self.lam
        self.b = np.zeros(QUERY_DIM)
        self.updates = 0

    def rank(self, query: Query, profiles: Mapping[str, np.ndarray], round: int,
             rng: np.random.Generator) -> list[tuple[str, float]]:
        """Every candidate with its UCB score, best first (ties in ``rng``'s order)."""
        ids = candidates_of(query, profiles)
        if not ids:
            return []
        context = np.asarray(query.context, dtype=np.float64) if query.context else None
        x = np.stack([query_features(profiles[c], profiles[query.asker], context) for c in ids])
        a_inv = np.linalg.inv(self.a)
        mean = x @ (a_inv @ self.b)
        width = np.sqrt(np.einsum("ij,jk,ik->i", x, a_inv, x))
        score = mean + self.beta0 / math.sqrt(round + 1) * width
        order = np.lexsort((rng.random(len(ids)), -score))
        return [(ids[i], float(score[i])) for i in order]

    def update(self, answerer: Array, asker: Array, context: Array | None,
               reward: float) -> None:
        """Learn that this answerer's answer to this query was worth ``reward``."""
        x = query_features(answerer, asker, context)
        self.a += np.outer(x, x)
        self.b += float(reward) * x
        self.updates += 1

    def state(self) -> dict[str, Any]:
        return {"lam": self.lam, "beta0": self.beta0, "a": self.a.tolist(),
                "b": self.b.tolist(), "updates": self.updates}

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None, lam: float, beta0: float) -> QueryModel:
        """Rebuild from ``state()`` (``None``: a fresh model, for a state saved before queries)."""
        out = cls(lam, beta0)
        if state is None:
            return out
        try:
            a = np.array(state["a"], dtype=np.float64)
            b = np.array(state["b"], dtype=np.float64)
            out.updates = int(state["updates"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MatchmakerError(f"bad query-model state: {exc!r}") from exc
        if a.shape != (QUERY_DIM, QUERY_DIM) or b.shape != (QUERY_DIM,) or \
                not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise MatchmakerError("bad query-model state: 'a' or 'b' has the wrong shape")
        out.a, out.b = a, b
        return out


def random_choice(query: Query, profiles: Mapping[str, np.ndarray],
                  rng: np.random.Generator) -> list[tuple[str, float]]:
    """The candidates in a random order, each scored 0 (the random baseline)."""
    ids = candidates_of(query, profiles)
    return [(ids[i], 0.0) for i in rng.permutation(len(ids))]


def top(ranked: Sequence[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """The first ``k`` of a ranking."""
    return list(ranked[:k])
