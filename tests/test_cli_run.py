"""``swarm run`` prints the library's run events; ``swarm status`` without a swarm is one line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from swarm.cli.main import main
from swarm.cli.run import ConsoleProgress
from swarm.config import load_config
from swarm.runtime.events import (
    Interrupted,
    Preparing,
    RoundFinished,
    RoundStarted,
    RunFinished,
    RunStarted,
    RunSummary,
)
from swarm.transport.topology import CONTROL_OFFSET, endpoint
from tests.conftest import free_base_port

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

RECORD = {
    "round": 0, "scores": {"a-0": 0.5, "b-0": 0.75}, "mean_score": 0.625,
    "local_scores": {"a-0": 0.5, "b-0": 0.5}, "pairs": [["a-0", "b-0"]],
    "rewards": [{"teacher": "a-0", "student": "b-0", "reward": 0.25, "accepted": True}],
    "unavailable": ["c-0"], "exchange_failures": {}, "rejected": {"host-1": "local step: bad"},
    "seconds": 2.0, "messages": 40,
}


def _printed(*events: object) -> list[str]:
    out = io.StringIO()
    progress = ConsoleProgress(Console(file=out, width=200, highlight=False))
    for event in events:
        progress(event)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def test_console_progress_prints_a_run_as_swarm_run_does(tmp_path: Path) -> None:
    # Prepare
    started = RunStarted("qs", 3, 1, "knexa", "linucb", tmp_path, ("bound off loopback",),
                         tmp_path / "old")
    summary: RunSummary = {"rounds": 1, "history": [RECORD], "lineage": "/l"}

    # Execute
    lines = _printed(Preparing(), started, RoundStarted(0, 2, 1, 3.4),
                     RoundFinished.from_record(RECORD, 20.0), RunFinished("qs", summary),
                     Interrupted())

    # Assert: the lines `swarm run` has always printed, in order
    assert lines[:11] == [
        "preparing the run (a tiny or named model is built on first use)",
        f"swarm qs: 3 agents, 1 rounds, protocol knexa, matchmaker linucb; run dir {tmp_path}",
        "bound off loopback",
        f"the previous run was kept in {tmp_path / 'old'}",
        "round 0: 2 host(s), 3 s in",
        "round 0 mean score 0.625 (2.0 s, 20.0 msgs/s)",
        "  pairs (teacher->student): a-0->b-0",
        "  rewards: b-0 +0.25",
        "  scores: a-0=0.50 b-0=0.75",
        "  unavailable: c-0",
        "  results of host-1 rejected: local step: bad",
    ]
    rows = [line.replace("│", " ").replace("┃", " ").split() for line in lines[11:-6]]
    assert ["agent", "r0"] in rows  # the table: a column per round, a row per agent
    assert ["a-0", "0.50"] in rows and ["b-0", "0.75"] in rows and ["mean", "0.625"] in rows
    assert lines[-6:] == [
        "lineage: /l",
        "inspect it with:",
        "  swarm lineage log -C /l a-0",
        "  swarm lineage graph -C /l -o phylogeny.png",
        "  git -C /l log --graph --all --oneline",
        "interrupted: stopping every process; committed rounds are kept",
    ]


def test_a_round_event_carries_the_committed_record() -> None:
    event = RoundFinished.from_record(RECORD, 1.5)

    assert event.record == RECORD
    assert event.pairs == (("a-0", "b-0"),) and event.rewards[0].reward == 0.25
    assert event.unavailable == ("c-0",) and event.messages_per_s == 1.5


def test_status_without_a_swarm_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    overrides = [f"transport.base_port={free_base_port()}"]
    address = endpoint(load_config(QUICKSTART, overrides).transport, CONTROL_OFFSET)

    code = main(["status", str(QUICKSTART), "--set", overrides[0]])

    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"swarm: error: no swarm answers at {address}"]
