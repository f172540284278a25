"""Lineage store: write throughput vs GitPython, query latency on big histories, bytes per version.

Measured side by side in one run:

- commits/s of ``GitLineageStore.commit_many`` (batches of 100, object level, durable:
  fsynced pack + fsynced refs) and of single ``commit`` calls, vs GitPython's
  ``index.add`` + ``index.commit`` on the same workload (one adapter pointer
  rewritten per commit, 16 agents);
- ``log(agent)`` and ``ancestry(ref)`` over a 100,000-commit history (100 agent
  branches, one commit in 10 a merge; built with ``git fast-import``, then the
  store's own ``maintain()``: geometric repack + commit-graph);
- ``phylogeny()`` of a 10,000-commit history with eval notes;
- repository bytes per adapter version (pointer in git; weights in the machine's
  adapter store, reported as ``cas_bytes_per_adapter_version``).

``--quick`` shrinks every size (10k history, 2k phylogeny), same keys.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from swarm.lineage.gitstore import GitLineageStore  # noqa: E402
from swarm.lineage.writer import CommitSpec  # noqa: E402

AGENTS = 16


def pointer(agent: int, i: int) -> dict[str, Any]:
    return {"format": "swarm-adapter-pointer/1", "sha256": f"{(agent * 1_000_003 + i):064x}",
            "size": 65536, "base_model": "tiny", "rank": 8, "parents": [], "config_sha256": None}


def gitpython_rate(work: Path, n: int) -> float:
    """Commits/s of GitPython's index.add + index.commit, one pointer file per commit."""
    import git

    repo = git.Repo.init(work)
    try:
        start = time.perf_counter()
        for i in range(n):
            agent = i % AGENTS
            rel = f"agents/{agent}/adapter.json"
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / rel).write_text(json.dumps(pointer(agent, i), sort_keys=True, indent=2))
            repo.index.add([rel])
            repo.index.commit(f"agent {agent} trains ({i})")
        return n / (time.perf_counter() - start)
    finally:
        repo.close()


def store_rates(path: Path, n_batched: int, n_single: int) -> tuple[float, float]:
    """Commits/s of the store: batches of 100, then single commits."""
    with GitLineageStore.open(path, create=True) as store:
        start = time.perf_counter()
        for b in range(0, n_batched, 100):
            store.commit_many([
                CommitSpec(f"agent/{i % AGENTS}", {f"agents/{i % AGENTS}/adapter.json":
                                                   pointer(i % AGENTS, i)}, f"train {i}")
                for i in range(b, b + 100)
            ])
        batched = n_batched / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(n_single):
            agent = i % AGENTS
            store.commit(f"agent/{agent}", {f"agents/{agent}/adapter.json": pointer(agent, i)},
                         f"single {i}")
        single = n_single / (time.perf_counter() - start)
    return batched, single


