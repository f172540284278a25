"""The cooperative protocol: held-out accuracy and messages for four ways of choosing partners.

One run of ``configs/cooperative.yaml`` (8 cooperators on SmolLM2-135M-Instruct,
2 hosts, a seeded world of facts dealt out so that no agent can answer alone)
per seed and per setting, all in the same run of this script:

- ``none``: no sharing (``agents.0.settings.partners=none``);
- ``random``: one random partner per missing fact (``matchmaker.kind=random``);
- ``matchmaker``: the partner the LinUCB query model chooses from the agents'
  published profiles (the config as it is);
- ``broadcast``: everyone is asked (``agents.0.settings.partners=broadcast``).

Accuracy is the mean held-out exact match over the agents in the last round
(fresh questions every round; what an agent learnt earlier stays in its
knowledge graph); messages are the agent-to-agent messages of the whole run
(asks and answers, from the rounds' records). One model server serves every
run (``model.server``), so the engine starts once. A run in which an agent was
unavailable reports nothing (``refuse_unavailable``).

Goals (issue 15): matchmaker beats none and random on every seed, reaches at
least 0.9x broadcast's accuracy with at most 0.25x its messages.

    python bench/agents.py            # 3 seeds, 3 rounds, 8 questions per agent and round
    python bench/agents.py --quick    # 1 seed, 2 rounds, 3 questions
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import refuse_unavailable, write_result  # noqa: E402
from swarm.config import load_config  # noqa: E402
from swarm.runtime.local_launcher import LocalLauncher  # noqa: E402
from swarm.runtime.run import run_swarm  # noqa: E402

CONFIG = ROOT / "configs" / "cooperative.yaml"
SETTINGS = {
    "none": ["agents.0.settings.partners=none"],
    "random": ["matchmaker.kind=random"],
    "matchmaker": [],
    "broadcast": ["agents.0.settings.partners=broadcast"],
}


def free_base_port() -> int:
    """A base port with the next 16 ports free (coordinator, events, model, hosts)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 16 < 65535 and all(_free(base + i) for i in range(16)):
            return base
    raise SystemExit("no free port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SharedServer:
    """One model server for every run (started like a run's own, with its config)."""

    def __init__(self, tmp: Path, config: Path = CONFIG) -> None:
        self.config = load_config(config, [f"swarm.lineage={tmp / 'server' / 'lineage'}",
                                           f"transport.base_port={free_base_port()}",
                                           f"model.adapter_store={tmp / 'adapters'}"])
        self.launcher = LocalLauncher(self.config)
        self.address = f"tcp://127.0.0.1:{self.config.transport.base_port + 2}"

    def __enter__(self) -> SharedServer:
        from swarm.serving.client import ModelClient

        self.launcher.prepare()
        self.launcher.launch_model_server()

        async def ready() -> None:
            async with ModelClient.connect(self.address, timeout=600) as model:
                await model.complete("Hello", max_tokens=1)

        started = time.time()
        asyncio.run(ready())
        print(f"model server up in {time.time() - started:.0f} s", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.launcher.stop()


def one_run(tmp: Path, server: SharedServer, seed: int, setting: str, rounds: int,
            questions: int) -> dict[str, Any]:
    """Run one setting on one seed; its last round's accuracy and the run's messages."""
    name = f"{setting}-{seed}"
    config = load_config(CONFIG, [
        f"swarm.name=coop-{name}", f"swarm.lineage={tmp / name / 'lineage'}",
        f"transport.base_port={free_base_port()}", f"model.server={server.address}",
        f"model.adapter_store={tmp / 'adapters'}", f"swarm.seed={seed}",
        f"swarm.rounds={rounds}", f"agents.0.settings.world_seed={seed}",
        f"agents.0.settings.questions={questions}", *SETTINGS[setting]])
    started = time.time()
    summary = run_swarm(config)
    if summary is None:
        raise SystemExit(f"{name}: interrupted")
    history = summary["history"]
    refuse_unavailable(name, history, rounds)
    last = history[-1]
    out = {"accuracy": round(float(last["mean_score"]), 4),
           "accuracy_per_round": [round(float(r["mean_score"]), 4) for r in history],
           "messages": int(sum(r.get("agent_messages", 0) for r in history)),
           "seconds": round(time.time() - started, 1)}
    print(f"  seed {seed} {setting:>10}: accuracy {out['accuracy']:.3f} "
          f"(per round {out['accuracy_per_round']}), {out['messages']} messages, "
          f"{out['seconds']:.0f} s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 rounds, 3 questions")
    args = parser.parse_args()
    seeds, rounds, questions = ([0], 2, 3) if args.quick else ([0, 1, 2], 3, 8)
    per_seed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, SharedServer(Path(tmp)) as server:
        for seed in seeds:
            row: dict[str, Any] = {"seed": seed}
            for setting in SETTINGS:
                got = one_run(Path(tmp), server, seed, setting, rounds, questions)
                row[f"accuracy_{setting}"] = got["accuracy"]
                row[f"accuracy_per_round_{setting}"] = got["accuracy_per_round"]
                row[f"messages_{setting}"] = got["messages"]
                row[f"seconds_{setting}"] = got["seconds"]
            per_seed.append(row)
    figures: dict[str, Any] = {}
    for setting in SETTINGS:
        figures[f"accuracy_{setting}"] = round(statistics.mean(
            r[f"accuracy_{setting}"] for r in per_seed), 4)
        figures[f"messages_{setting}"] = round(statistics.mean(
            r[f"messages_{setting}"] for r in per_seed), 1)
    figures["per_seed"] = per_seed
    figures["matchmaker_beats_none_every_seed"] = all(
        r["accuracy_matchmaker"] > r["accuracy_none"] for r in per_seed)
    figures["matchmaker_beats_random_every_seed"] = all(
        r["accuracy_matchmaker"] > r["accuracy_random"] for r in per_seed)
    broadcast_acc, broadcast_msgs = figures["accuracy_broadcast"], figures["messages_broadcast"]
    ratios = {
        "matchmaker_accuracy_vs_broadcast":
            figures["accuracy_matchmaker"] / broadcast_acc if broadcast_acc else 0.0,
        "matchmaker_messages_vs_broadcast":
            figures["messages_matchmaker"] / broadcast_msgs if broadcast_msgs else 0.0,
        "matchmaker_accuracy_vs_random":
            figures["accuracy_matchmaker"] / figures["accuracy_random"]
            if figures["accuracy_random"] else 0.0,
    }
    goals = {"matchmaker_accuracy_vs_broadcast": ">= 0.9",
             "matchmaker_messages_vs_broadcast": "<= 0.25",
             "matchmaker_accuracy_vs_random": ">= 1"}
    params = {"config": "configs/cooperative.yaml", "seeds": seeds, "rounds": rounds,
              "questions_per_agent_round": questions, "agents": 8, "hosts": 2,
              "model": "smollm2-135m-instruct", "backend": "vllm", "quick": args.quick}
    write_result("agents", params, figures, ratios, goals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
