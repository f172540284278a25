"""``swarm lineage kg`` and ``swarm lineage messages`` on a lineage the real recorder wrote.

The lineage: agent ``a`` builds its graph over rounds 0 and 1, commits nothing in
round 2 and rebuilds its graph without a step in round 3; ``b`` keeps role state
but no graph; ``c`` gets its first graph in round 2. Round 1 holds a conversation
(an ask and its answer, a publish with a large body, a failed ask), round 2 one
message.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from swarm.cli.main import main
from swarm.config import load_config
from swarm.knowledge import KnowledgeGraph
from swarm.lineage.gitstore import GitLineageStore
from swarm.matching.profiles import ProfileBuilder
from swarm.matching.registry import create_matchmaker
from swarm.runtime.recorder import Recorder
from swarm.wire.messages import AgentState, LogEntry
from tests.conftest import SMALL

MM_STATE = create_matchmaker("linucb", ProfileBuilder(skills=["add"]).dim, seed=0).state()
T0 = 1_700_000_000.0


def _recorder(tmp_path: Path, name: str, *overrides: str) -> Recorder:
    config = load_config(SMALL, [f"swarm.lineage={tmp_path / name / 'lineage'}",
                                 f"model.adapter_store={tmp_path / 'adapters'}", *overrides])
    store = GitLineageStore.open(config.lineage_dir, create=True,
                                 adapter_store=config.adapter_store)
    return Recorder(config, store, config.adapter_store)


def _commit(rec: Recorder, rnd: int, states: dict[str, AgentState],
            messages: Sequence[LogEntry] = ()) -> None:
    rec.commit_round(rnd, {}, [], {"round": rnd, "mean_score": 0.5,
                                   "agent_messages": len(messages)},
                     MM_STATE, states=states, messages=messages)


def _graphs() -> list[KnowledgeGraph]:
    """``a``'s graph after rounds 0, 1 and 3 (rebuilt: the step is gone, a fact changed)."""
    r0 = KnowledgeGraph("a")
    r0.add("g", "goal", text="answer the questions")
    r0.add("s1", "subgoal", "g", text="find capitals")
    r1 = KnowledgeGraph.from_json(r0.to_json())
    r1.add("s1", "subgoal", "g", text="find the capitals of Europe")
    r1.add("st1", "step", "s1", text="ask b")
    r1.add("f1", "fact", "s1", text="Paris is the capital of France", source="b")
    r3 = KnowledgeGraph("a")
    for node, level, parent, attrs in (("g", "goal", None, {"text": "answer the questions"}),
                                       ("s1", "subgoal", "g",
                                        {"text": "find the capitals of Europe"}),
                                       ("f1", "fact", "s1",
                                        {"text": "Paris is the capital of France",
                                         "source": "b", "checked": True})):
        r3.add(node, level, parent, **attrs)
    return [r0, r1, r3]


def _messages() -> list[LogEntry]:
    return [
        LogEntry(msg_id="q1", sender="a", recipient="b", kind="Question",
                 body='{"text":"capital of France?"}', size=30, at=T0 + 1.0),
        LogEntry(msg_id="p1", sender="a", topic="news", kind="Fact", body="",
                 body_sha256="ab" * 32, size=70_000, at=T0 + 1.5),
        LogEntry(msg_id="q2", sender="a", recipient="c", kind="Question",
                 body='{"text":"capital of Spain?"}', error="agent.timeout", size=29,
                 at=T0 + 2.0),
        LogEntry(msg_id="r1", correlation_id="q1", sender="b", recipient="a", kind="Answer",
                 body='{"text":"Paris"}', size=16, at=T0 + 1.25),
    ]


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("agents-lineage")
    rec = _recorder(tmp, "run")
    r0, r1, r3 = _graphs()
    c = KnowledgeGraph("c")
    c.add("gc", "goal", text="help")
    _commit(rec, 0, {"a": AgentState(kg=r0.to_json()), "b": AgentState(state='{"asked": 0}')})
    _commit(rec, 1, {"a": AgentState(kg=r1.to_json()), "b": AgentState(state='{"asked": 1}')},
            _messages())
    _commit(rec, 2, {"c": AgentState(kg=c.to_json())},
            [LogEntry(msg_id="x1", sender="c", recipient="b", kind="Hello", at=T0 + 9)])
    _commit(rec, 3, {"a": AgentState(kg=r3.to_json())})
    rec.close()
    return rec.path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, _, err = _run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("swarm: error: "), err
    return lines[0]


