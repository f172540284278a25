"""knexa's options in a real swarm: distillation from two teachers with replay, per-skill scores.

Real processes, the session's real model server (vLLM + trainer), real lineage.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from swarm.config import load_config
from swarm.runtime.run import run_swarm
from tests.conftest import SMALL, free_base_port

pytestmark = pytest.mark.slow


def test_distillation_from_two_teachers_with_replay_runs_and_scores_every_skill(
        tmp_path: Path, model_server: list[str]) -> None:
    lineage = tmp_path / "run" / "lineage"
    config = load_config(SMALL, [
        *model_server, f"swarm.lineage={lineage}", f"transport.base_port={free_base_port()}",
        "protocol.exchange=distill", "protocol.replay=0.5", "protocol.distill_examples=32",
        "protocol.teachers=2", "matchmaker.features=directed"])

    summary = run_swarm(config)

    assert summary is not None
    history = summary["history"]
    agents = sorted(history[0]["scores"])
    for record in history:
        assert not record["unavailable"] and not record["exchange_failures"]
        # every agent is a student of two teachers, and is scored on every skill
        students = [r["student"] for r in record["rewards"]]
        assert sorted(students) == sorted(agents * 2)
        assert set(record["skill_scores"]) == set(agents)
        for per_skill in record["skill_scores"].values():
            assert set(per_skill) == {"add", "reverse"}
            assert all(0.0 <= v <= 1.0 for v in per_skill.values())
        assert set(record["skill_means"]) == {"add", "reverse"}
    profile = json.loads(subprocess.run(
        ["git", "-C", str(lineage), "show", f"agent/{agents[0]}:agents/{agents[0]}/profile.json"],
        capture_output=True, text=True, check=True).stdout)
    assert set(profile["skills"]) == {"add", "reverse"}
    state = json.loads(subprocess.run(
        ["git", "-C", str(lineage), "show", "swarm:matchmaker/state.json"],
        capture_output=True, text=True, check=True).stdout)
    assert state["features"] == "directed" and state["updates"] == len(agents) * 2 * 2