def fast_import_history(path: Path, commits: int, agents: int, merge_every: int) -> None:
    """Write a lineage-shaped history with ``git fast-import`` (100 agents, periodic merges)."""
    GitLineageStore.open(path, create=True).close()
    rng = random.Random(0)
    lines: list[bytes] = []
    last: dict[int, int] = {}
    for mark in range(1, commits + 1):
        agent = (mark - 1) % agents
        body = json.dumps(pointer(agent, mark), sort_keys=True, indent=2).encode()
        msg = f"agent {agent} trains ({mark})\n\nLineage-Branch: agent/{agent}\n".encode()
        head = [f"commit refs/heads/agent/{agent}".encode(), f"mark :{mark}".encode(),
                f"committer swarm <swarm@swarm.local> {1_700_000_000 + mark} +0000".encode(),
                b"data %d" % len(msg), msg]
        if agent not in last and mark > 1:
            head.append(f"from :{rng.randrange(1, mark)}".encode())  # a fork
        if rng.random() < 1 / merge_every and len(last) > 1:
            other = rng.choice([m for a, m in last.items() if a != agent])
            head.append(f"merge :{other}".encode())
        head += [f"M 100644 inline agents/{agent}/adapter.json".encode(), b"data %d" % len(body),
                 body, b""]
        lines += head
        last[agent] = mark
    lines.append(b"done\n")
    subprocess.run(["git", "--git-dir", str(path), "fast-import", "--quiet", "--done"],
                   input=b"\n".join(lines), check=True)


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median seconds of ``fn`` over ``repeat`` runs (after one warm-up)."""
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def query_figures(path: Path, commits: int) -> dict[str, float]:
    fast_import_history(path, commits, agents=100, merge_every=10)
    with GitLineageStore.open(path) as store:
        store.maintain()
        agent = "agent/57"
        n_log = len(store.log(agent))
        n_anc = len(store.ancestry(agent))
        return {
            "log_agent_s": timed(lambda: store.log(agent)),
            "log_agent_all_ancestors_s": timed(lambda: store.log(agent, first_parent=False), 3),
            "ancestry_s": timed(lambda: store.ancestry(agent)),
            "log_agent_entries": n_log,
            "ancestry_commits": n_anc,
        }


def phylogeny_seconds(path: Path, commits: int) -> tuple[float, int]:
    fast_import_history(path, commits, agents=50, merge_every=20)
    with GitLineageStore.open(path) as store:
        store.maintain()
        tips = list(store.refs("refs/heads").values())
        store.note_many({sha: {"score": i / len(tips)} for i, sha in enumerate(tips)})
        store.promote(tips[0], "best")
        store.prune("agent/3", "bench")
        graph = store.phylogeny()
        return timed(store.phylogeny, 3), graph.number_of_nodes()


def adapter_bytes(path: Path, versions: int) -> dict[str, float]:
    """Bytes per adapter version: git (pointer commit) and adapter store (weights), 64 KiB adapters."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    with tempfile.TemporaryDirectory() as tmp, GitLineageStore.open(path, create=True) as store:
        folder = Path(tmp)
        (folder / "adapter_config.json").write_text(json.dumps({
            "r": 8, "base_model_name_or_path": "tiny", "peft_type": "LORA",
            "target_modules": ["q_proj"]}))
        base_git = du(path / "objects")
        for v in range(versions):
            save_file({f"{module}.lora_A.weight": rng.standard_normal((8, 1024), np.float32),
                       f"{module}.lora_B.weight": rng.standard_normal((1024, 8), np.float32)},
                      str(folder / "adapter_model.safetensors"))  # 64 KiB of weights
            agent = v % AGENTS
            ptr = store.put_adapter(folder, {"parents": []})
            store.commit(f"agent/{agent}", {f"agents/{agent}/adapter.json": ptr}, f"v{v}")
        store.put_adapter(folder)  # stored twice: no new bytes
        store.maintain()
        git_bytes = du(path / "objects") - base_git
        subprocess.run(["git", "--git-dir", str(path), "repack", "-a", "-d", "-q"], check=True)
        packed = du(path / "objects") - base_git
        store_bytes = du(store.adapters.root) - du(store.adapters.root / ".users")
    return {"repo_bytes_per_adapter_version": git_bytes / versions,
            "repo_bytes_per_adapter_version_full_repack": packed / versions,
            "cas_bytes_per_adapter_version": store_bytes / versions}


def du(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, well under a minute")
    args = parser.parse_args()
    p = {"gitpython_commits": 100, "store_batched_commits": 3000, "store_single_commits": 200,
         "history_commits": 10_000, "phylogeny_commits": 2_000, "adapter_versions": 50}
    if not args.quick:
        p.update(gitpython_commits=300, store_batched_commits=20_000, store_single_commits=500,
                 history_commits=100_000, phylogeny_commits=10_000, adapter_versions=300)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        gp = gitpython_rate(t / "gp", p["gitpython_commits"])
        batched, single = store_rates(t / "w", p["store_batched_commits"],
                                      p["store_single_commits"])
        q = query_figures(t / "q", p["history_commits"])
        phylo_s, phylo_nodes = phylogeny_seconds(t / "p", p["phylogeny_commits"])
        sizes = adapter_bytes(t / "a", p["adapter_versions"])
    figures: dict[str, Any] = {
        "gitpython_index_commits_per_s": round(gp, 1),
        "store_batched_commits_per_s": round(batched, 1),
        "store_single_commits_per_s": round(single, 1),
        "log_agent_s_100k": round(q["log_agent_s"], 4),
        "log_agent_all_ancestors_s_100k": round(q["log_agent_all_ancestors_s"], 4),
        "ancestry_s_100k": round(q["ancestry_s"], 4),
        "log_agent_entries": q["log_agent_entries"],
        "ancestry_commits": q["ancestry_commits"],
        "phylogeny_s_10k": round(phylo_s, 4),
        "phylogeny_nodes": phylo_nodes,
        **{k: round(v, 1) for k, v in sizes.items()},
    }
    ratios = {"commits_per_s_vs_gitpython_index": batched / gp,
              "single_commits_per_s_vs_gitpython_index": single / gp}
    goals = {"commits_per_s_vs_gitpython_index": ">= 20", "log_agent_s_100k": "<= 0.5",
             "ancestry_s_100k": "<= 0.5", "phylogeny_s_10k": "<= 2"}
    write_result("lineage", p, figures, ratios, goals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
