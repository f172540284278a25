"""Rerun benches on this checkout and on a reference checkout, interleaved, and compare.

    python bench/compare.py --reference /path/to/ref-checkout [--runs 3] transport lineage scale

Each bench runs ``--runs`` times in each tree, alternating reference and current
(so both see the same machine load; which goes first alternates from run to run,
so neither always follows the other's leftovers), one at a time. The median of each ratio
over the runs is compared: ``ratios`` in ``bench/results/compare.json`` are the
current median over the reference median, one per bench ratio, and a goal
holds when the current code is no more than 10% worse than the reference.
Each tree's bench JSON of its last run stays in its own ``bench/results/``.

The reference checkout needs its own environment (a ``.venv`` whose editable
install points at it); ``--reference-python`` names its interpreter.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, git_head, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.10
LOWER_IS_BETTER = ("rtt", "rss")  # latencies and memory; every other ratio is a rate


def lower_is_better(key: str, goal: str | None) -> bool:
    """Whether a smaller value of ratio ``key`` is the better one."""
    if goal:
        return goal.startswith("<=")
    return any(part in key for part in LOWER_IS_BETTER) or key.endswith(("_s", "_bytes"))


def run_once(tree: Path, python: str, bench: str, extra: list[str]) -> dict[str, Any]:
    """Run ``bench/<bench>.py`` in ``tree`` and return its result JSON."""
    out = tree / "bench" / "results" / f"{bench}.json"
    before = out.stat().st_mtime if out.exists() else 0.0
    started = time.monotonic()
    proc = subprocess.run([python, f"bench/{bench}.py", *extra], cwd=tree,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists() or out.stat().st_mtime == before:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"{bench} failed in {tree} (exit {proc.returncode})")
    print(f"  {bench} in {tree.name or tree}: {time.monotonic() - started:.0f} s", flush=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benches", nargs="+")
    parser.add_argument("--reference", type=Path, required=True, help="reference checkout")
    parser.add_argument("--reference-python", default="",
                        help="its interpreter (default: REFERENCE/.venv/bin/python)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--name", default="compare",
                        help="result file bench/results/NAME.json (default: compare)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the current tree's bench JSON of its median run "
                        "(default: its last run)")
    args = parser.parse_args()
    ref_python = args.reference_python or str(args.reference / ".venv" / "bin" / "python")
    trees = {"reference": (args.reference.resolve(), ref_python),
             "current": (ROOT, sys.executable)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {b: {"reference": [], "current": []}
                                                        for b in args.benches}
    for i in range(args.runs):
        print(f"run {i + 1} of {args.runs}", flush=True)
        for bench in args.benches:
            # alternate which tree goes first: a run's leftovers (dirty pages being
            # written back, a warm page cache) must not always favour the same tree
            order = list(trees.items()) if i % 2 == 0 else list(reversed(trees.items()))
            for label, (tree, python) in order:
                runs[bench][label].append(run_once(tree, python, bench, []))
                if label == "current":
                    shutil.copy(RESULTS / f"{bench}.json", RESULTS / f".{bench}.run{i}.json")
    figures: dict[str, Any] = {"reference_git": runs[args.benches[0]]["reference"][0]["git"],
                               "current_git": git_head()}
    ratios: dict[str, float] = {}
    goals: dict[str, str] = {}
    for bench in args.benches:
        ref_runs, cur_runs = runs[bench]["reference"], runs[bench]["current"]
        for key in sorted(set(ref_runs[0]["ratios"]) & set(cur_runs[0]["ratios"])):
            ref = statistics.median(r["ratios"][key] for r in ref_runs)
            cur = statistics.median(r["ratios"][key] for r in cur_runs)
            name = f"{bench}.{key}"
            figures[f"{name}.reference_runs"] = [round(r["ratios"][key], 4) for r in ref_runs]
            figures[f"{name}.current_runs"] = [round(r["ratios"][key], 4) for r in cur_runs]
            if ref == 0:
                continue
            ratios[name] = cur / ref
            lower = lower_is_better(key, cur_runs[0].get("goals", {}).get(key))
            goals[name] = f"<= {1 + TOLERANCE}" if lower else f">= {1 - TOLERANCE}"
        # the committed bench JSON is the current tree's median run of its first ratio
        first = sorted(cur_runs[0]["ratios"])[0] if cur_runs[0]["ratios"] else None
        if args.keep and first:
            order = sorted(range(len(cur_runs)), key=lambda j: cur_runs[j]["ratios"][first])
            shutil.copy(RESULTS / f".{bench}.run{order[len(order) // 2]}.json",
                        RESULTS / f"{bench}.json")
        for j in range(len(cur_runs)):
            (RESULTS / f".{bench}.run{j}.json").unlink(missing_ok=True)
    write_result(args.name, {"benches": args.benches, "runs": args.runs,
                             "reference": str(args.reference), "tolerance": TOLERANCE},
                 figures, ratios, goals)


if __name__ == "__main__":
    main()
