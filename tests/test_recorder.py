"""The recorder commits a round and the notes that describe it in one transaction."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from swarm.adapters.store import AdapterStore
from swarm.config import load_config
from swarm.errors import LineageError
from swarm.lineage.gitstore import GitLineageStore
from swarm.lineage.repo import SWARM_BRANCH
from swarm.matching.profiles import ProfileBuilder
from swarm.matching.registry import create_matchmaker
from swarm.runtime.recorder import Recorder
from swarm.wire.messages import AgentReport
from tests.conftest import SMALL
from tests.support import tiny_lora


def _adapter(root: Path, seed: str) -> str:
    """An adapter put into the machine's store at ``root``, as the model server puts one."""
    number = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)
    with tempfile.TemporaryDirectory() as tmp:
        return AdapterStore(root).put(tiny_lora(Path(tmp) / "a", seed=number, dim=4096)).sha256


def _recorder(tmp_path: Path) -> Recorder:
    config = load_config(SMALL, [f"swarm.lineage={tmp_path / 'run' / 'lineage'}",
                                 f"model.adapter_store={tmp_path / 'adapters'}"])
    store = GitLineageStore.open(config.lineage_dir, create=True,
                                 adapter_store=config.adapter_store)
    return Recorder(config, store, config.adapter_store)


#: what the coordinator hands over with every round: its matchmaker's state
MM_STATE = create_matchmaker("linucb", ProfileBuilder(skills=["add"]).dim, seed=0).state()


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


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (inode, mtime_ns), to tell whether anything was written."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_commit_and_a_resume_copy_no_adapter(tmp_path: Path) -> None:
    # Prepare: the model server's adapters in the machine's store.
    rec = _recorder(tmp_path)
    root = tmp_path / "adapters"
    a0, b0 = _adapter(root, "a0"), _adapter(root, "b0")
    before = _snapshot(root)
    # Execute: commit a round, then resume the lineage the way a restarted coordinator does.
    rec.commit_round(0, {"a": AgentReport(agent_id="a", adapter=a0, score=0.25),
                         "b": AgentReport(agent_id="b", adapter=b0, score=0.5)}, [], _record(0),
                    MM_STATE)
    rec.close()
    config = rec.config
    resumed = Recorder.open(config)
    # Assert: the lineage points at the store's entries; no file of the store was added or
    # rewritten (no second copy anywhere, nothing copied back), and the lineage holds no weights.
    assert resumed.adapters() == {"a": a0, "b": b0}
    assert resumed.store.adapters.root == root and resumed.next_round() == 1
    assert _snapshot(root) == before
    weights = (root / a0 / "adapter_model.safetensors").stat().st_size  # 256 KiB
    in_git = sum(p.stat().st_size for p in (config.lineage_dir / "objects").rglob("*")
                 if p.is_file())
    assert in_git < weights / 8 and not (config.lineage_dir / "cas").exists()
    pointer = resumed.store.show_json("agent/a", "agents/a/adapter.json")
    assert pointer["sha256"] == a0 and pointer["size"] == weights
    assert resumed.store.fsck() == []
    resumed.close()


def test_resume_refuses_another_store_and_names_a_lost_adapter(tmp_path: Path) -> None:
    # Prepare: a committed round.
    rec = _recorder(tmp_path)
    root = tmp_path / "adapters"
    a0 = _adapter(root, "a0")
    rec.commit_round(0, {"a": AgentReport(agent_id="a", adapter=a0, score=0.25)}, [], _record(0),
                     MM_STATE)
    rec.close()
    # Execute / Assert: resuming with another model.adapter_store is refused, naming both stores.
    moved = load_config(SMALL, [f"swarm.lineage={tmp_path / 'run' / 'lineage'}",
                                f"model.adapter_store={tmp_path / 'elsewhere'}"])
    with pytest.raises(LineageError, match=f"keeps its adapters in {root}, not in "
                                           f"{tmp_path / 'elsewhere'}"):
        Recorder.open(moved)
    # ... and an adapter deleted from the store is named, not silently trained from scratch.
    AdapterStore(root).remove(a0)
    with pytest.raises(LineageError, match=f"adapter {a0} committed on agent/a is missing"):
        Recorder.open(rec.config)


def test_the_matchmaker_state_handed_over_is_the_one_read_back(tmp_path: Path) -> None:
    # Prepare: a new lineage holds no matchmaker state; one round is committed with one.
    rec = _recorder(tmp_path)
    assert rec.matchmaker_state() is None
    state = create_matchmaker("random", 3, seed=7).state()
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
