"""A real LLM on this machine: SmolLM2-135M-Instruct served by vLLM and by transformers,
structured output, and LoRA training at the settings the configs use.

One run, everything side by side on the same chat prompts (greedy, the same
``max_tokens``):

- generated tokens/s of the ``vllm`` backend vs the ``hf`` backend with the
  base model, 1 adapter and 8 adapters mixed (``vllm_vs_hf`` is the 8-adapter
  case, what a swarm asks of its engine);
- structured output (a msgspec type's JSON schema, the engine's guided
  decoding) vs unconstrained generation on the same prompts, in requests/s
  with the same length cap (goal: at least 0.8x), and the share of answers
  that decode into the type;
- LoRA training steps/s and peak RSS of a trainer process running alone, at
  the LoRA settings of ``configs/chat.yaml`` and at the defaults (all seven
  linear layers, rank 8, batch 16).

Each serving figure is the median of ``--reps`` interleaved runs, each ratio
the median of per-rep ratios.

    python bench/llm.py            # 32 prompts x 32 tokens, 3 reps
    python bench/llm.py --quick    # 8 prompts x 16 tokens, 1 rep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from swarm.wire.codec import ChatTurn, GenRequest  # noqa: E402

NAME = "smollm2-135m-instruct"
GOALS = {"structured_vs_unconstrained": ">= 0.8"}
COUNTRIES = ["France", "Italy", "Spain", "Germany", "Japan", "Canada", "Egypt", "Peru",
             "Kenya", "Norway", "Chile", "India", "Greece", "Poland", "Mexico", "Turkey"]


class City(msgspec.Struct):
    """What the structured requests ask for."""

    name: str
    country: str


def chat(text: str, **fields: Any) -> GenRequest:
    """A one-turn chat request."""
    return GenRequest(messages=[ChatTurn(role="user", content=text)], **fields)


def questions(n: int) -> list[str]:
    """``n`` short questions with short answers."""
    return [f"What is the capital of {COUNTRIES[i % len(COUNTRIES)]}?" if i % 2 == 0 else
            f"Name a famous food from {COUNTRIES[i % len(COUNTRIES)]}." for i in range(n)]


def tokens_per_s(backend: Any, requests: list[GenRequest]) -> float:
    """Generated tokens per second of one ``generate`` call."""
    started = time.perf_counter()
    results = backend.generate(requests)
    return sum(len(r.token_ids) for r in results) / (time.perf_counter() - started)


def requests_per_s(backend: Any, requests: list[GenRequest]) -> tuple[float, list[str]]:
    """Requests per second of one ``generate`` call, and the texts."""
    started = time.perf_counter()
    texts = [r.text for r in backend.generate(requests)]
    return len(requests) / (time.perf_counter() - started), texts


def decodes(texts: list[str]) -> float:
    """The share of ``texts`` that decode into a ``City``."""
    ok = 0
    for text in texts:
        try:
            msgspec.json.decode(text, type=City)
            ok += 1
        except msgspec.DecodeError:
            pass
    return ok / max(len(texts), 1)


def make_adapters(model: Path, dest: Path, n: int) -> list[Path]:
    """``n`` random rank-8 q/v adapters (one base model load), like a swarm's after training."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model))
    config = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False,
                        target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(base, config)
    folders = []
    for i in range(n):
        with torch.no_grad():
            torch.manual_seed(i)
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn_like(param) * 0.01)
        folders.append(dest / f"a{i}")
        peft_model.save_pretrained(str(folders[-1]))
    return folders


def train_child(model: str, settings_json: str, steps: int) -> None:
    """(In a child process.) Train ``steps`` steps; print steps/s and peak RSS as JSON."""
    import numpy as np

    from swarm.serving.settings import LoraSection
    from swarm.serving.training import Trainer, TrainJob
    from swarm.skills import make_dataset

    settings = msgspec.json.decode(settings_json, type=LoraSection)
    trainer = Trainer(model)
    examples = make_dataset(["add", "reverse"], 256, np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        warm = msgspec.structs.replace(settings, steps=2)
        trainer.run(TrainJob(examples, warm, 0, Path(tmp) / "warm"))  # allocator, kernels
        job = TrainJob(examples, msgspec.structs.replace(settings, steps=steps), 0, Path(tmp) / "a")
        started = time.perf_counter()
        trainer.run(job)
        seconds = time.perf_counter() - started
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) * 1024
    print(json.dumps({"steps_per_s": steps / seconds, "peak_rss_bytes": rss}))


