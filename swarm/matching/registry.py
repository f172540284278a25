"""The matchmaker registry: the kinds ``matchmaker.kind`` can name.

A kind builds a matchmaker from its settings and rebuilds one from a saved
``state()`` (``MatchmakerKind``). A matchmaker class whose constructor takes
``(dim, settings, seed)`` and that has a ``from_state`` classmethod is a kind
itself; register it with its settings schema in code::

    @matchmaker("mine", settings=MySettings)
    class Mine: ...

or from another package through the entry-point group ``swarm.matchmakers``
(the class declares ``settings_schema``)::

    [project.entry-points."swarm.matchmakers"]
    mine = "my_package.pairing:Mine"

The config validates the ``matchmaker`` section's keys other than its own
(``kind``, ``max_pairs``) against that schema, exactly as for the built-in
``linucb``, ``greedy`` and ``random`` (which share ``BanditSettings``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec
import numpy as np

from swarm.errors import MatchmakerError
from swarm.matching.matchmaker import (
    GreedyMatchmaker,
    LinUCBMatchmaker,
    Matchmaker,
    RandomMatchmaker,
)
from swarm.matching.settings import BanditSettings, MatchmakerSection
from swarm.registry import Registry

__all__ = [
    "MatchmakerKind", "KindOf", "MATCHMAKERS", "matchmaker", "create_matchmaker",
    "restore_matchmaker",
]

SeedLike = int | np.random.Generator | None


class MatchmakerKind(Protocol):
    """What a registered matchmaker kind does: build one, or rebuild one from its state."""

    def __call__(self, dim: int, settings: Any, seed: SeedLike) -> Matchmaker: ...

    def from_state(self, state: dict[str, Any]) -> Matchmaker: ...


@dataclass(frozen=True)
class KindOf:
    """A kind made of two functions (for a class whose constructor takes other arguments)."""

    build: Callable[[int, Any, SeedLike], Matchmaker]
    restore: Callable[[dict[str, Any]], Matchmaker]

    def __call__(self, dim: int, settings: Any, seed: SeedLike) -> Matchmaker:
        return self.build(dim, settings, seed)

    def from_state(self, state: dict[str, Any]) -> Matchmaker:
        return self.restore(state)


MATCHMAKERS: Registry[MatchmakerKind] = Registry(
    "matchmaker", "swarm.matchmakers", reserved=MatchmakerSection.__struct_fields__
)

K = TypeVar("K", bound=MatchmakerKind)


def matchmaker(name: str, *, settings: type[msgspec.Struct] | None = None) -> Callable[[K], K]:
    """Decorator registering a matchmaker kind (usually a class) as ``name``."""

    def wrap(kind: K) -> K:
        MATCHMAKERS.register(name, kind, settings=settings)
        return kind

    return wrap


def create_matchmaker(kind: str, dim: int, settings: Any = None, seed: SeedLike = 0) -> Matchmaker:
    """The matchmaker ``kind`` names, for profiles of length ``dim``.

    Args:
        kind: a registered name (the config's ``matchmaker.kind``).
        dim: length of one agent's profile vector.
        settings: an instance of the kind's settings schema (the config's
            ``matchmaker.settings``); ``None``: the schema's defaults.
        seed: seed of the matchmaker's generator, or the generator itself.

    Raises:
        RegistryError: unknown kind.
    """
    entry = MATCHMAKERS.get(kind)
    schema = MATCHMAKERS.settings(kind)
    if settings is None and schema is not None:
        settings = msgspec.convert({}, schema)
    return entry(dim, settings, seed)


def restore_matchmaker(state: dict[str, Any]) -> Matchmaker:
    """Rebuild whichever registered matchmaker wrote ``state`` (its ``kind`` says which).

    Raises:
        MatchmakerError: the state names no registered kind, or is not a state of it.
    """
    kind = state.get("kind") if isinstance(state, Mapping) else None
    if not isinstance(kind, str) or kind not in MATCHMAKERS.names():
        raise MatchmakerError(f"unknown matchmaker kind {kind!r} in state; "
                              f"allowed: {MATCHMAKERS.names()}")
    return MATCHMAKERS.get(kind).from_state(state)


def _linucb(dim: int, settings: BanditSettings, seed: SeedLike) -> Matchmaker:
    return LinUCBMatchmaker(dim, lam=settings.lam, beta0=settings.beta0, seed=seed,
                            features=settings.features)


def _greedy(dim: int, settings: BanditSettings, seed: SeedLike) -> Matchmaker:
    return GreedyMatchmaker(dim, lam=settings.lam, seed=seed, features=settings.features)


def _random(dim: int, settings: BanditSettings, seed: SeedLike) -> Matchmaker:
    return RandomMatchmaker(dim, seed=seed)


MATCHMAKERS.register("linucb", KindOf(_linucb, LinUCBMatchmaker.from_state),
                     settings=BanditSettings)
MATCHMAKERS.register("greedy", KindOf(_greedy, GreedyMatchmaker.from_state),
                     settings=BanditSettings)
MATCHMAKERS.register("random", KindOf(_random, RandomMatchmaker.from_state),
                     settings=BanditSettings)
