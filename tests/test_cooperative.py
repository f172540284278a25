"""The cooperative protocol: its world, its partner choice, and real swarms of cooperators."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarm.config import load_config
from swarm.errors import MatchmakerError
from swarm.matching.matchmaker import LinUCBMatchmaker, RandomMatchmaker
from swarm.matching.query import Query
from swarm.protocols.world import RELATIONS, make_world
from swarm.runtime.run import run_swarm
from tests.conftest import free_base_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "cooperative.yaml"
AGENTS = [f"coop-{i}" for i in range(8)]


def test_the_world_is_dealt_out_so_that_no_agent_answers_alone() -> None:
    # Prepare / Execute
    world = make_world(AGENTS, seed=3)
    again = make_world(AGENTS, seed=3)

    # Assert: the same world from the same seed; every fact held exactly once
    assert world == again and world != make_world(AGENTS, seed=4)
    held = [f for shard in world.shards.values() for f in shard]
    assert sorted(held, key=str) == sorted(world.facts, key=str)
    for i, agent in enumerate(AGENTS):
        assert {f.relation for f in world.shards[agent]} == {RELATIONS[i % 4]}
        own = {(f.relation, f.subject) for f in world.shards[agent]}
        questions = world.questions(agent, 8, seed=3, round=0)
        assert len(questions) == 8 and len({q.text for q in questions}) == 8
        for q in questions:
            subject, needed = q.entity, []
            for rel in q.hops:
                fact = world.fact(rel, subject)
                assert fact is not None
                needed.append((rel, subject))
                subject = fact.object
            assert subject == q.answer and not set(needed) <= own
        assert world.questions(agent, 8, seed=3, round=1) != questions


def _profiles(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {a: rng.normal(size=16) for a in AGENTS}


@pytest.mark.parametrize("wanted", ["like", "unlike"])
def test_the_query_model_learns_which_answerers_to_choose(wanted: str) -> None:
    # Prepare: the right answerer is the one whose profile is closest to the query
    # ("like"), or, to show that the model learns rather than follows its prior, the
    # one farthest from it ("unlike")
    rng = np.random.default_rng(0)
    profiles = _profiles(rng)
    mm = LinUCBMatchmaker(16, beta0=0.5, seed=0)

    def query() -> tuple[Query, str]:
        near = AGENTS[int(rng.integers(1, 8))]
        context = profiles[near] + 0.3 * rng.normal(size=16)
        if wanted == "like":
            return Query(asker="coop-0", context=tuple(context), k=1), near
        cos = {a: float(profiles[a] @ context / np.linalg.norm(profiles[a]))
               for a in AGENTS[1:]}
        return Query(asker="coop-0", context=tuple(context), k=1), min(cos, key=cos.__getitem__)

    # Execute: 300 queries, rewarded 1 when the chosen answerer was the right one
    hits = []
    for r in range(300):
        q, target = query()
        chosen = mm.choose(q, profiles, r // 20)[0][0]
        hits.append(chosen == target)
        mm.update((chosen, "coop-0"), profiles, float(chosen == target), context=q.context)

    # Assert: the last 100 choices are mostly right (chance: 1 in 7), the weight of the
    # query's likeness has the sign of what was rewarded, and the model is saved
    theta = np.linalg.solve(mm.query.a, mm.query.b)
    assert sum(hits[-100:]) >= 60
    assert (theta[1] > 0) == (wanted == "like")
    restored = LinUCBMatchmaker.from_state(json.loads(json.dumps(mm.state())))
    q, _ = query()
    assert restored.choose(q, profiles, 10) == mm.choose(q, profiles, 10)
    assert mm.state()["a"] is None  # the pair model was never used: nothing saved of it


def test_a_bad_query_is_a_matchmaker_error() -> None:
    profiles = _profiles(np.random.default_rng(1))
    mm, rnd = LinUCBMatchmaker(16), RandomMatchmaker(16, seed=0)
    with pytest.raises(MatchmakerError, match="no profile for the asking agent"):
        mm.choose(Query(asker="stranger"), profiles, 0)
    with pytest.raises(MatchmakerError, match="same space"):
        mm.choose(Query(asker="coop-0", context=(1.0, 2.0)), profiles, 0)
    with pytest.raises(MatchmakerError, match="k >= 1"):
        rnd.choose(Query(asker="coop-0", k=0), profiles, 0)
    picked = rnd.choose(Query(asker="coop-0", k=3, candidates=("coop-1", "coop-2", "x")),
                        profiles, 0)
    assert sorted(a for a, _ in picked) == ["coop-1", "coop-2"]  # no "x": it has no profile


def _run(tmp_path: Path, tiny_model: Path, name: str, *extra: str) -> tuple[dict[str, Any], Path]:
    config = load_config(CONFIG, [
        f"swarm.lineage={tmp_path / name / 'lineage'}", f"transport.base_port={free_base_port()}",
        "model.backend=hf", f"model.path={tiny_model}", "swarm.rounds=1",
        "agents.0.count=4", "agents.0.settings.questions=3", "launcher.hosts=2", *extra])
    summary = run_swarm(config)
    assert summary is not None
    return dict(summary), config.lineage_dir


def _show(lineage: Path, ref: str, path: str) -> Any:
    out = subprocess.run(["git", "-C", str(lineage), "show", f"{ref}:{path}"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.slow
def test_cooperators_ask_the_partners_the_matchmaker_chooses_and_learn_their_facts(
        tmp_path: Path, tiny_model: Path) -> None:
    # Execute: a real swarm (coordinator, 2 host processes, a model server) of 4 cooperators
    summary, lineage = _run(tmp_path, tiny_model, "mm")

    # Assert: every agent answered; they talked host to host, and what they learnt came
    # from the agent that holds it
    record = summary["history"][0]
    assert record["unavailable"] == [] and record["agent_messages"] > 0
    log = _show(lineage, "swarm", "messages/00000.json")
    kinds = {m["kind"] for m in log["messages"]}
    assert kinds == {"FactQuery", "FactReply"} and log["kept"] == log["total"]
    world = make_world([f"coop-{i}" for i in range(4)], seed=0)
    learned = 0
    for i in range(4):
        agent = f"coop-{i}"
        kg = _show(lineage, f"agent/{agent}", f"agents/{agent}/kg.json")
        for node in kg["graph"]["nodes"]:
            if node.get("level") == "fact" and node["source"] != agent:
                learned += 1
                assert node["source"] == world.holder(node["relation"], node["subject"])
    assert learned > 0
    state = _show(lineage, "swarm", "matchmaker/state.json")
    assert state["query"]["updates"] > 0  # the hosts' rewards reached the matchmaker


@pytest.mark.slow
def test_without_sharing_no_agent_says_a_word(tmp_path: Path, tiny_model: Path) -> None:
    summary, lineage = _run(tmp_path, tiny_model, "none", "agents.0.settings.partners=none")
    assert summary["history"][0]["agent_messages"] == 0
    assert _show(lineage, "swarm", "messages/00000.json")["total"] == 0
