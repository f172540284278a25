"""Matching: who learns from whom, a bandit over agent profiles.

The ``Matchmaker`` protocol and its implementations (LinUCB, greedy, random)
are ``swarm.matching.matchmaker``; the pair features, UCB scores and the
greedy/2-opt pairing they share are ``swarm.matching.pairing``; the
``ProfileBuilder`` that turns a round's reports into fixed-length profile
vectors is ``swarm.matching.profiles``. The coordinator owns one matchmaker
and one profile builder; the loop that calls them lives there.
"""

from __future__ import annotations

from swarm.matching.matchmaker import (
    GreedyMatchmaker,
    LinUCBMatchmaker,
    Matchmaker,
    RandomMatchmaker,
    orient_by_score,
    orient_pairs,
)
from swarm.matching.pairing import pair_dim, pair_features
from swarm.matching.profiles import AgentSnapshot, ProfileBuilder, ReportLike

__all__ = [
    "AgentSnapshot",
    "GreedyMatchmaker",
    "LinUCBMatchmaker",
    "Matchmaker",
    "ProfileBuilder",
    "RandomMatchmaker",
    "ReportLike",
    "orient_by_score",
    "orient_pairs",
    "pair_dim",
    "pair_features",
]