def test_kg_prints_the_hierarchy_as_of_a_round(lineage: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, out, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "1")
    # Assert: goal > subgoal > step/fact, indented, attributes in short form, then the counts.
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("knowledge graph of a as of round 1 (")
    assert lines[1:] == [
        '  goal g  text="answer the questions"',
        '    subgoal s1  text="find the capitals of Europe"',
        '      step st1  text="ask b"',
        '      fact f1  source="b" text="Paris is the capital of France"',
        "4 nodes (1 goal, 1 subgoal, 1 step, 1 fact), 3 edges, 0 pending",
    ]


def test_kg_of_a_round_without_a_commit_and_the_newest(
        lineage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute: a committed nothing in round 2; its newest graph is round 3's.
    _, at_two, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "2")
    _, newest, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage))
    _, first, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "0")
    # Assert
    assert at_two.splitlines()[0].startswith("knowledge graph of a as of round 2, committed "
                                             "in round 1 (")
    assert "      step st1  text=\"ask b\"" in at_two.splitlines()
    assert newest.splitlines()[0].startswith("knowledge graph of a as of round 3 (")
    assert "step st1" not in newest and "checked=true" in newest
    assert first.splitlines()[-1] == "2 nodes (1 goal, 1 subgoal), 1 edge, 0 pending"


def test_kg_diff_shows_added_changed_and_removed(lineage: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    _, grew, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "1",
                      "--diff", "0")
    _, rebuilt, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "3",
                         "--diff", "1")
    code, raw, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "3",
                        "--diff", "1", "--json")
    # Assert
    lines = grew.splitlines()
    assert lines[0].startswith("knowledge graph of a: round 0 -> round 1 (")
    assert lines[1:] == [
        '+ step st1  text="ask b"  (under s1)',
        '+ fact f1  source="b" text="Paris is the capital of France"  (under s1)',
        '~ subgoal s1  text: "find capitals" -> "find the capitals of Europe"',
        "+ edge s1 -> f1",
        "+ edge s1 -> st1",
        "nodes: 2 added, 0 removed, 1 changed; edges: 2 added, 0 removed",
    ]
    assert rebuilt.splitlines()[1:] == [
        '- step st1  text="ask b"',
        "~ fact f1  checked: (absent) -> true",
        "- edge s1 -> st1",
        "nodes: 0 added, 1 removed, 1 changed; edges: 0 added, 1 removed",
    ]
    diff = json.loads(raw)
    assert code == 0 and diff["from"]["round"] == 1 and diff["to"]["round"] == 3
    assert diff["removed_nodes"] == ["st1"] and diff["changed"] == {"f1": {"checked": [None,
                                                                                      True]}}


def test_kg_diff_from_before_the_first_graph(lineage: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "lineage", "kg", "c", "-C", str(lineage), "--diff", "1")
    assert "round 1 (no graph yet: all of it is new)" in out.splitlines()[0]
    assert out.splitlines()[1] == '+ goal gc  text="help"'


def test_kg_json_is_the_node_link_graph(lineage: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, out, _ = _run(capsys, "lineage", "kg", "a", "-C", str(lineage), "--round", "1",
                        "--json")
    # Assert: it rebuilds the graph the recorder was given.
    data = json.loads(out)
    assert code == 0 and data["round"] == 1 and len(data["commit"]) == 40
    assert KnowledgeGraph.from_json(out) == _graphs()[1]
    assert {n["id"] for n in data["graph"]["nodes"]} == {"g", "s1", "st1", "f1"}


def test_kg_draws_a_picture(lineage: Path, tmp_path: Path) -> None:
    # Execute: through the installed entry point, as a user runs it.
    png, svg = tmp_path / "a.png", tmp_path / "a.svg"
    procs = [subprocess.run([sys.executable, "-m", "swarm", "lineage", "kg", "a", "-C",
                             str(lineage), "--round", "1", "--draw", str(dest)],
                            capture_output=True, text=True, timeout=120, check=False)
             for dest in (png, svg)]
    # Assert
    for proc, dest in zip(procs, (png, svg), strict=True):
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1] == f"wrote {dest}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert b"<svg" in svg.read_bytes()[:2000]


