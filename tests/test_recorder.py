"""The recorder commits a round and the notes that describe it in one transaction."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from swarm.config.schema import load_config
from swarm.errors import LineageError
from swarm.lineage.store import SWARM_BRANCH, LineageStore
from swarm.matching.matchmaker import make_matchmaker
from swarm.matching.profiles import ProfileBuilder
from swarm.runtime.recorder import Recorder
from swarm.wire.messages import AgentReport
from tests.conftest import SMALL


def _adapter(root: Path, seed: str) -> str:
    """An adapter folder as the AdapterStore lays it out (``root/<sha256>/``)."""
    weights = f"weights of {seed}".encode()
    sha = hashlib.sha256(weights).hexdigest()
    (root / sha).mkdir(parents=True)
    (root / sha / "adapter_model.safetensors").write_bytes(weights)
    (root / sha / "adapter_config.json").write_text(json.dumps({"r": 4}))
    return sha


def _recorder(tmp_path: Path) -> Recorder:
    config = load_config(SMALL, [f"swarm.lineage={tmp_path / 'run' / 'lineage'}",
                                 f"model.adapter_store={tmp_path / 'adapters'}"])
    store = LineageStore.open(config.lineage_dir, create=True)
    return Recorder(config, store, config.adapter_store)


#: what the coordinator hands over with every round: its matchmaker's state
MM_STATE = make_matchmaker("linucb", ProfileBuilder(skills=["add"]).dim, seed=0).state()


def _record(rnd: int) -> dict[str, object]:
    return {"round": rnd, "mean_score": 0.5}


def test_round_and_its_notes_land_together_or_not_at_all(tmp_path: Path) -> None:
    # Prepare: round 0 committed (it creates the notes ref), then someone moves the notes ref.
    rec = _recorder(tmp_path)
    root = tmp_path / "adapters"
    rec.commit_round(0, {"a": AgentReport(agent_id="a", adapter=_adapter(root, "a0"),
                                          score=0.25)}, [], _record(0), MM_STATE)
    git = ["git", "--git-dir", str(rec.path)]
    swarm_tip = rec.store.refs()[f"refs/heads/{SWARM_BRANCH}"]
    subprocess.run([*git, "update-ref", "refs/notes/commits", swarm_tip], check=True)
    before = rec.store.refs()
    report = {"a": AgentReport(agent_id="a", adapter=_adapter(root, "a1"), score=0.75)}
    # Execute: round 1's notes lose their compare-and-swap.
    with pytest.raises(LineageError, match="refused"):
        rec.commit_round(1, report, [], _record(1), MM_STATE)
    # Assert: the round itself did not land either, and committing it again works whole.
    assert rec.store.refs() == before
    assert rec.next_round() == 1
    rec.commit_round(1, report, [], _record(1), MM_STATE)
    tip = rec.store.resolve("agent/a")
    assert json.loads(rec.store.get_note(tip) or b"null") == {"round": 1, "score": 0.75}
    assert rec.store.show_json("agent/a", "agents/a/profile.json") == {"round": 1,
                                                                        "score": 0.75}
    assert rec.next_round() == 2
    rec.close()


def test_a_bad_teacher_id_commits_nothing_and_forgets_nothing(tmp_path: Path) -> None:
    # Prepare: round 0 committed for agent a.
    from swarm.wire.messages import PairOutcome

    rec = _recorder(tmp_path)
    root = tmp_path / "adapters"
    rec.commit_round(0, {"a": AgentReport(agent_id="a", adapter=_adapter(root, "a0"),
                                          score=0.25)}, [], _record(0), MM_STATE)
    before = rec.store.refs()
    report = {"a": AgentReport(agent_id="a", adapter=_adapter(root, "a1"), score=0.5)}
    bad = PairOutcome(teacher="b\nagent/a", student="a", accepted=True,
                      adapter=_adapter(root, "ab"), before=0.5, after=0.75)
    # Execute: a teacher id that would be two cat-file requests.
    with pytest.raises(LineageError, match="agent id 'b\\\\nagent/a' is not allowed"):
        rec.commit_round(1, report, [bad], _record(1), MM_STATE)
    # Assert: nothing landed; the same round without the bad outcome commits a's new adapter.
    assert rec.store.refs() == before
    rec.commit_round(1, report, [], _record(1), MM_STATE)
    assert rec.store.show_json("agent/a", "agents/a/profile.json") == {"round": 1, "score": 0.5}
    rec.close()


def test_the_matchmaker_state_handed_over_is_the_one_read_back(tmp_path: Path) -> None:
    # Prepare: a new lineage holds no matchmaker state; one round is committed with one.
    rec = _recorder(tmp_path)
    assert rec.matchmaker_state() is None
    state = make_matchmaker("random", 3, seed=7).state()
    report = {"a": AgentReport(agent_id="a", adapter=_adapter(tmp_path / "adapters", "a0"),
                               score=0.25)}
    # Execute
    rec.commit_round(0, report, [], _record(0), state)
    rec.close()
    reopened = Recorder.open(rec.config)
    # Assert: the state landed on the swarm branch as it was handed over
    assert reopened.matchmaker_state() == state
    assert reopened.store.show_json(SWARM_BRANCH, "matchmaker/state.json") == state
    reopened.close()
