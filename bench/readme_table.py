"""Write the tables of bench/results/swarm.json, agents.json and evogit.json into the README
(between their markers, ``<!-- swarm-table -->``, ``<!-- agents-table -->``,
``<!-- evogit-table -->``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    result = json.loads((ROOT / "bench" / "results" / "swarm.json").read_text())
    f, ratios = result["figures"], result["ratios"]
    names = [n for n in ("linucb", "random", "local", "centralized", "byzantine_defended",
                         "byzantine_undefended") if f"score_{n}" in f]
    head = {"byzantine_defended": "byzantine, defended*", "byzantine_undefended":
            "byzantine, undefended*"}
    rows = ["| seed | after round 0 | " + " | ".join(head.get(n, n) for n in names) + " |",
            "| --- | --- |" + " --- |" * len(names)]
    for r in f["per_seed"]:
        rows.append(f"| {r['seed']} | {r['linucb_round0']:.3f} | "
                    + " | ".join(f"{r[n]:.3f}" for n in names) + " |")
    rows.append(f"| **mean** | {f['score_round0']:.3f} | "
                + " | ".join(f"**{f[f'score_{n}']:.3f}**" for n in names) + " |")
    skills = sorted(f.get("skills_linucb", {}))
    if skills:
        rows += ["", "| per skill (mean) | " + " | ".join(skills) + " |",
                 "| --- |" + " --- |" * len(skills)]
        for n in names:
            rows.append(f"| {head.get(n, n)} | " + " | ".join(
                f"{f[f'skills_{n}'].get(k, float('nan')):.3f}" for k in skills) + " |")
    parts = [f"linucb / {other} = {ratios[f'linucb_vs_{other}']:.2f}"
             for other in ("centralized", "random", "local") if f"linucb_vs_{other}" in ratios]
    if "byzantine_defended_vs_clean" in ratios:
        parts.append(f"*honest agents' mean with 2 of 8 Byzantine: defended "
                     f"{ratios['byzantine_defended_vs_clean']:.2f}x the clean run, undefended "
                     f"{ratios.get('byzantine_undefended_vs_clean', float('nan')):.2f}x; "
                     f"lessons kept from an attacker: "
                     f"{f.get('byzantine_defended_poisoned_kept', 'n/a')} defended")
    note = (f"\n{', '.join(parts)} ({result['params']['seeds']} seed(s), "
            f"{result['params']['rounds']} rounds, {f.get('heldout_examples', 64)} held-out "
            f"examples, commit {result['git'][:10]}).\n")
    readme = ROOT / "README.md"
    text = readme.read_text()
    table = "<!-- swarm-table -->\n" + "\n".join(rows) + "\n" + note + "<!-- /swarm-table -->"
    text = re.sub(r"<!-- swarm-table -->.*?<!-- /swarm-table -->", table, text, flags=re.S)
    text = _replace(text, "agents-table", agents_table())
    readme.write_text(_replace(text, "evogit-table", evogit_table()))


def agents_table() -> str:
    """Accuracy and agent messages per seed and setting (bench/agents.py)."""
    result = json.loads((ROOT / "bench" / "results" / "agents.json").read_text())
    names = ("none", "random", "matchmaker", "broadcast")
    rows = ["| seed | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for r in result["figures"]["per_seed"]:
        rows.append(f"| {r['seed']} | " + " | ".join(
            f"{r[f'accuracy_{n}']:.3f} ({r[f'messages_{n}']} msgs)" for n in names) + " |")
    f, ratios = result["figures"], result["ratios"]
    rows.append("| **mean** | " + " | ".join(
        f"{f[f'accuracy_{n}']:.3f} ({f[f'messages_{n}']:.0f} msgs)" for n in names) + " |")
    note = (f"\nHeld-out accuracy in the last of {result['params']['rounds']} rounds (and agent "
            f"messages over the run); matchmaker / broadcast: accuracy "
            f"{ratios['matchmaker_accuracy_vs_broadcast']:.2f}x with "
            f"{ratios['matchmaker_messages_vs_broadcast']:.2f}x the messages "
            f"(commit {result['git'][:10]}).\n")
    return "\n".join(rows) + "\n" + note


def evogit_table() -> str:
    """Best fitness per seed and setting at the same number of evaluations (bench/evogit.py)."""
    result = json.loads((ROOT / "bench" / "results" / "evogit.json").read_text())
    names = ("mutation", "random_crossover", "matchmaker_crossover")
    rows = ["| seed | evaluations | mutation only | random crossover | matchmaker crossover |",
            "| --- | --- | --- | --- | --- |"]
    for r in result["figures"]["per_seed"]:
        rows.append(f"| {r['seed']} | {r['evaluations']} | " + " | ".join(
            f"{r[f'best_fitness_{n}']:.4f}" for n in names) + " |")
    f, ratios = result["figures"], result["ratios"]
    rows.append(f"| **mean** | {f['evaluations']} | " + " | ".join(
        f"{f[f'best_fitness_{n}']:.4f}" for n in names) + " |")
    note = (f"\nBest fitness among the seed ({f['seed_fitness']:.4f}) and the first N children "
            f"evaluated; improved on the seed on {f['improved_seeds']} of {f['seeds']} seeds; "
            f"crossover / mutation only {ratios['crossover_vs_mutation']:.3f} "
            f"(commit {result['git'][:10]}).\n")
    return "\n".join(rows) + "\n" + note


def _replace(text: str, marker: str, body: str) -> str:
    block = f"<!-- {marker} -->\n{body}<!-- /{marker} -->"
    return re.sub(rf"<!-- {marker} -->.*?<!-- /{marker} -->", lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    main()
