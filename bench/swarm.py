"""Does the swarm learn, how far from centralized training, and does it survive Byzantine peers?

Runs the quickstart swarm (real processes, real vLLM model server, real LoRA
training) on the same seeds with these settings, one model server shared by
all runs so engine start-up is paid once:

- ``linucb``: knexa with the LinUCB matchmaker (the quickstart as it is);
- ``random``: the same with random pairing;
- ``local``: every agent trains alone, nothing is exchanged;
- ``centralized``: one adapter trained on the union of all agents' training
  data with as many training steps as the ``linucb`` run spent in all (local
  steps and distillation), evaluated on the same held-out mixture;
- with ``--byzantine``: ``byzantine_defended``/``byzantine_undefended``: the quickstart
  with 2 of its 8 agents Byzantine (``byzantine.count: 2``, spread over the
  groups), with the defences on (``DEFENCES``) and off (``NO_DEFENCES``);
  their figures are the honest agents' mean, beside the clean run's.

Figures: the mean held-out score after round 0's local step
(``score_round0``) and after the last round, per setting, averaged over seeds,
per skill as well (``skills_<setting>``); ratios: linucb over centralized,
random, local and round 0; Byzantine: honest mean with defences on over the
clean linucb run's, and the count of lessons honest agents kept from a
Byzantine teacher. A run in which any agent was unavailable in any round, or
that stopped early, reports no score: the bench exits non-zero naming the run,
rounds and agents (``bench.common.refuse_unavailable``).

``--options`` instead runs the linucb setting once per exchange option
(merge methods, distillation with replay, several teachers, a final global
merge) on ``--seeds`` seeds and writes ``bench/results/swarm-options.json``:
how the quickstart's defaults were picked.

    python bench/swarm.py                 # 3 seeds: the settings above
    python bench/swarm.py --byzantine     # and the two Byzantine settings
    python bench/swarm.py --options --seeds 1
    python bench/swarm.py --quick         # 1 seed, 2 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench.common import refuse_unavailable, write_result  # noqa: E402
from swarm.config import load_config  # noqa: E402
from swarm.errors import SwarmError  # noqa: E402
from swarm.runtime.local_launcher import start_model_server  # noqa: E402
from swarm.runtime.population import build_population, byzantine_ids  # noqa: E402
from swarm.runtime.run import run_swarm  # noqa: E402
from swarm.transport.topology import endpoint  # noqa: E402

SETTINGS = {
    "linucb": ["protocol.name=knexa", "matchmaker.kind=linucb"],
    "random": ["protocol.name=knexa", "matchmaker.kind=random"],
    "local": ["protocol.name=local"],
}
#: the defences knexa can switch on against Byzantine teachers
DEFENCES = ["protocol.validate=true", "protocol.accept=better", "protocol.screen=true",
            "matchmaker.features=directed"]
NO_DEFENCES = ["protocol.validate=false", "protocol.screen=false",
               "matchmaker.features=symmetric"]
BYZANTINE = ["byzantine.count=2"]
#: one linucb run per option (``--options``), beside the quickstart as it is
OPTIONS = {
    "quickstart": [],
    "merge_svd": ["protocol.exchange=merge", "protocol.merge_method=svd",
                  "protocol.final_merge=none"],
    "merge_ties": ["protocol.exchange=merge", "protocol.merge_method=ties_svd",
                   "protocol.final_merge=none"],
    "merge_dare": ["protocol.exchange=merge", "protocol.merge_method=dare_ties_svd",
                   "protocol.final_merge=none"],
    "merge_cat": ["protocol.exchange=merge", "protocol.merge_method=cat",
                  "protocol.merge_weight=0.5", "protocol.final_merge=none"],
    "distill_replay": ["protocol.exchange=distill", "protocol.replay=0.5",
                       "protocol.final_merge=none"],
    "teachers_2": ["protocol.exchange=merge", "protocol.teachers=2", "protocol.aggregate=mean",
                   "protocol.final_merge=none"],
    "final_merge_mean": ["protocol.exchange=merge", "protocol.final_merge=mean"],
    "final_merge_ties": ["protocol.exchange=merge", "protocol.final_merge=ties_svd"],
    "distill_teachers_2": ["protocol.exchange=distill", "protocol.replay=0.5",
                           "protocol.teachers=2", "protocol.final_merge=none"],
    "distill_final_merge": ["protocol.exchange=distill", "protocol.replay=0.5",
                            "protocol.final_merge=mean"],
    "distill_teachers_2_final_merge": ["protocol.exchange=distill", "protocol.replay=0.5",
                                       "protocol.teachers=2", "protocol.final_merge=mean"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 rounds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--byzantine", action="store_true", help="add the Byzantine settings")
    parser.add_argument("--options", action="store_true", help="one run per exchange option")
    parser.add_argument("--only", default="", help="comma-separated settings or options")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override for every run (KEY=VALUE), repeatable")
    args = parser.parse_args()
    seeds = list(range(1 if args.quick else args.seeds))
    rounds = args.rounds or (2 if args.quick else None)
    work = ROOT / "bench" / ".runs" / "swarm"
    shutil.rmtree(work, ignore_errors=True)
    extra = [*([f"swarm.rounds={rounds}"] if rounds else []), *args.overrides]
    base = load_config(args.config, extra)
    runs = dict(OPTIONS) if args.options else dict(SETTINGS)
    if args.byzantine and not args.options:
        runs["byzantine_defended"] = [*SETTINGS["linucb"], *BYZANTINE, *DEFENCES]
        runs["byzantine_undefended"] = [*SETTINGS["linucb"], *BYZANTINE, *NO_DEFENCES]
    if args.only:
        runs = {k: v for k, v in runs.items() if k in args.only.split(",")}
    server = _start_model_server(base, work / "server")
    address = endpoint(base.transport, 2)
    shared = [f"model.server={address}", f"model.adapter_store={work / 'adapters'}"]
    per_seed: list[dict[str, Any]] = []
    started = time.time()
    try:
        for seed in seeds:
            row: dict[str, Any] = {"seed": seed}
            for name, overrides in runs.items():
                config = load_config(args.config, [
                    *extra, *overrides, *shared,
                    f"swarm.seed={seed}", f"swarm.name=bench-{name}-{seed}",
                    f"swarm.lineage={work / f'{name}-{seed}' / 'lineage'}",
                    f"transport.base_port={base.transport.base_port + 10}"])
                label = f"bench/swarm: {name} seed {seed}"
                row |= _measure(name, label, config)
                print(f"seed {seed} {name:16s} round0 {row[f'{name}_round0']:.3f} "
                      f"final {row[name]:.3f} ({time.time() - started:.0f} s)", flush=True)
                if name == "linucb" and not args.options:
                    steps = row["linucb_train_steps"]
                    row["centralized"], row["skills_centralized"] = asyncio.run(
                        _centralized(config, address, steps))
                    print(f"seed {seed} centralized      {steps} steps: "
                          f"{row['centralized']:.3f} ({time.time() - started:.0f} s)", flush=True)
            per_seed.append(row)
            _report(per_seed, base, rounds, time.time() - started, len(seeds), list(runs),
                    "swarm-options" if args.options else "swarm", args.overrides)
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
        server.kill()


def _start_model_server(config: Any, run_dir: Path) -> subprocess.Popen[bytes]:
    shared = msgspec.structs.replace(config.model, adapter_store=str(run_dir.parent / "adapters"))
    return start_model_server(msgspec.structs.replace(config, model=shared), run_dir)


def _measure(name: str, label: str, config: Any) -> dict[str, Any]:
    """One run's figures: round 0 and final mean scores (honest agents), skills, steps, poison."""
    try:
        summary = run_swarm(config)  # prints nothing without a progress callback
    except SwarmError as exc:
        raise SystemExit(f"{label}: the run failed: {exc}") from None
    if summary is None:
        raise SystemExit("interrupted")
    history = summary["history"]
    attackers = set(byzantine_ids(config))
    round0, final = _scores(label, summary, config.swarm.rounds, attackers)
    honest = [a for a in history[-1]["scores"] if a not in attackers]
    last = history[-1]
    skills = {s: float(np.mean([last["skill_scores"][a][s] for a in honest
                                if s in last["skill_scores"].get(a, {})]))
              for s in last.get("skill_means", {})}
    poisoned = sum(1 for rec in history for r in rec["rewards"]
                   if r["accepted"] and r["teacher"] in attackers and r["student"] not in attackers)
    steps = config.agents[0].lora.steps
    exchange_trainings = sum(len({r["student"] for r in rec["rewards"]}) for rec in history
                             ) if config.protocol.settings.exchange == "distill" else 0
    trainings = sum(len(rec["local_scores"]) for rec in history) + exchange_trainings
    return {
        f"{name}_round0": round0,
        name: final,
        f"skills_{name}": skills,
        f"{name}_train_steps": trainings * steps,
        **({f"{name}_poisoned_kept": poisoned} if attackers else {}),
    }


