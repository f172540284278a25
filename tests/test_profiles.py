"""Profile builder: layout, normalization, report snapshots, errors, and use by the matchmaker."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from swarm.errors import MatchmakerError
from swarm.matching.matchmaker import LinUCBMatchmaker
from swarm.matching.profiles import AgentSnapshot, ProfileBuilder
from swarm.wire.codec import AgentReport


def test_layout_names_every_feature() -> None:
    builder = ProfileBuilder(skills=["add", "sort", "add"], metrics={"loss": 2.0})
    assert builder.dim == 5 + 1 + 2
    assert builder.features == ["score", "score_delta", "metric:loss", "skill:add", "skill:sort",
                                "has_adapter", "adapter_norm", "comm_cost"]


def test_vector_normalizes_each_feature() -> None:
    builder = ProfileBuilder(skills=["add", "sort", "count"], metrics={"loss": 2.0},
                             norm_scale=10.0, comm_scale=1e9)
    snap = AgentSnapshot(agent_id="a", score=0.75, previous_score=0.5, metrics={"loss": 1.0},
                         skill_examples={"add": 30, "sort": 10, "reverse": 99},
                         has_adapter=True, adapter_norm=5.0, comm_bytes=1e6)
    vec = builder.build(snap)
    expected = [0.75, 0.25, math.tanh(0.5), 0.75, 0.25, 0.0, 1.0, math.tanh(0.5),
                math.log1p(1e6) / math.log1p(1e9)]
    assert vec.dtype == np.float64
    assert vec.tolist() == pytest.approx(expected)


def test_vector_clips_into_range() -> None:
    builder = ProfileBuilder(skills=["add"], metrics={"loss": 1.0})
    snap = AgentSnapshot(agent_id="a", score=7.0, previous_score=-9.0, metrics={"loss": -1e9},
                         adapter_norm=1e12, comm_bytes=1e15)
    vec = builder.build(snap)
    assert vec.tolist() == pytest.approx([1.0, 1.0, -1.0, 0.0, 0.0, 1.0, 1.0])
    assert np.all(np.abs(vec) <= 1.0)


def test_missing_inputs_give_neutral_features() -> None:
    builder = ProfileBuilder(skills=["add", "sort"], metrics={"loss": 1.0})
    vec = builder.build(AgentSnapshot(agent_id="a", score=0.3))
    assert vec.tolist() == pytest.approx([0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def test_vector_is_pure_for_snapshots() -> None:
    builder = ProfileBuilder(skills=["add"])
    snap = AgentSnapshot(agent_id="a", score=0.4, previous_score=0.1)
    assert np.array_equal(builder.build(snap), builder.build(snap))


def test_reports_remember_the_previous_score() -> None:
    builder = ProfileBuilder(skills=["add", "sort"], agent_skills={"a": ["add", "sort"]})
    first = AgentReport(agent_id="a", adapter=None, score=0.2)
    second = AgentReport(agent_id="a", adapter="f" * 64, score=0.5,
                         metrics={"adapter_norm": 10.0, "comm_bytes": 1e9})
    v1 = builder.build(first)
    v2 = builder.build(second)
    assert v1.tolist() == pytest.approx([0.2, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert v2.tolist() == pytest.approx([0.5, 0.3, 0.5, 0.5, 1.0, math.tanh(1.0), 1.0])
    restored = ProfileBuilder(skills=["add", "sort"], agent_skills={"a": ["add"]})
    restored.restore(json.loads(json.dumps(builder.state())))
    third = AgentReport(agent_id="a", score=0.4)
    assert restored.build(third).tolist() == pytest.approx([0.4, -0.1, 1.0, 0.0, 0.0, 0.0, 0.0])
    unknown = AgentReport(agent_id="b", score=0.4)  # an agent the builder has no skills for
    assert restored.build(unknown).tolist() == pytest.approx([0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])


def test_build_all_feeds_the_matchmaker() -> None:
    builder = ProfileBuilder(skills=["add", "sort", "count"])
    rng = np.random.default_rng(0)
    snaps = {f"a{i}": AgentSnapshot(agent_id=f"a{i}", score=float(rng.random()),
                                    skill_examples={"add": int(rng.integers(1, 9))})
             for i in range(6)}
    profiles = builder.build_all(snaps)
    mm = LinUCBMatchmaker(builder.dim, seed=0)
    pairs = mm.select(profiles, 3, 0)
    assert len(pairs) == 3
    mm.update(pairs[0], profiles, 0.2)
    assert mm.updates == 1


def test_bad_snapshots_are_refused() -> None:
    builder = ProfileBuilder(skills=["add"])
    with pytest.raises(MatchmakerError, match="'a' holds NaN"):
        builder.build(AgentSnapshot(agent_id="a", score=float("nan")))
    with pytest.raises(MatchmakerError, match="NaN or infinity"):
        builder.build(AgentSnapshot(agent_id="a", score=0.1, metrics={"x": float("inf")}))
    with pytest.raises(MatchmakerError, match="negative"):
        builder.build(AgentSnapshot(agent_id="a", score=0.1, comm_bytes=-1.0))
    with pytest.raises(MatchmakerError, match="scale"):
        ProfileBuilder(metrics={"loss": 0.0})
    with pytest.raises(MatchmakerError, match="builder state"):
        builder.restore({"previous": {"a": "high"}})
