"""Training on the model server: a ``Train`` message becomes a stored adapter.

The thin boundary between the server (``swarm.serving.server``) and the
trainer (``swarm.serving.training``): ``store_trainer`` returns the ``TrainFn`` the
server calls in its trainer thread, one job at a time. The base model is
loaded once, on the first job. ``Train.hyper`` may override any field of the
LoRA settings (``rank, alpha, dropout, target_modules, learning_rate, steps,
batch_size``) and the ``seed``; the result is put into the adapter store and
answered by its content hash, so the engine serves the new version by its new
hash from the next request on.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from swarm.errors import AdapterError, TrainingError
from swarm.serving.server import MergeFn, TrainFn, TrainOutcome
from swarm.serving.settings import LoraSection
from swarm.wire.codec import Merge, Train

if TYPE_CHECKING:
    from swarm.adapters.store import AdapterStore

__all__ = ["store_trainer", "store_merger", "lora_settings"]


def store_trainer(
    model: Path, store: AdapterStore, *, lora: LoraSection | None = None, seed: int = 0,
    device: str = "cpu", progress: bool = False, gate: threading.Lock | None = None,
) -> TrainFn:  # fmt: skip
    """A ``TrainFn`` training on ``model`` and putting each adapter into ``store``.

    Args:
        lora: default LoRA settings (a job's ``hyper`` overrides them).
        seed: the seed of jobs whose ``hyper`` has none.
        gate: held around each training step (the model server's ``gate``).
    """
    defaults = lora or LoraSection()
    state: dict[str, Any] = {}
    lock = threading.Lock()

    def run(job: Train) -> TrainOutcome:
        from swarm.serving.training import Trainer, TrainJob

        with lock:
            if "trainer" not in state:
                state["trainer"] = Trainer(model, store=store, progress=progress, device=device,
                                           gate=gate)
        trainer: Trainer = state["trainer"]
        init = store.path(job.base_adapter) if job.base_adapter else None
        job_seed = job.hyper.get("seed", seed)
        if not isinstance(job_seed, int) or isinstance(job_seed, bool) or not 0 <= job_seed < 2**63:
            raise TrainingError(f"bad training settings: seed must be an integer in 0..2**63-1, "
                                f"got {str(job_seed)[:40]}")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix=".train-", dir=store.root) as tmp:
            result = trainer.run(TrainJob(job.examples, lora_settings(defaults, job.hyper), job_seed,
                                          Path(tmp) / "adapter", init, label=job.agent_id))  # fmt: skip
        if result.ref is None:
            raise TrainingError("the trainer did not store the adapter")
        metrics = {"final_loss": result.final_loss, "seconds": result.seconds,
                   "steps": float(len(result.losses))}  # fmt: skip
        return TrainOutcome(result.ref.sha256, metrics)

    return run


def lora_settings(defaults: LoraSection, hyper: dict[str, Any]) -> LoraSection:
    """``defaults`` with the LoRA fields present in ``hyper`` replaced.

    Raises:
        TrainingError: a value of the wrong type or out of range, naming the field.
    """
    fields = set(LoraSection.__struct_fields__)
    merged: dict[str, Any] = msgspec.to_builtins(defaults)
    for key, value in hyper.items():
        if key in fields:
            merged[key] = value.split(",") if key == "target_modules" and isinstance(value, str) else value
    try:
        return msgspec.convert(merged, LoraSection, strict=False)
    except msgspec.ValidationError as exc:
        raise TrainingError(f"bad training settings: {exc}") from None


def store_merger(model: Path, store: AdapterStore, gate: threading.Lock | None = None) -> MergeFn:
    """A ``MergeFn``: the merge a ``Merge`` asks for from ``store``, the result put back into it.

    ``student + weight * teacher``, or with ``Merge.adapters`` all of them by
    their ``weights``: peft's methods on the base model (loaded once, on the
    first merge), or a robust rule (``ROBUST_RULES``) on the adapters' updates,
    validated first. Each merge holds ``gate`` (the model server's) while it runs.

    Raises:
        AdapterError: an unknown method, weights that do not match the adapters,
            or an adapter that fails validation.
    """
    state: dict[str, Any] = {}
    lock = threading.Lock()
    compute = gate or threading.Lock()

    def run(job: Merge) -> str:
        from swarm.serving.merging import ROBUST_RULES, Merger, robust_merge

        adapters = list(job.adapters) or [job.student_adapter, job.teacher_adapter]
        weights = list(job.weights) if job.adapters else [1.0, job.weight]
        if job.method not in ROBUST_RULES and len(weights) != len(adapters):
            raise AdapterError(f"a merge of {len(adapters)} adapters needs as many weights, "
                               f"got {len(weights)}")
        with lock:  # loading the base model once is not engine work: the gate stays free
            if "merger" not in state:
                state["merger"] = Merger(model)
            merger: Merger = state["merger"]
        paths = [store.path(sha) for sha in adapters]
        with compute, tempfile.TemporaryDirectory(prefix=".merge-", dir=store.root) as tmp:
            if job.method in ROBUST_RULES:
                out = robust_merge(paths, job.method, Path(tmp) / "merged",
                                   validator=merger.validator)
            else:
                out = merger.merge(paths, weights, Path(tmp) / "merged", job.method,
                                   density=job.density)
            sha: str = store.put(out).sha256
        return sha

    return run

