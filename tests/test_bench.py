"""Benches refuse runs in which agents were unavailable (bench/swarm.py, bench/common.py,
bench/scale_asks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _record(rnd: int, scores: dict[str, float], unavailable: Sequence[str] = (),
            rejected: dict[str, str] | None = None) -> dict[str, Any]:
    return {"round": rnd, "scores": scores, "local_scores": scores,
            "mean_score": sum(scores.values()) / max(len(scores), 1),
            "unavailable": list(unavailable), "rejected": rejected or {}}


def test_scores_of_a_run_where_every_agent_reported_are_reported() -> None:
    from bench.swarm import _scores

    history = [_record(0, {"a-0": 0.25, "a-1": 0.75}), _record(1, {"a-0": 0.5, "a-1": 1.0})]

    assert _scores("run", {"history": history}, rounds=2) == (0.5, 0.75)


@pytest.mark.parametrize(("history", "said"), [
    # the incident: round 1 recorded with every agent unavailable and mean 0.0
    ([_record(0, {"a-0": 0.5, "a-1": 0.5}), _record(1, {}, ["a-0", "a-1"])],
     "round 1: unavailable a-0, a-1"),
    ([_record(0, {"a-0": 0.5}, ["a-1"], {"host-1": "local step: bad score"}),
      _record(1, {"a-0": 0.5, "a-1": 0.5})],
     "round 0: results of host-1 rejected (local step: bad score)"),
    ([_record(0, {"a-0": 0.5, "a-1": 0.5})], "1 of 2 rounds committed"),
])
def test_a_run_with_unavailable_agents_reports_no_score(history: list[dict[str, Any]],
                                                         said: str) -> None:
    # Prepare: the bench's per-run step, in its own process, on a history with a gap
    code = ("import json, sys; from bench.swarm import _scores; "
            "print(_scores('bench/swarm: linucb seed 0', {'history': json.loads(sys.argv[1])}, 2))")

    # Execute
    out = subprocess.run([sys.executable, "-c", code, json.dumps(history)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)

    # Assert: exit status 1, a sentence naming the run and what was missing, no score printed
    assert out.returncode == 1
    assert out.stdout == ""
    assert "bench/swarm: linucb seed 0: refusing to report scores" in out.stderr
    assert said in out.stderr
    assert "Traceback" not in out.stderr


def test_the_ask_bench_refuses_a_run_in_which_asks_failed() -> None:
    # Prepare: host-b holds 15 of its 20 agents, so asks to the other 5 fail (agent.unknown)
    code = ("from bench.scale_asks import measure; "
            "print(measure(20, [200], warmup=20, window=8, seed=0, missing=5))")

    # Execute: the real hosts, a few hundred asks
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)

    # Assert: exit status 1, the failed asks named, no figures printed
    assert out.returncode == 1
    assert out.stdout == ""
    assert "ask(s) failed, refusing to report figures" in out.stderr
    assert "UnknownAgent" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_ask_bench_reports_a_run_in_which_every_ask_was_answered() -> None:
    # Prepare: the same hosts, every agent there
    code = ("import json; from bench.scale_asks import measure, figures; "
            "print(json.dumps(figures(measure(20, [200], warmup=20, window=8, seed=0), 20)))")

    # Execute
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)

    # Assert: BENCH.md's keys, a rate and latencies for the asks and for the raw echo
    assert out.returncode == 0, out.stderr
    fig, ratios, goals = json.loads(out.stdout)
    assert fig["asks_per_s_10k_agents"] > 0 and fig["raw_pyzmq_asks_per_s"] > 0
    assert 0 < fig["ask_p50_us"] <= fig["ask_p99_us"]
    assert isinstance(fig["ask_bytes_per_agent"], int)  # 20 agents: a few pages either way
    assert set(ratios) >= {"asks_vs_raw"} and goals["asks_vs_raw"] == ">= 0.3"