def test_kg_errors_name_the_problem(lineage: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a lineage whose roles kept no graph at all.
    bare = _recorder(tmp_path, "bare")
    _commit(bare, 0, {"b": AgentState(state="{}")})
    bare.close()
    d = ["-C", str(lineage)]
    # Execute / Assert
    assert "no agent 'zz' in" in (line := _error(capsys, "lineage", "kg", "zz", *d))
    assert "known: a, b, c" in line
    assert "agent 'c' has no knowledge graph yet at round 1 (its first is in round 2)" in \
        _error(capsys, "lineage", "kg", "c", *d, "--round", "1")
    assert "agent 'b' has no knowledge graph in" in _error(capsys, "lineage", "kg", "b", *d)
    assert "round 9 is past the newest round of" in \
        _error(capsys, "lineage", "kg", "a", *d, "--round", "9")
    assert "holds no knowledge graphs" in \
        _error(capsys, "lineage", "kg", "b", "-C", str(bare.path))
    assert "must end in .png, .svg or .pdf" in \
        _error(capsys, "lineage", "kg", "a", *d, "--draw", str(tmp_path / "a.gif"))
    assert "cannot write" in \
        _error(capsys, "lineage", "kg", "a", *d, "--draw", str(tmp_path / "no" / "a.png"))


def test_messages_threads_answers_under_questions(lineage: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, out, _ = _run(capsys, "lineage", "messages", "-C", str(lineage), "--round", "1")
    # Assert: time order, the answer under its question, the large body as its hash.
    assert code == 0
    assert out.splitlines() == [
        "round 1: 4 of 4 message(s) kept (lineage.messages: all)",
        '+0.000s  a -> b  Question  {"text":"capital of France?"}  id=q1',
        '  +0.250s  b -> a  Answer  {"text":"Paris"}  id=r1',
        f"+0.500s  a -> #news  Fact  sha256:{'ab' * 6}… (70000 B)  id=p1",
        '+1.000s  a -> c  Question  {"text":"capital of Spain?"}  error=agent.timeout  id=q2',
    ]


def test_messages_filters(lineage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["lineage", "messages", "-C", str(lineage), "--round", "1"]
    # Execute
    _, by_agent, _ = _run(capsys, *d, "--agent", "b")
    _, by_kind, _ = _run(capsys, *d, "--kind", "Question")
    _, by_exchange, _ = _run(capsys, *d, "--correlation", "q1")
    _, raw, _ = _run(capsys, *d, "--agent", "c", "--json")
    # Assert
    assert by_agent.splitlines()[0].endswith("; 2 shown (agent b)")
    assert [ln.split("id=")[-1] for ln in by_agent.splitlines()[1:]] == ["q1", "r1"]
    assert [ln.split("id=")[-1] for ln in by_kind.splitlines()[1:]] == ["q1", "q2"]
    assert [ln.strip().split("id=")[-1] for ln in by_exchange.splitlines()[1:]] == ["q1", "r1"]
    assert by_exchange.splitlines()[2].startswith("  +0.250s  b -> a  Answer")
    data = json.loads(raw)
    assert (data["total"], data["kept"], data["shown"], data["policy"]) == (4, 4, 1, "all")
    assert [m["msg_id"] for m in data["messages"]] == ["q2"]
    assert data["messages"][0]["error"] == "agent.timeout"


def test_messages_capped_and_not_kept(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: one lineage keeps at most 2 messages a round, another keeps none.
    capped = _recorder(tmp_path, "capped", "lineage.max_messages=2")
    _commit(capped, 0, {}, _messages())
    capped.close()
    silent = _recorder(tmp_path, "silent", "lineage.messages=none")
    _commit(silent, 0, {}, _messages())
    silent.close()
    # Execute
    _, out, _ = _run(capsys, "lineage", "messages", "-C", str(capped.path), "--round", "0")
    # Assert
    assert out.splitlines()[0] == "round 0: 2 of 4 message(s) kept (lineage.messages: all)"
    assert len(out.splitlines()) == 3
    line = _error(capsys, "lineage", "messages", "-C", str(silent.path), "--round", "0")
    assert "round 0 kept no message log" in line and "lineage.messages: none" in line
    assert "counts 4 agent message(s)" in line
    assert "round 1 is past the newest round" in \
        _error(capsys, "lineage", "messages", "-C", str(silent.path), "--round", "1")


def test_damaged_graph_and_message_log_are_named(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a graph file that is JSON but no graph, and a message log of the wrong shape.
    rec = _recorder(tmp_path, "damaged")
    _commit(rec, 0, {"a": AgentState(kg='{"owner": "a"}')})
    rec.store.commit("swarm", {"messages/00000.json": {"round": 0, "messages": 5}}, "round 0: x")
    rec.close()
    d = ["-C", str(rec.path)]
    # Execute / Assert
    line = _error(capsys, "lineage", "kg", "a", *d)
    assert "agents/a/kg.json at " in line and "is not a knowledge graph" in line
    line = _error(capsys, "lineage", "messages", *d, "--round", "0")
    assert "messages/00000.json in" in line and "is not a message log" in line
