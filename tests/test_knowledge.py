"""Knowledge graphs: hierarchy checks and an order-free, idempotent merge."""

from __future__ import annotations

import itertools

import pytest

from swarm.knowledge import KGDelta, KnowledgeError, KnowledgeGraph, replay
from swarm.wire.codec import decode, encode


def _deltas() -> list:
    a, b = KnowledgeGraph("a"), KnowledgeGraph("b")
    out = [a.add("learn", "goal"), a.add("reverse", "subgoal", "learn", score=0.2)]
    out += [b.add("learn", "goal"), b.add("add", "subgoal", "learn")]
    out += [b.add("carry", "fact", "add", text="carry the one")]
    b.apply(out[1])
    out.append(b.add("reverse", "subgoal", "learn", score=0.9))
    return out


def test_replicas_equal_whatever_the_order() -> None:
    deltas = _deltas()
    graphs = [replay("x", order) for order in itertools.permutations(deltas)][:120]

    assert all(g == graphs[0] for g in graphs)
    assert graphs[0].graph.nodes["reverse"]["score"] == 0.9
    assert graphs[0].children("learn") == ["add", "reverse"]


def test_merge_is_idempotent_and_json_round_trips() -> None:
    kg = replay("x", _deltas())
    twice = replay("x", _deltas() + _deltas())
    restored = KnowledgeGraph.from_json(kg.to_json())

    assert twice == kg
    assert restored == kg
    assert restored.to_json() == kg.to_json()


def test_a_delta_is_the_message_an_agent_sends() -> None:
    # Prepare: the deltas one replica made
    deltas = _deltas()

    # Execute: send each over the wire and apply what arrives
    received = [decode(encode(d))[0] for d in deltas]

    # Assert: the same type arrives, with its stamp, and gives the same graph
    assert all(type(m) is KGDelta for m in received)
    assert [(m.origin, m.clock) for m in received] == [(d.origin, d.clock) for d in deltas]
    assert replay("x", received) == replay("x", deltas)  # type: ignore[arg-type]


def test_hierarchy_is_enforced() -> None:
    kg = KnowledgeGraph("a")
    kg.add("g", "goal")
    kg.add("s", "step", "g")

    with pytest.raises(KnowledgeError, match="down the hierarchy"):
        kg.add("g2", "goal", "s")
    with pytest.raises(KnowledgeError, match="level"):
        kg.add("x", "wish", "g")
    kg.add("y", "fact", "missing")  # the parent may arrive later
    assert ("missing", "y") in kg.pending
    kg.add("missing", "subgoal", "g")
    assert kg.pending == set()
    assert kg.children("missing") == ["y"]
