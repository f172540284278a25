"""Write the table of bench/results/swarm.json into the README (between its markers)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    result = json.loads((ROOT / "bench" / "results" / "swarm.json").read_text())
    rows = ["| seed | after round 0 | linucb | random | local |", "| --- | --- | --- | --- | --- |"]
    for r in result["figures"]["per_seed"]:
        rows.append(f"| {r['seed']} | {r['linucb_round0']:.3f} | {r['linucb']:.3f} | "
                    f"{r['random']:.3f} | {r['local']:.3f} |")
    f = result["figures"]
    rows.append(f"| **mean** | {f['score_round0']:.3f} | **{f['score_linucb']:.3f}** | "
                f"{f['score_random']:.3f} | {f['score_local']:.3f} |")
    ratios = result["ratios"]
    note = (f"\nlinucb / random = {ratios['linucb_vs_random']:.2f}, linucb / local = "
            f"{ratios['linucb_vs_local']:.2f} ({result['params']['seeds']} seed(s), "
            f"{result['params']['rounds']} rounds, commit {result['git'][:10]}).\n")
    readme = ROOT / "README.md"
    text = readme.read_text()
    table = "<!-- swarm-table -->\n" + "\n".join(rows) + "\n" + note + "<!-- /swarm-table -->"
    readme.write_text(re.sub(r"<!-- swarm-table -->.*?<!-- /swarm-table -->", table, text,
                             flags=re.S))


if __name__ == "__main__":
    main()
