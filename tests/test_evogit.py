"""The evogit protocol's evolution service on a real git lineage with real evaluations.

Each test drives the service (``swarm.protocols.evolution.Evolution``) the way
agents do through ``ctx.ask_protocol``: a ``MutationTask``, a ``Mutation``, a
``Crossover``, a ``Steer``. The evaluator is the real ``command`` evaluator:
the seed artifact's ``score.py`` run in the sandbox on a copy of each version.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from swarm.lineage.artifacts import Artifact, resolve_markers
from swarm.lineage.gitstore import GitLineageStore
from swarm.protocols.base import ServiceContext
from swarm.protocols.evogit import (
    Crossover,
    EvogitSettings,
    Mutation,
    MutationTask,
    Section,
    Selected,
    Steer,
)
from swarm.protocols.evolution import Evolution, better
from swarm.sandbox import SandboxLimits

AGENTS = ["a", "b", "c"]

# fitness: the value of `x` on the line `x = N`, unless `fail` is 1 (then a failed evaluation)
SCORE = b'''import json
params = dict(l.split(" = ") for l in open("params.txt").read().split("\\n") if " = " in l)
if float(params.get("fail", 0)):
    print(json.dumps({"status": "failed", "fitness": None, "detail": "asked to fail"}))
else:
    print(json.dumps({"status": "ok", "fitness": float(params["x"]), "detail": "x"}))
'''
PARAMS = "\n".join(["# parameters", "x = 0.1", "y = 1", "z = 1", "w = 1", "v = 1",
                    "u = 1", "fail = 0", ""])


def make(tmp: Path, **settings: Any) -> tuple[Evolution, GitLineageStore]:
    seed = tmp / "seed"
    seed.mkdir()
    (seed / "score.py").write_bytes(SCORE)
    (seed / "params.txt").write_text(PARAMS)
    store = GitLineageStore.open(tmp / "lineage", create=True)
    defaults: dict[str, Any] = {
        "artifact": "toy", "seed": str(seed), "mutable": ["params.txt"],
        "command": ["{python}", "score.py"], "section_lines": 16, "context_lines": 1,
        "limits": SandboxLimits(cpu_s=10, memory_mb=512, processes=16, file_mb=8, wall_s=20)}
    evo = Evolution(EvogitSettings(**{**defaults, **settings}),
                    ServiceContext(store=store, agents=AGENTS, seed=0, rounds=10))
    asyncio.run(evo.start(0))
    return evo, store


def ask(evo: Evolution, sender: str, msg: Any) -> Any:
    return asyncio.run(evo.handle(sender, msg))


def edit(task: Section, old: str, new: str, message: str = "edit") -> Mutation:
    assert old in task.lines, f"{old!r} not in the section {task.lines!r}"
    return Mutation(parent=task.parent, path=task.path, start=task.start, end=task.end,
                    section=task.lines.replace(old, new), message=message)


def test_seed_forks_one_individual_per_agent_and_is_evaluated_once(tmp_path: Path) -> None:
    evo, store = make(tmp_path)
    seed = evo.artifact.seed_sha()
    assert seed is not None
    assert evo.artifact.individuals() == {a: seed for a in AGENTS}
    assert store.git("rev-list", "--parents", "-n1", seed).split() == [seed.encode()]
    assert sorted(evo.artifact.files(seed)) == ["params.txt", "score.py"]
    assert evo.artifact.evaluation(seed)["fitness"] == pytest.approx(0.1)
    assert json.loads(store.get_note(seed) or b"{}")["fitness"] == pytest.approx(0.1)
    assert evo.stats["evaluations"] == 1


def test_a_mutation_is_committed_evaluated_and_kept_only_if_fitter(tmp_path: Path) -> None:
    evo, store = make(tmp_path)
    seed = evo.artifact.seed_sha()

    task = ask(evo, "a", MutationTask())
    better_one = ask(evo, "a", edit(task, "x = 0.1", "x = 0.5", "raise x"))
    task_b = ask(evo, "b", MutationTask())
    worse = ask(evo, "b", edit(task_b, "x = 0.1", "x = 0.05", "lower x"))

    assert isinstance(better_one, Selected) and better_one.accepted
    assert better_one.fitness == pytest.approx(0.5) and better_one.parent_fitness == 0.1
    assert evo.artifact.individuals()["a"] == better_one.child
    assert store.git("log", "-1", "--format=%s%n%P", better_one.child).decode().split("\n")[:2] \
        == ["round 0: mutate a: raise x", seed]
    assert not worse.accepted and worse.fitness == pytest.approx(0.05)
    assert evo.artifact.individuals()["b"] == seed  # (1+1): the worse child is not kept
    assert b"x = 0.05" in evo.artifact.files(worse.child)["params.txt"]  # but it is a commit


def test_the_same_tree_is_evaluated_once_whatever_commit_reaches_it(tmp_path: Path) -> None:
    evo, _ = make(tmp_path)
    task_a = ask(evo, "a", MutationTask())
    task_b = ask(evo, "b", MutationTask())
    first = ask(evo, "a", edit(task_a, "x = 0.1", "x = 0.3"))
    evaluations = evo.stats["evaluations"]

    second = ask(evo, "b", edit(task_b, "x = 0.1", "x = 0.3", "the same edit"))

    assert first.child != second.child  # another commit (another parent message)...
    assert evo.artifact.tree(first.child) == evo.artifact.tree(second.child)  # ...same tree
    assert evo.stats["evaluations"] == evaluations  # read from the notes, not run again
    assert second.fitness == pytest.approx(0.3) and second.accepted


def test_invalid_edits_are_counted_and_never_committed(tmp_path: Path) -> None:
    evo, store = make(tmp_path, line_pattern=r"#.*|[a-z]+ = [0-9.]+", max_edit_bytes=200)
    task = ask(evo, "a", MutationTask())
    commits = store.git("rev-list", "--all").split()
    bad = [
        Mutation(parent="0" * 40, path=task.path, start=task.start, end=task.end,
                 section=task.lines, message="stale"),
        Mutation(parent=task.parent, path="score.py", start=1, end=1, section="x\n",
                 message="not mutable"),
        Mutation(parent=task.parent, path=task.path, start=1, end=999, section="x = 1\n",
                 message="no such lines"),
        Mutation(parent=task.parent, path=task.path, start=task.start, end=task.end,
                 section="this is prose, not parameters\n", message="pattern"),
        Mutation(parent=task.parent, path=task.path, start=task.start, end=task.end,
                 section="x = 1\n" * 30, message="too long"),
        Mutation(parent=task.parent, path=task.path, start=task.start, end=task.end,
                 section=task.lines + "x = 1\n" * 9, message="grows too much"),
        Mutation(parent=task.parent, path=task.path, start=task.start, end=task.end,
                 section=task.lines, message="no change"),
    ]
    answers = [ask(evo, "a", m) for m in bad]
    assert [a.status for a in answers] == ["invalid"] * len(bad)
    assert evo.stats["invalid"] == len(bad)
    assert store.git("rev-list", "--all").split() == commits


def test_a_failed_evaluation_is_never_selected(tmp_path: Path) -> None:
    evo, _ = make(tmp_path)
    task = ask(evo, "a", MutationTask())
    both = task.lines.replace("x = 0.1", "x = 0.9").replace("fail = 0", "fail = 1")
    done = ask(evo, "a", Mutation(parent=task.parent, path=task.path, start=task.start,
                                  end=task.end, section=both, message="fails"))
    assert done.status == "failed" and done.fitness is None and not done.accepted
    assert better(None, 0.1) is False and better(0.2, None, 0.1) is True


def test_crossover_merges_two_individuals_and_must_beat_both_parents(tmp_path: Path) -> None:
    evo, store = make(tmp_path)
    ta, tb, tc = (ask(evo, agent, MutationTask()) for agent in "abc")
    a = ask(evo, "a", edit(ta, "x = 0.1", "x = 0.4"))  # a: x up (fitter)
    b = ask(evo, "b", edit(tb, "y = 1", "y = 2"))  # b: another line (as fit: not kept)
    c = ask(evo, "c", edit(tc, "x = 0.1", "x = 0.2"))  # c: x up, conflicting with a
    assert a.accepted and not b.accepted and c.accepted

    clean = ask(evo, "a", Crossover(theirs="c"))
    assert clean.status == "ok"
    parents = store.git("log", "-1", "--format=%P", clean.child).decode().split()
    assert parents == [a.child, c.child]  # a real merge commit, ours first
    text = evo.artifact.files(clean.child)["params.txt"].decode()
    assert "<<<<<<<" not in text and text.count("x = ") == 1
    # the hunk went to one side by the seeded coin; only a child fitter than both is kept
    assert clean.accepted is (clean.fitness is not None and clean.fitness > 0.4)
    assert evo.stats["conflicts"] == 1
    events = evo.round_record(0)["events"]
    assert events[-1]["kind"] == "merge" and events[-1]["hunks"] in (["ours"], ["theirs"])


def test_conflict_markers_are_resolved_hunk_by_hunk() -> None:
    data = (b"a\n<<<<<<< x\nB1\n=======\nB2\n>>>>>>> y\nc\n<<<<<<< x\nD1\n=======\nD2\n"
            b">>>>>>> y\ne\n")
    picks = iter(["ours", "theirs"])

    def choose(h: Any) -> list[str]:
        return h.ours if next(picks) == "ours" else h.theirs

    out, decided = resolve_markers("f", data, choose)
    assert out == b"a\nB1\nc\nD2\ne\n" and decided == ["ours", "theirs"]


def test_promote_broadcasts_a_version_and_prune_retires_an_individual(tmp_path: Path) -> None:
    evo, store = make(tmp_path)
    task = ask(evo, "a", MutationTask())
    best = ask(evo, "a", edit(task, "x = 0.1", "x = 0.7"))

    promoted = ask(evo, "user:tester", Steer(action="promote", ref="a"))
    pruned = ask(evo, "user:tester", Steer(action="prune", ref="c", reason="enough"))

    assert "toy-promoted-1" in promoted.done
    assert store.resolve("toy-promoted-1") == best.child
    tips = evo.artifact.individuals()
    assert sorted(tips) == ["a", "b"] and "pruned c" in pruned.done
    for tip in tips.values():
        assert evo.artifact.files(tip) == evo.artifact.files(best.child)
        assert store.git("log", "-1", "--format=%P", tip).decode().split()[-1] == best.child
    assert store.refs("refs/pruned/artifact/toy/c")
    assert ask(evo, "c", MutationTask()).parent == ""  # a pruned agent mutates nothing
    with pytest.raises(Exception, match="no agent"):
        ask(evo, "mallory", MutationTask())
    with pytest.raises(Exception, match="may not steer"):
        ask(evo, "a", Steer(action="prune", ref="b"))  # an agent cannot prune a rival
    assert Artifact(store, "toy").seed(None) == evo.artifact.seed_sha()  # a resume re-seeds nothing