def train_figures(model: Path, steps: int) -> dict[str, Any]:
    """Steps/s and peak RSS of a trainer process alone, at chat.yaml's and the default settings."""
    from swarm.config import load_config
    from swarm.serving.settings import LoraSection

    chat_lora = load_config(ROOT / "configs" / "chat.yaml").agents[0].lora
    figures: dict[str, Any] = {}
    for tag, settings in (("", chat_lora), ("all_linear_", LoraSection())):
        out = subprocess.run([sys.executable, __file__, "--train-child", str(model),
                              msgspec.json.encode(settings).decode(), str(steps)],
                             capture_output=True, text=True, check=True)
        found = json.loads(out.stdout.strip().splitlines()[-1])
        figures[f"{tag}train_steps_per_s"] = round(found["steps_per_s"], 3)
        figures[f"{tag}train_peak_rss_bytes"] = found["peak_rss_bytes"]
        print(f"training {tag or 'chat.yaml '}: {found['steps_per_s']:.2f} steps/s, "
              f"peak RSS {found['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    figures["train_settings"] = msgspec.to_builtins(chat_lora)
    return figures


def serve_figures(model: Path, n: int, max_tokens: int, reps: int) -> dict[str, Any]:
    """Tokens/s of both backends and structured vs unconstrained requests/s, per rep."""
    from swarm.serving.base import MappingResolver
    from swarm.serving.hf_backend import HFBackend
    from swarm.serving.structured import schema_for
    from swarm.serving.vllm_backend import VLLMBackend

    resolver = MappingResolver()
    with tempfile.TemporaryDirectory() as tmp:
        refs = [resolver.add(hashlib.sha256((f / "adapter_model.safetensors").read_bytes())
                             .hexdigest(), f) for f in make_adapters(model, Path(tmp), 8)]
        asks = questions(n)
        loads = {
            "base": [chat(q, max_tokens=max_tokens) for q in asks],
            "adapters1": [chat(q, max_tokens=max_tokens, adapter=refs[0]) for q in asks],
            "adapters8": [chat(q, max_tokens=max_tokens, adapter=refs[i % 8])
                          for i, q in enumerate(asks)],
        }
        city = schema_for(City)
        cities = [f"Give the capital of {COUNTRIES[i % len(COUNTRIES)]} as JSON with the fields "
                  f"name and country." for i in range(n)]
        free = [chat(c, max_tokens=48) for c in cities]
        held = [chat(c, max_tokens=48, json_schema=city) for c in cities]
        vllm = VLLMBackend(model, resolver, max_loras=8, max_cpu_loras=8, max_model_len=512,
                           gpu_memory_utilization=0.15, dtype="float32")
        hf = HFBackend(model, resolver, max_adapters=8)
        runs: dict[str, list[float]] = {}
        try:
            vllm.generate(loads["adapters8"][:8] + held[:2])  # warm-up: adapters, grammar
            hf.generate(loads["adapters8"][:8])
            valid: dict[str, float] = {}
            for rep in range(reps):
                for key, load in loads.items():
                    runs.setdefault(f"vllm_{key}", []).append(tokens_per_s(vllm, load))
                    runs.setdefault(f"hf_{key}", []).append(tokens_per_s(hf, load))
                    print(f"rep {rep} {key:9s} vllm {runs[f'vllm_{key}'][-1]:7.0f} tokens/s  "
                          f"hf {runs[f'hf_{key}'][-1]:7.0f} tokens/s", flush=True)
                rate, texts = requests_per_s(vllm, free)
                runs.setdefault("unconstrained", []).append(rate)
                valid["unconstrained"] = decodes(texts)
                rate, texts = requests_per_s(vllm, held)
                runs.setdefault("structured", []).append(rate)
                valid["structured"] = decodes(texts)
                print(f"rep {rep} json      structured {runs['structured'][-1]:.2f} req/s, "
                      f"unconstrained {runs['unconstrained'][-1]:.2f} req/s", flush=True)
        finally:
            vllm.close()
    figures: dict[str, Any] = {f"{k}_tokens_per_s": round(statistics.median(v))
                               for k, v in runs.items() if k.startswith(("vllm_", "hf_"))}
    figures["structured_requests_per_s"] = round(statistics.median(runs["structured"]), 3)
    figures["unconstrained_requests_per_s"] = round(statistics.median(runs["unconstrained"]), 3)
    figures["structured_valid_fraction"] = valid["structured"]
    figures["unconstrained_valid_fraction"] = valid["unconstrained"]
    for key in loads:
        figures[f"vllm_vs_hf_{key}_per_rep"] = [
            round(a / b, 3) for a, b in zip(runs[f"vllm_{key}"], runs[f"hf_{key}"], strict=True)]
    figures["structured_vs_unconstrained_per_rep"] = [
        round(a / b, 3) for a, b in zip(runs["structured"], runs["unconstrained"], strict=True)]
    return figures


def main() -> None:
    """Measure, print the table, write ``bench/results/llm.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 prompts x 16 tokens, 1 rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--train-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_child:
        train_child(args.train_child[0], args.train_child[1], int(args.train_child[2]))
        return
    from swarm.models.local import resolve_local

    model = resolve_local(NAME, progress=print)
    n, max_tokens, reps, steps = (8, 16, 1, 4) if args.quick else (32, 32, args.reps, 12)
    figures = train_figures(model, steps)  # alone: no engine is up yet
    figures |= serve_figures(model, n, max_tokens, reps)
    ratios = {f"vllm_vs_hf_{key}": statistics.median(figures[f"vllm_vs_hf_{key}_per_rep"])
              for key in ("base", "adapters1", "adapters8")}
    ratios["vllm_vs_hf"] = ratios["vllm_vs_hf_adapters8"]
    ratios["structured_vs_unconstrained"] = statistics.median(
        figures["structured_vs_unconstrained_per_rep"])
    params = {"model": NAME, "prompts": n, "max_tokens": max_tokens, "reps": reps,
              "structured_max_tokens": 48, "train_steps": steps, "adapters": 8,
              "adapter": "rank 8, q_proj and v_proj", "quick": args.quick}
    write_result("llm", params, figures, ratios, GOALS)


if __name__ == "__main__":
    main()
