"""The evogit protocol: best fitness per generation for three ways of evolving an artifact.

Runs of ``configs/evogit.yaml`` (4 evolvers on SmolLM2-135M-Instruct evolving the
parameter file of a bin-packing rule; fitness: lower bound / bins used over
seeded instances, by ``score.py`` in the sandbox), per seed and per setting, in
one run of this script, with one model server for all of them:

- ``mutation``: mutation only (``protocol.crossover_every=0``);
- ``random_crossover``: mutation, and every 2nd round a crossover of random pairs;
- ``matchmaker_crossover``: the same with the pairs the matchmaker (LinUCB)
  chooses, rewarded with the child's fitness gain.

The same number of evaluations for each: a crossover round evaluates 2 merges
besides its 4 mutations, so mutation-only runs more rounds, and each setting's
figure is the best fitness among the seed and its first N evaluated children
(in order; N: the fewest any setting evaluated on that
seed; a child whose tree was evaluated before, e.g. a merge that reproduces a
parent, is read from the cache and costs no evaluation). The best individual
after each round is reported too. A run in which an
agent was unavailable reports nothing.

Goals (issue 16): the best fitness improves on the seed artifact on every seed;
crossover is at least as good as mutation only (``crossover_vs_mutation >= 1``: the
worse of the two crossover settings, each of which has its own ratio too).

    python bench/evogit.py            # 3 seeds
    python bench/evogit.py --quick    # 1 seed, fewer rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agents import SharedServer, free_base_port  # noqa: E402
from bench.common import refuse_unavailable, write_result  # noqa: E402
from swarm.config import load_config  # noqa: E402
from swarm.runtime.run import run_swarm  # noqa: E402

CONFIG = ROOT / "configs" / "evogit.yaml"
SETTINGS = {
    "mutation": ["protocol.crossover_every=0"],
    "random_crossover": ["protocol.crossover_every=2", "protocol.crossover=random"],
    "matchmaker_crossover": ["protocol.crossover_every=2", "protocol.crossover=matchmaker"],
}


def one_run(tmp: Path, server: SharedServer, seed: int, setting: str,
            rounds: int) -> dict[str, Any]:
    """One setting on one seed: best fitness and children evaluated after each round."""
    name = f"{setting}-{seed}"
    config = load_config(CONFIG, [
        f"swarm.name=evo-{name}", f"swarm.lineage={tmp / name / 'lineage'}",
        f"transport.base_port={free_base_port()}", f"model.server={server.address}",
        f"model.adapter_store={tmp / 'adapters'}", f"swarm.seed={seed}",
        f"swarm.rounds={rounds}", "protocol.human_every=0", *SETTINGS[setting]])
    started = time.time()
    summary = run_swarm(config)
    if summary is None:
        raise SystemExit(f"{name}: interrupted")
    history = summary["history"]
    refuse_unavailable(name, history, rounds)
    best = [float(r["artifact"]["best"]["fitness"]) for r in history]
    stats = [r["artifact"]["stats"] for r in history]
    children = [int(s.get("mutations", 0)) + int(s.get("merges", 0)) for s in stats]
    # the fitness of every child whose tree was evaluated (not read from the cache: a merge
    # that reproduces a parent costs nothing), in order (None: failed); for equal budgets
    evaluated = [e["fitness"] for r in history for e in r["artifact"]["events"]
                 if e["kind"] in ("mutate", "merge") and e.get("evaluated", True)]
    out = {"best_per_round": best, "children_per_round": children, "children": evaluated,
           "invalid": int(stats[-1].get("invalid", 0)),
           "evaluations": int(stats[-1].get("evaluations", 0)),
           "seconds": round(time.time() - started, 1)}
    print(f"  seed {seed} {setting:>20}: best {best} after {children} children, "
          f"{out['seconds']:.0f} s", flush=True)
    return out


def at_budget(run: dict[str, Any], budget: int, seed_fitness: float) -> float:
    """The best fitness among the seed and the first ``budget`` children evaluated."""
    return max([seed_fitness, *(f for f in run["children"][:budget] if f is not None)])


def _seed_fitness() -> float:
    """The seed artifact's fitness, evaluated as the protocol evaluates it."""
    from swarm.protocols.evaluators import read_score
    from swarm.sandbox import run_sandboxed

    seed_dir = ROOT / "configs" / "artifacts" / "packing"
    files = {p.name: p.read_bytes() for p in seed_dir.iterdir() if p.is_file()}
    result = run_sandboxed([sys.executable, "score.py"], files)
    return float(read_score(result.stdout, "command")["fitness"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 crossover rounds")
    args = parser.parse_args()
    seeds, rounds = ([0], 2) if args.quick else ([0, 1, 2], 4)
    per_seed: list[dict[str, Any]] = []
    seed_fitness = _seed_fitness()
    with tempfile.TemporaryDirectory() as tmp, SharedServer(Path(tmp), CONFIG) as server:
        for seed in seeds:
            row: dict[str, Any] = {"seed": seed}
            runs = {s: one_run(Path(tmp), server, seed, s,
                               rounds + (rounds // 2 if s == "mutation" else 0))
                    for s in SETTINGS}
            budget = min(len(r["children"]) for r in runs.values())
            for setting, got in runs.items():
                row[f"best_fitness_{setting}"] = at_budget(got, budget, seed_fitness)
                row[f"best_per_round_{setting}"] = got["best_per_round"]
                row[f"children_per_round_{setting}"] = got["children_per_round"]
                row[f"invalid_{setting}"] = got["invalid"]
            row["evaluations"] = budget
            per_seed.append(row)
    figures: dict[str, Any] = {"seed_fitness": seed_fitness, "seeds": len(seeds)}
    for setting in SETTINGS:
        figures[f"best_fitness_{setting}"] = round(statistics.mean(
            r[f"best_fitness_{setting}"] for r in per_seed), 6)
    figures["improved_seeds"] = sum(
        all(r[f"best_fitness_{s}"] > seed_fitness for s in SETTINGS) for r in per_seed)
    figures["evaluations"] = round(statistics.mean(r["evaluations"] for r in per_seed), 1)
    figures["per_seed"] = per_seed
    mutation = figures["best_fitness_mutation"]
    crossover = min(figures["best_fitness_random_crossover"],
                    figures["best_fitness_matchmaker_crossover"])
    ratios = {"crossover_vs_mutation": crossover / mutation if mutation else 0.0,
              "random_crossover_vs_mutation":
                  figures["best_fitness_random_crossover"] / mutation if mutation else 0.0,
              "matchmaker_crossover_vs_mutation":
                  figures["best_fitness_matchmaker_crossover"] / mutation if mutation else 0.0,
              "improved_seeds_share": figures["improved_seeds"] / len(seeds)}
    goals = {"crossover_vs_mutation": ">= 1", "improved_seeds_share": ">= 1"}
    params = {"config": "configs/evogit.yaml", "seeds": seeds, "rounds": rounds,
              "agents": 4, "model": "smollm2-135m-instruct", "backend": "vllm",
              "settings": SETTINGS, "quick": args.quick}
    write_result("evogit", params, figures, ratios, goals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
