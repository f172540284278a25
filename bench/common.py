"""What every benchmark shares: the result file in the shape of BENCH.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU count, platform, python and GPU (None on a CPU machine)."""
    gpu = None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5)
        gpu = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpus": os.cpu_count(), "platform": f"{platform.system()}-{platform.machine()}",
            "python": platform.python_version(), "gpu": gpu}


def git_head() -> str:
    """The commit the run measured (with ``+dirty`` when the tree has changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "swarm",
                                "agents", "protocols", "bench"], capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def refuse_unavailable(label: str, history: Sequence[Mapping[str, Any]], rounds: int) -> None:
    """Exit non-zero, naming rounds and agents, unless every agent reported in every round.

    A score averaged over the agents that happened to report is not the
    swarm's score: a run in which agents were unavailable (a host dropped, its
    results rejected, an agent that failed its step) or that ended early
    reports nothing. A bench whose subject is availability reports it as its
    figure instead of calling this.

    Raises:
        SystemExit: with the reason (exit status 1).
    """
    problems = []
    if len(history) != rounds:
        problems.append(f"{len(history)} of {rounds} rounds committed")
    for record in history:
        missing = sorted(record.get("unavailable") or [])
        rejected = record.get("rejected") or {}
        if missing:
            names = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            problems.append(f"round {record['round']}: unavailable {names}")
        for host, why in sorted(rejected.items()):
            problems.append(f"round {record['round']}: results of {host} rejected ({why})")
    if problems:
        raise SystemExit(f"{label}: refusing to report scores: {'; '.join(problems)}")


def check_goal(value: float, goal: str) -> bool:
    """Whether ``value`` meets a goal written as ``>= x`` or ``<= x``."""
    op, _, bound = goal.partition(" ")
    return value >= float(bound) if op == ">=" else value <= float(bound)


def write_result(name: str, params: dict[str, Any], figures: dict[str, Any],
                 ratios: dict[str, float], goals: dict[str, str]) -> Path:
    """Write ``bench/results/<name>.json``, print a table and which goals hold."""
    result = {
        "bench": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_head(),
        "machine": machine(),
        "params": params,
        "figures": figures,
        "ratios": ratios,
        "goals": goals,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{name}: figures")
    for key, value in figures.items():
        if not isinstance(value, list | dict):
            print(f"  {key:40s} {value}")
    print(f"{name}: ratios")
    for key, value in ratios.items():
        print(f"  {key:40s} {value:.3f}")
    for key, goal in goals.items():
        value = ratios.get(key, figures.get(key))
        if isinstance(value, int | float):
            verdict = "holds" if check_goal(float(value), goal) else "MISSED"
            print(f"  goal {key} {goal}: {verdict} ({value:.3f})")
    print(f"wrote {path}")
    return path
