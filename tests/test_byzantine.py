"""A Byzantine agent in a real swarm: it attacks, lies, and no honest agent keeps its poison.

Real processes, the session's real model server (vLLM + trainer), real merges,
a real lineage; the ``byzantine`` role's settings and its placement are
checked without a swarm.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from swarm.adapters.store import AdapterStore
from swarm.config import load_config
from swarm.errors import ConfigError
from swarm.runtime.population import build_population, byzantine_ids
from swarm.runtime.run import run_swarm
from swarm.serving.merging import adapter_deltas
from tests.conftest import SMALL, free_base_port

QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def test_attackers_are_spread_over_the_groups_and_take_the_role() -> None:
    config = load_config(QUICKSTART, ["byzantine.count=3", "byzantine.settings.attack=scale"])

    assert byzantine_ids(config) == ["arith-1", "text-1", "rev-1"]
    roles = {s.agent_id: (s.role, s.settings) for s in build_population(config)}
    assert roles["text-1"][0] == "byzantine" and roles["text-1"][1].attack == "scale"
    assert roles["text-0"][0] == "learner"
    with pytest.raises(ConfigError, match="9 attackers in a swarm of 8"):
        byzantine_ids(load_config(QUICKSTART, ["byzantine.count=9"]))
    with pytest.raises(ConfigError, match="attack"):
        load_config(QUICKSTART, ["byzantine.settings.attack=bribe"])


@pytest.mark.slow
def test_no_honest_agent_keeps_a_byzantine_lesson(tmp_path: Path, model_server: list[str]) -> None:
    # Prepare: 4 agents, one Byzantine (sign-flipped adapters x4, score 1.0, a perfect profile);
    # the defences: every lesson validated alone, kept only if the score rises, median mix
    lineage = tmp_path / "run" / "lineage"
    config = load_config(SMALL, [
        *model_server, f"swarm.lineage={lineage}", f"transport.base_port={free_base_port()}",
        "byzantine.count=1", "protocol.teachers=2", "protocol.accept=better",
        "protocol.aggregate=median", "matchmaker.features=concat", "agents.0.lora.steps=60",
        "agents.1.lora.steps=60"])
    (attacker,) = byzantine_ids(config)

    # Execute
    summary = run_swarm(config)

    # Assert: it lied, it taught (it always looks best), and nobody kept what it taught
    assert summary is not None
    history = summary["history"]
    assert len(history) == config.swarm.rounds and not any(r["unavailable"] for r in history)
    assert all(r["local_scores"][attacker] == 1.0 for r in history)
    assert all(v == 1.0 for v in history[0]["skill_scores"][attacker].values())
    lessons = [r for rec in history for r in rec["rewards"] if r["teacher"] == attacker]
    assert lessons, "the attacker was never anyone's teacher"
    assert not [r for r in lessons if r["accepted"]], f"poison kept: {lessons}"
    assert all(r["reward"] <= 0.0 for r in lessons)
    # what it published is in the store, finite, and in no honest agent's adapter history
    published = _adapters(lineage, attacker)
    store = AdapterStore(Path(next(o.split("=", 1)[1] for o in model_server
                                   if o.startswith("model.adapter_store="))))
    for sha in published:
        assert all(np.isfinite(d).all() for d in adapter_deltas(store.path(sha)).values())
    for agent in (a for a in history[-1]["scores"] if a != attacker):
        made_from = {p for pointer in _pointers(lineage, agent) for p in pointer.get("parents", [])}
        assert not made_from & published, f"{agent} was made from the attacker's adapters"


def _pointers(lineage: Path, agent: str) -> list[dict]:
    """Every version of ``agents/<agent>/adapter.json`` on the agent's branch."""
    commits = subprocess.run(["git", "-C", str(lineage), "log", "--format=%H", f"agent/{agent}"],
                             capture_output=True, text=True, check=True).stdout.split()
    out = []
    for commit in commits:
        shown = subprocess.run(["git", "-C", str(lineage), "show",
                                f"{commit}:agents/{agent}/adapter.json"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            out.append(json.loads(shown.stdout))
    return out


def _adapters(lineage: Path, agent: str) -> set[str]:
    return {pointer["sha256"] for pointer in _pointers(lineage, agent)}
