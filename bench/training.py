"""LoRA training on the tiny model: held-out exact match on ``reverse`` vs steps and seconds.

Builds the default tiny model (random weights, seed 0), measures the base
model's held-out accuracy, then trains fresh adapters with the default LoRA
settings for growing step budgets (each from scratch, seed 0) and reports
accuracy and wall time of each. The headline figures are the smallest budget
reaching 0.9 and its training seconds (goal: under 120 s on this CPU).

    python bench/training.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]  # bench/swarm.py
sys.path.insert(0, str(ROOT))

from bench.common import write_result  # noqa: E402
from swarm.models.tiny import build_tiny_model  # noqa: E402
from swarm.serving.settings import LoraSection  # noqa: E402
from swarm.serving.training import Trainer, TrainJob  # noqa: E402
from swarm.skills import Example, evaluate, make_dataset, train_test_split  # noqa: E402


def main() -> int:
    """Run the benchmark and write ``bench/results/training.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one budget and one baseline")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--skill", default="reverse")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    budgets = [300] if args.quick else [100, 200, 300, 400, 600]
    baseline_budgets = [300] if args.quick else [300, 600]
    settings = LoraSection()
    attention = msgspec.structs.replace(
        settings, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(build_tiny_model(Path(tmp) / "tiny"), progress=False)
        rng = np.random.default_rng(0)
        train, test = train_test_split(make_dataset([args.skill], 4000, rng), 0.1, rng)
        test = test[:200]
        figures: dict[str, float] = {"acc_before": evaluate(trainer.generate, test)}
        figures |= _sweep(trainer, train, test, settings, budgets, Path(tmp), "")
        figures |= _sweep(trainer, train, test, attention, baseline_budgets, Path(tmp),
                          "attention_only_")
    reached = [s for s in budgets if figures[f"acc_after_{s}_steps"] >= 0.9]
    best = reached[0] if reached else budgets[-1]
    figures["acc_after"] = figures[f"acc_after_{best}_steps"]
    figures["train_s_to_acc_0_9"] = figures[f"train_s_{best}_steps"] if reached else float("inf")
    at = baseline_budgets[0]
    ratios = {f"acc_vs_attention_only_{at}_steps": figures[f"acc_after_{at}_steps"]
              / max(figures[f"attention_only_acc_after_{at}_steps"], 1e-3)}
    params = {"skill": args.skill, "train_examples": len(train), "test_examples": len(test),
              "budgets": budgets, "threads": args.threads, "lora": msgspec.to_builtins(settings)}
    goals = {"acc_before": "<= 0.05", "acc_after": ">= 0.9", "train_s_to_acc_0_9": "<= 120"}
    write_result("training", params, figures, ratios, goals)
    return 0


def _sweep(trainer: Trainer, train: list[Example], test: list[Example], settings: LoraSection,
           budgets: list[int], tmp: Path, prefix: str) -> dict[str, float]:
    """Train a fresh adapter (seed 0) per budget; held-out accuracy and seconds of each."""
    figures: dict[str, float] = {}
    for steps in budgets:
        job = TrainJob(train, msgspec.structs.replace(settings, steps=steps), 0,
                       tmp / f"{prefix}{steps}")
        started = time.perf_counter()
        trainer.run(job)
        seconds = round(time.perf_counter() - started, 2)
        accuracy = evaluate(trainer.generate, test)
        figures[f"{prefix}train_s_{steps}_steps"] = seconds
        figures[f"{prefix}acc_after_{steps}_steps"] = accuracy
        print(f"{prefix or 'all_linear_':16s}{steps:5d} steps {seconds:7.1f} s  acc {accuracy:.3f}",
              flush=True)
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
