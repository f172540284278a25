"""LoRA training on the tiny model: held-out exact match on ``reverse`` vs steps and seconds.

Builds the default tiny model (random weights, seed 0), measures the base
model's held-out accuracy, then trains fresh adapters with the default LoRA
settings for growing step budgets (each from scratch, seed 0) and reports
accuracy and wall time of each. The headline figures are the smallest budget
reaching 0.9 and its training seconds (goal: under 120 s on this CPU).

Then the same skill on SmolLM2-135M-Instruct (``smollm2_*`` figures, beside
the tiny model's): one adapter with the default LoRA settings, trained once,
its held-out accuracy measured at step checkpoints until it reaches 0.9
(evaluation time is not counted as training time).

    python bench/training.py [--quick] [--threads N] [--no-smollm2]
"""

from __future__ import annotations

import argparse
import contextlib
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
    parser.add_argument("--no-smollm2", action="store_true", help="the tiny model only")
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
    if not args.no_smollm2:
        figures |= _smollm2(args.skill, [10] if args.quick else [25, 50, 100, 150, 200, 300])
    at = baseline_budgets[0]
    ratios = {f"acc_vs_attention_only_{at}_steps": figures[f"acc_after_{at}_steps"]
              / max(figures[f"attention_only_acc_after_{at}_steps"], 1e-3)}
    params = {"skill": args.skill, "train_examples": len(train), "test_examples": len(test),
              "budgets": budgets, "threads": args.threads, "lora": msgspec.to_builtins(settings)}
    params["smollm2_checkpoints"] = [10] if args.quick else [25, 50, 100, 150, 200, 300]
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


def _smollm2(skill: str, checkpoints: list[int]) -> dict[str, float]:
    """Train one SmolLM2 adapter to the last checkpoint, evaluating at each; stop at 0.9."""
    from swarm.models.local import resolve_local

    marks: dict[int, tuple[float, float]] = {}  # step -> (accuracy, training seconds so far)
    clock = {"eval_s": 0.0, "start": 0.0}
    test: list[Example] = []

    class Reached(Exception):
        pass

    def at_step(step: int, steps: int, loss: float) -> None:
        if step not in checkpoints:
            return
        paused = time.perf_counter()
        trained = paused - clock["start"] - clock["eval_s"]
        accuracy = evaluate(trainer.generate, test)  # the adapter being trained (dropout is 0)
        clock["eval_s"] += time.perf_counter() - paused
        marks[step] = (accuracy, trained)
        print(f"smollm2         {step:5d} steps {trained:7.1f} s  acc {accuracy:.3f}  "
              f"loss {loss:.3f}", flush=True)
        if accuracy >= 0.9:
            raise Reached

    trainer = Trainer(resolve_local("smollm2-135m-instruct"), progress=at_step)
    rng = np.random.default_rng(0)
    train, test_all = train_test_split(make_dataset([skill], 4000, rng), 0.1, rng)
    test.extend(test_all[:100])
    figures: dict[str, float] = {"smollm2_acc_before": evaluate(trainer.generate, test)}
    settings = msgspec.structs.replace(LoraSection(), steps=checkpoints[-1])
    with tempfile.TemporaryDirectory() as tmp:
        clock["start"] = time.perf_counter()
        with contextlib.suppress(Reached):  # stops the job at the first checkpoint past 0.9
            trainer.run(TrainJob(train, settings, 0, Path(tmp) / "smollm2"))
    for step, (accuracy, seconds) in marks.items():
        figures[f"smollm2_acc_after_{step}_steps"] = accuracy
        figures[f"smollm2_train_s_{step}_steps"] = round(seconds, 2)
    reached = [step for step, (acc, _) in marks.items() if acc >= 0.9]
    figures["smollm2_steps_to_acc_0_9"] = reached[0] if reached else float("inf")
    figures["smollm2_train_s_to_acc_0_9"] = (round(marks[reached[0]][1], 2) if reached
                                             else float("inf"))
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