def _scores(label: str, summary: dict[str, Any], rounds: int,
            exclude: set[str] | frozenset[str] = frozenset()) -> tuple[float, float]:
    """Round 0's mean local score and the final mean score of the agents not in ``exclude``,
    of a run where every agent reported.

    Raises:
        SystemExit: agents were unavailable or rounds are missing (``refuse_unavailable``).
    """
    history = summary["history"]
    refuse_unavailable(label, history, rounds)
    first = [v for a, v in history[0]["local_scores"].items() if a not in exclude]
    last = [v for a, v in history[-1]["scores"].items() if a not in exclude]
    return float(np.mean(first)), float(np.mean(last))


async def _centralized(config: Any, address: str, steps: int) -> tuple[float, dict[str, float]]:
    """One adapter on the union of the agents' training data, ``steps`` steps, on the held-out set."""
    from swarm.serving.client import ModelClient
    from swarm.skills import exact_match
    from swarm.wire.codec import GenRequest, Train, Trained

    specs = build_population(config)
    union = [ex for spec in specs for ex in spec.train]
    order = np.random.default_rng([config.swarm.seed, 9]).permutation(len(union))
    heldout = specs[0].heldout
    hyper = dict(specs[0].hyper, steps=steps)
    async with ModelClient.connect(address, "bench-centralized") as client:
        reply = await client.ask(Train(sender="bench-centralized", agent_id="centralized",
                                       examples=[union[int(i)] for i in order], hyper=hyper))
        if not isinstance(reply.msg, Trained):
            raise SystemExit(f"centralized training failed: {reply.msg}")
        width = max(len(ex.completion) for ex in heldout)
        outputs = await client.generate([
            GenRequest(prompt=ex.prompt, adapter=reply.msg.adapter, max_tokens=width + 2,
                       temperature=0.0) for ex in heldout])
    hits: dict[str, list[bool]] = {}
    for out, ex in zip(outputs, heldout, strict=True):
        answer = out.texts[0].strip().split("\n", 1)[0]
        hits.setdefault(ex.skill, []).append(exact_match(answer, ex.completion))
    total = sum(sum(v) for v in hits.values()) / len(heldout)
    return total, {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def _report(per_seed: list[dict[str, Any]], base: Any, rounds: int | None, seconds: float,
            planned: int, names: list[str], bench: str, base_overrides: list[str]) -> None:
    def avg(key: str) -> float:
        return float(np.mean([r[key] for r in per_seed]))

    def skills(name: str) -> dict[str, float]:
        keys = per_seed[0].get(f"skills_{name}", {})
        return {k: float(np.mean([r[f"skills_{name}"][k] for r in per_seed])) for k in keys}

    first = names[0]
    figures: dict[str, Any] = {"score_round0": avg(f"{first}_round0")}
    for name in [*names, *(["centralized"] if "centralized" in per_seed[0] else [])]:
        figures[f"score_{name}"] = avg(name)
        figures[f"skills_{name}"] = skills(name)
    for name in names:
        if f"{name}_poisoned_kept" in per_seed[0]:
            figures[f"{name}_poisoned_kept"] = sum(r[f"{name}_poisoned_kept"] for r in per_seed)
    figures |= {"heldout_examples": base.swarm.heldout,
                "one_example_moves_score_by": 1.0 / base.swarm.heldout,
                "per_seed": per_seed, "wall_s": round(seconds, 1)}
    ratios: dict[str, float] = {}
    goals: dict[str, str] = {}
    if "linucb" in names:
        def ratio(a: str, b: str) -> float:
            return figures[f"score_{a}"] / max(figures[f"score_{b}"], 1e-9)

        for other in ("centralized", "random", "local"):
            if f"score_{other}" in figures:
                ratios[f"linucb_vs_{other}"] = ratio("linucb", other)
        ratios["linucb_vs_round0"] = figures["score_linucb"] / max(figures["score_round0"], 1e-9)
        if "local" in names:
            ratios["linucb_over_local_seeds"] = float(sum(r["linucb"] > r["local"]
                                                          for r in per_seed))
        goals = {"linucb_vs_centralized": ">= 0.8", "linucb_vs_random": ">= 1.25",
                 "linucb_over_local_seeds": f">= {len(per_seed)}"}
        for name in ("byzantine_defended", "byzantine_undefended"):
            if name in names:
                ratios[f"{name}_vs_clean"] = ratio(name, "linucb")
        if "byzantine_defended" in names:
            goals |= {"byzantine_defended_vs_clean": ">= 0.9", "byzantine_defended_poisoned_kept": "<= 0"}
            ratios["byzantine_defended_poisoned_kept"] = figures["byzantine_defended_poisoned_kept"]
    params = {"seeds": len(per_seed), "seeds_planned": planned,
              "rounds": rounds or base.swarm.rounds, "agents": base.agent_count,
              "config": "configs/quickstart.yaml", "overrides": base_overrides, "settings": names,
              "defences": DEFENCES, "no_defences": NO_DEFENCES,
              "byzantine": BYZANTINE, "options": OPTIONS if bench == "swarm-options" else None,
              "centralized": "one adapter, union of the agents' training data, as many steps "
                             "as the linucb run trained in all"}
    write_result(bench, params, figures, ratios, goals)


if __name__ == "__main__":
    main()
