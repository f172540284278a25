"""Does the swarm learn, and does learnt pairing beat random pairing and no exchange?

Runs the quickstart swarm (real processes, real vLLM model server, real LoRA
training) on the same seeds with three settings, one model server shared by
all runs so engine start-up is paid once:

- ``linucb``: knexa with the LinUCB matchmaker (the product's default);
- ``random``: knexa with random pairing;
- ``local``: every agent trains alone, nothing is exchanged.

Figures: the mean held-out score after round 0's local step
(``score_round0``) and after the last round, per setting, averaged over
seeds; ratios: linucb over random and over local. A run in which any agent
was unavailable in any round, or that stopped early, reports no score: the
bench exits non-zero naming the run, rounds and agents
(``bench.common.refuse_unavailable``).

    python bench/swarm.py            # 3 seeds
    python bench/swarm.py --quick    # 1 seed, 2 rounds
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import refuse_unavailable, write_result  # noqa: E402
from swarm.config import load_config  # noqa: E402
from swarm.errors import SwarmError  # noqa: E402
from swarm.runtime.local_launcher import start_model_server  # noqa: E402
from swarm.runtime.run import run_swarm  # noqa: E402
from swarm.transport.topology import endpoint  # noqa: E402

SETTINGS = {
    "linucb": ["protocol.name=knexa", "matchmaker.kind=linucb"],
    "random": ["protocol.name=knexa", "matchmaker.kind=random"],
    "local": ["protocol.name=local"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 rounds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "quickstart.yaml")
    args = parser.parse_args()
    seeds = list(range(1 if args.quick else args.seeds))
    rounds = args.rounds or (2 if args.quick else None)
    work = ROOT / "bench" / ".runs" / "swarm"
    shutil.rmtree(work, ignore_errors=True)
    base = load_config(args.config, [f"swarm.rounds={rounds}"] if rounds else [])
    server = _start_model_server(base, work / "server")
    shared = [f"model.server={endpoint(base.transport, 2)}",
              f"model.adapter_store={work / 'adapters'}"]
    per_seed: list[dict[str, Any]] = []
    started = time.time()
    try:
        for seed in seeds:
            row: dict[str, Any] = {"seed": seed}
            for name, overrides in SETTINGS.items():
                config = load_config(args.config, [
                    *(f"swarm.rounds={rounds}" for _ in [rounds] if rounds), *overrides, *shared,
                    f"swarm.seed={seed}", f"swarm.name=bench-{name}-{seed}",
                    f"swarm.lineage={work / f'{name}-{seed}' / 'lineage'}",
                    f"transport.base_port={base.transport.base_port + 10}"])
                label = f"bench/swarm: {name} seed {seed}"
                row[f"{name}_round0"], row[name] = _scores(label, _quiet_run(config, label),
                                                           config.swarm.rounds)
                print(f"seed {seed} {name:7s} round0 {row[f'{name}_round0']:.3f} "
                      f"final {row[name]:.3f} ({time.time() - started:.0f} s)", flush=True)
            per_seed.append(row)
            _report(per_seed, base, rounds, time.time() - started, len(seeds))  # partial runs count
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
        server.kill()


def _start_model_server(config: Any, run_dir: Path) -> subprocess.Popen[bytes]:
    shared = msgspec.structs.replace(config.model, adapter_store=str(run_dir.parent / "adapters"))
    return start_model_server(msgspec.structs.replace(config, model=shared), run_dir)


def _quiet_run(config: Any, label: str) -> dict[str, Any]:
    try:
        summary = run_swarm(config)  # prints nothing without a progress callback
    except SwarmError as exc:
        raise SystemExit(f"{label}: the run failed: {exc}") from None
    if summary is None:
        raise SystemExit("interrupted")
    return dict(summary)


def _scores(label: str, summary: dict[str, Any], rounds: int) -> tuple[float, float]:
    """Round 0's mean local score and the final mean score, of a run where every agent reported.

    Raises:
        SystemExit: agents were unavailable or rounds are missing (``refuse_unavailable``).
    """
    history = summary["history"]
    refuse_unavailable(label, history, rounds)
    return _mean(history[0]["local_scores"]), float(history[-1]["mean_score"])


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / max(len(values), 1)


def _report(per_seed: list[dict[str, Any]], base: Any, rounds: int | None, seconds: float,
            planned: int | None = None) -> None:
    def avg(key: str) -> float:
        return sum(r[key] for r in per_seed) / len(per_seed)

    figures = {
        "score_round0": avg("linucb_round0"),
        "score_linucb": avg("linucb"),
        "score_random": avg("random"),
        "score_local": avg("local"),
        "per_seed": per_seed,
        "wall_s": round(seconds, 1),
    }
    ratios = {
        "linucb_vs_random": figures["score_linucb"] / max(figures["score_random"], 1e-9),
        "linucb_vs_local": figures["score_linucb"] / max(figures["score_local"], 1e-9),
        "linucb_vs_round0": figures["score_linucb"] / max(figures["score_round0"], 1e-9),
    }
    goals = {"linucb_vs_random": ">= 1.0", "linucb_vs_local": ">= 1.0",
             "linucb_vs_round0": ">= 1.0"}
    params = {"seeds": len(per_seed), "seeds_planned": planned, "rounds": rounds or base.swarm.rounds,
              "agents": base.agent_count, "config": "configs/quickstart.yaml"}
    write_result("swarm", params, figures, ratios, goals)
    wins = {k: sum(r["linucb"] > r[k] for r in per_seed) for k in ("random", "local")}
    print(f"linucb beats random on {wins['random']}/{len(per_seed)} seeds, "
          f"local on {wins['local']}/{len(per_seed)} seeds")


if __name__ == "__main__":
    main()
