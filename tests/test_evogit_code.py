"""EvoGit's code evolution (configs/evogit-code.yaml): the bin-packing artifact's mechanics.

The evolution service runs with the config's own protocol settings on a real git lineage,
and every version is scored by the artifact's real ``score.py`` in the real sandbox. In place
of the config's LLM, scripted mutation operators rewrite the section the service hands out:
first fit into first fit decreasing (fewer bins: kept), code that does not compile, loses an
item, overfills a bin or prints a score of its own (failed: never kept), and two edits of
different functions that a crossover merges cleanly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from swarm.config import load_config
from swarm.lineage.gitstore import GitLineageStore
from swarm.protocols.base import ServiceContext
from swarm.protocols.evogit import Crossover, EvogitSettings, MutationTask, Section
from swarm.protocols.evolution import Evolution
from tests.test_evogit import AGENTS, ask, edit

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "evogit-code.yaml"
SEED = ROOT / "configs" / "artifacts" / "binpack"

SEED_BINS, FFD_BINS, BF_BINS = 26.98, 25.32, 26.64  # mean bins used: first fit, decreasing, best fit

FIRST_FIT = """\
        for i, load in enumerate(loads):
            if fits(load, item, capacity):
                bins[i].append(item)
                loads[i] = load + item
                break
        else:
"""
BEST_FIT = """\
        room = [(load, i) for i, load in enumerate(loads) if fits(load, item, capacity)]
        if room:
            i = max(room)[1]
            bins[i].append(item)
            loads[i] += item
        else:
"""
FORGED = """\
    import atexit
    import json
    fake = json.dumps({"status": "ok", "fitness": 0.0, "detail": "forged"})
    print(fake)
    atexit.register(print, fake)
    order = list(items)
"""


def make(tmp: Path) -> Evolution:
    """The config's evolution service on a fresh lineage, its seed evaluated."""
    settings: EvogitSettings = load_config(CONFIG).protocol.settings
    store = GitLineageStore.open(tmp / "lineage", create=True)
    evo = Evolution(msgspec.structs.replace(settings, seed=str(SEED)),
                    ServiceContext(store=store, agents=AGENTS, seed=0, rounds=12))
    asyncio.run(evo.start(0))
    return evo


def task_of(evo: Evolution, agent: str) -> Section:
    task = ask(evo, agent, MutationTask())
    assert task.path == "binpack.py"
    return task


def test_the_config_runs_evogit_on_binpack_behind_the_openai_backend() -> None:
    config = load_config(CONFIG)
    settings = config.protocol.settings
    assert config.model.backend == "openai"
    assert config.model.settings.openai_url.startswith("http://")
    assert config.protocol.name == "evogit" and isinstance(settings, EvogitSettings)
    assert [g.role for g in config.agents] == ["evolver"]
    assert settings.artifact == "binpack" and settings.mutable == ["binpack.py"]
    assert settings.line_pattern == "" and settings.section_lines == 128
    assert settings.crossover_every == 3 and settings.evaluator == "command"
    assert (ROOT / settings.seed).resolve() == SEED.resolve()
    assert sorted(p.name for p in SEED.iterdir() if p.suffix == ".py") == ["binpack.py", "score.py"]


def test_the_seed_packs_validly_and_scores_minus_its_mean_bins(tmp_path: Path) -> None:
    evo = make(tmp_path)
    seed = evo.artifact.seed_sha()
    assert seed is not None

    result = evo.artifact.evaluation(seed)

    assert result is not None and result["status"] == "ok"
    assert result["fitness"] == pytest.approx(-SEED_BINS)
    assert "50 instances of 60 items" in result["detail"] and "lower bound" in result["detail"]


def test_first_fit_decreasing_is_kept_for_fewer_bins(tmp_path: Path) -> None:
    evo = make(tmp_path)
    task = task_of(evo, "a")
    lines = (SEED / "binpack.py").read_text().splitlines()

    done = ask(evo, "a", edit(task, "order = list(items)", "order = sorted(items, reverse=True)",
                              "first fit decreasing"))

    assert (task.start, task.end) == (1, len(lines))  # under 64 lines: the section is the file
    assert done.status == "ok" and done.accepted
    assert done.fitness == pytest.approx(-FFD_BINS) and done.parent_fitness == pytest.approx(-SEED_BINS)
    assert evo.artifact.individuals()["a"] == done.child
    assert b"sorted(items, reverse=True)" in evo.artifact.files(done.child)["binpack.py"]


@pytest.mark.parametrize(("old", "new", "why"), [
    ("-> list[list[float]]:\n    \"\"\"The bins", "-> list[list[float]]\n    \"\"\"The bins",
     "SyntaxError"),
    ("order = list(items)", "order = list(items)[1:]", "items lost"),
    ("return load + item <= capacity + EPSILON", "return load + item <= capacity + 0.2",
     "> capacity"),
    ("    order = list(items)\n", FORGED, "not JSON"),
], ids=["syntax-error", "loses-an-item", "over-capacity", "prints-its-own-score"])
def test_a_broken_mutation_is_evaluated_as_failed_and_never_selected(
        tmp_path: Path, old: str, new: str, why: str) -> None:
    evo = make(tmp_path)
    seed = evo.artifact.seed_sha()
    task = task_of(evo, "b")

    done = ask(evo, "b", edit(task, old, new, f"broken: {why}"))

    assert done.status == "failed" and done.fitness is None and not done.accepted
    assert why in done.detail
    assert evo.artifact.evaluation(done.child)["status"] == "failed"  # noted on the commit's tree
    assert evo.artifact.individuals()["b"] == seed  # the parent stays
    assert evo.round_record(0)["best"]["fitness"] == pytest.approx(-SEED_BINS)


def test_a_crossover_of_edits_to_different_functions_merges_cleanly(tmp_path: Path) -> None:
    evo = make(tmp_path)
    ta, tb = task_of(evo, "a"), task_of(evo, "b")
    a = ask(evo, "a", edit(ta, "order = list(items)", "order = sorted(items, reverse=True)",
                           "first fit decreasing"))
    b = ask(evo, "b", edit(tb, FIRST_FIT, BEST_FIT, "best fit"))
    assert a.accepted and b.accepted and b.fitness == pytest.approx(-BF_BINS)

    child = ask(evo, "a", Crossover(theirs="b"))

    parents = evo.ctx.store.git("log", "-1", "--format=%P", child.child).decode().split()
    text = evo.artifact.files(child.child)["binpack.py"].decode()
    assert parents == [a.child, b.child]  # a real merge commit, ours first
    assert evo.stats["conflicts"] == 0 and "<<<<<<<" not in text
    assert "sorted(items, reverse=True)" in text and "max(room)" in text  # both edits
    assert child.status == "ok" and child.fitness == pytest.approx(-FFD_BINS)  # best fit decreasing
    assert not child.accepted  # it only ties parent a: a merge must beat both parents
    assert evo.artifact.individuals()["a"] == a.child
