"""The config's ``matchmaker`` section and the settings of the built-in matchmakers.

``matchmaker.kind`` names a registered matchmaker (``swarm.matching.registry``);
the section's keys other than its own fields are that matchmaker's settings,
validated against the schema it registered and held in
``MatchmakerSection.settings``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from swarm.settings import Name, Settings

__all__ = ["BanditSettings", "MatchmakerSection"]


class BanditSettings(Settings, frozen=True):
    """Parameters of the built-in matchmakers (``linucb``, ``greedy``, ``random``).

    All three take them, so one config switches kind with ``matchmaker.kind``
    alone: ``greedy`` ignores ``beta0``, ``random`` both.
    """

    lam: Annotated[float, msgspec.Meta(gt=0.0, le=1e6)] = 1.0
    beta0: Annotated[float, msgspec.Meta(ge=0.0, le=1e6)] = 1.0
    #: The pair context (``swarm.matching.directed``): ``symmetric`` ignores who
    #: teaches; ``directed`` ([1, t, s, t - s, t * s]) and ``concat`` ([t, s])
    #: score a pair as (teacher, student). ``random`` ignores it.
    features: Literal["symmetric", "directed", "concat"] = "symmetric"


class MatchmakerSection(Settings, frozen=True):
    """Which pairing strategy runs and its parameters."""

    kind: Name = "linucb"
    #: The matchmaker's own settings: an instance of the schema it registered (or ``None``).
    settings: Any = msgspec.field(default_factory=BanditSettings)
    # Not a matchmaker setting: the coordinator passes it to every matchmaker's ``select``
    max_pairs: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
