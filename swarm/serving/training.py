"""peft LoRA fine-tuning of one agent's adapter on its examples.

A ``Trainer`` holds one base model and its tokenizer in memory and runs
``TrainJob``s one after another (a model server queues them); each job
starts from freshly initialised LoRA weights (or from an existing adapter
folder, to continue training), so a job costs seconds, not a model reload.

The loss covers only the completion tokens (and the end-of-sequence token
after them): the prompt is tokenized exactly as a serving engine tokenizes it,
then the completion's tokens follow, so what is trained is what is served.

Training is reproducible: the LoRA initialisation, dropout and batch order
come from ``seed`` alone, so the same base model, examples, settings and seed
give byte-identical ``adapter_model.safetensors`` (on the same machine and
torch build). The output is a plain PEFT folder that peft and vLLM load
unchanged; with a store it is also put into the ``AdapterStore``.

A trainer draws nothing on the screen unless asked: ``progress=True`` shows
a rich progress bar per job, a callable is told ``(step, steps, loss)`` after
each optimisation step (``TrainProgress``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from swarm.adapters.store import AdapterRef, AdapterStore
from swarm.errors import TrainingError
from swarm.serving.settings import LoraSection
from swarm.skills import Example

__all__ = ["TrainJob", "TrainProgress", "TrainResult", "Trainer", "train_lora"]

ADAPTER_NAME = "default"

#: Told ``(step, steps, loss)`` after each optimisation step (steps count from 1).
TrainProgress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainJob:
    """One adapter training request.

    Args:
        examples: the agent's local data.
        settings: LoRA shape and budget (rank, alpha, dropout, targets, lr, steps, batch).
        seed: fixes initialisation, dropout and batch order.
        init_adapter: a PEFT folder to continue training from (its rank,
            alpha and target modules are kept; ``settings`` gives the budget).
        out_dir: where the PEFT folder is written.
        label: shown on the progress bar (an agent id, say).
    """

    examples: Sequence[Example]
    settings: LoraSection
    seed: int
    out_dir: Path
    init_adapter: Path | None = None
    label: str = "train"


@dataclass(frozen=True)
class TrainResult:
    """What a job produced: the folder, its store entry, and the loss curve."""

    path: Path
    ref: AdapterRef | None
    losses: list[float] = field(repr=False)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        """Mean loss of the last tenth of the steps."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return float(np.mean(tail)) if tail else float("nan")


class Trainer:
    """A base model kept loaded, fine-tuning one LoRA adapter per job.

    Args:
        base_model_dir: a Hugging Face model folder.
        store: if given, every trained adapter is put into it.
        progress: ``True`` shows a rich progress bar per job; a ``TrainProgress``
            callable is told each step; ``False`` (the default) shows nothing.
        device: torch device for training (``"cpu"`` or ``"cuda"``).
        gate: held around every optimisation step (the model server's lock, so
            that its engine and this trainer take turns on the cores).
    """

    def __init__(
        self,
        base_model_dir: str | Path,
        *,
        store: AdapterStore | None = None,
        progress: bool | TrainProgress = False,
        device: str = "cpu",
        gate: AbstractContextManager[Any] | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.gate = gate if gate is not None else contextlib.nullcontext()
        self.base_model_dir = Path(base_model_dir)
        self.store = store
        self.progress = progress
        self.device = device
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(str(self.base_model_dir))
            base: Any = AutoModelForCausalLM.from_pretrained(
                str(self.base_model_dir), dtype="float32"
            )
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot load base model {self.base_model_dir}: {exc}") from exc
        self._base: Any = base.to(device)
        self._model: Any = None  # the PeftModel of the current job

    def run(self, job: TrainJob) -> TrainResult:
        """Train one adapter and write it to ``job.out_dir``.

        Raises:
            TrainingError: no examples, an init adapter that cannot be loaded,
                or a loss that became NaN or infinite.
            AdapterError: (a subclass) the store's validator refused the result.
        """
        import torch

        if not job.examples:
            raise TrainingError("a training job needs at least one example")
        started = time.perf_counter()
        encoded = [self._encode(ex) for ex in job.examples]
        device = torch.device(self.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(job.seed)
            model = self._fresh_adapter(job)
            losses = self._optimise(model, encoded, job)
        if not np.isfinite(losses).all():
            raise TrainingError(
                f"training diverged (loss {losses[-1]}); lower learning_rate "
                f"({job.settings.learning_rate})"
            )
        out = self._save(model, job.out_dir)
        ref = self.store.put(out) if self.store is not None else None
        return TrainResult(out, ref, losses, time.perf_counter() - started)

    def train(
        self,
        examples: Sequence[Example],
        settings: LoraSection,
        seed: int,
        out_dir: str | Path,
        init_adapter: str | Path | None = None,
    ) -> Path:
        """Convenience form of ``run``: returns the written PEFT folder."""
        init = Path(init_adapter) if init_adapter is not None else None
        job = TrainJob(examples, settings, seed, Path(out_dir), init)
        return self.run(job).path

    def generate(self, prompts: list[str], max_new_tokens: int = 12) -> list[str]:
        """Greedy completions from the adapter of the last job (the base model before any)."""
        import torch

        model = self._model if self._model is not None else self._base
        tok = self.tokenizer
        tok.padding_side = "left"
        batch = tok(prompts, return_tensors="pt", padding=True).to(self.device)
        model.eval()
        with torch.no_grad():
            out = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        texts: list[str] = tok.batch_decode(
            out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
        )
        return texts

    def _encode(self, ex: Example) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        prompt = list(tok(ex.prompt)["input_ids"])
        answer = list(tok(ex.completion, add_special_tokens=False)["input_ids"])
        answer.append(tok.eos_token_id)
        return prompt + answer, [-100] * len(prompt) + answer

    def _fresh_adapter(self, job: TrainJob) -> Any:
        """Wrap the base model in a newly initialised (or loaded) LoRA adapter."""
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
        from safetensors.torch import load_file

        if self._model is not None:
            self._base = self._model.unload()  # drop the previous job's LoRA layers
            self._model = None
        if job.init_adapter is None:
            s = job.settings
            config = LoraConfig(
                r=s.rank,
                lora_alpha=cast(Any, s.alpha),
                lora_dropout=s.dropout,
                target_modules=list(s.target_modules),
                task_type="CAUSAL_LM",
            )
            self._model = get_peft_model(self._base, config)
            return self._model
        try:
            config = LoraConfig.from_pretrained(str(job.init_adapter))
            weights = load_file(str(Path(job.init_adapter) / "adapter_model.safetensors"))
        except (OSError, ValueError) as exc:
            raise TrainingError(f"cannot load init adapter {job.init_adapter}: {exc}") from exc
        config.inference_mode = False
        self._model = get_peft_model(self._base, config)
        result: Any = set_peft_model_state_dict(self._model, weights)
        if result.unexpected_keys:
            raise TrainingError(
                f"init adapter {job.init_adapter} has keys this base model lacks: "
                f"{sorted(result.unexpected_keys)[:3]}"
            )
        return self._model

    def _optimise(
        self, model: Any, encoded: list[tuple[list[int], list[int]]], job: TrainJob
    ) -> list[float]:
        import torch

        s = job.settings
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=0.0)
        warmup = max(1, min(20, s.steps // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min(1.0, (k + 1) / warmup) * max(0.1, 1.0 - k / s.steps)
        )
        order = _batch_order(len(encoded), s.batch_size, s.steps, np.random.default_rng(job.seed))
        losses: list[float] = []
        model.train()
        with _Progress(self.progress, job.label, s.steps) as advance:
            for indices in order:
                ids, mask, labels = _collate([encoded[i] for i in indices], self._pad_id)
                with self.gate:
                    loss = model(
                        input_ids=ids.to(self.device),
                        attention_mask=mask.to(self.device),
                        labels=labels.to(self.device),
                    ).loss
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                advance(losses[-1])
        model.eval()
        return losses

    @property
    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def _save(self, model: Any, out_dir: Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out_dir), safe_serialization=True)
        config_path = out_dir / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = str(self.base_model_dir)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (out_dir / "README.md").unlink(missing_ok=True)  # peft's model card template
        return out_dir


def train_lora(
    base_model_dir: str | Path,
    examples: Sequence[Example],
    settings: LoraSection,
    seed: int,
    out_dir: str | Path,
    init_adapter: str | Path | None = None,
    *,
    progress: bool | TrainProgress = False,
    store: AdapterStore | None = None,
) -> Path:
    """Train one LoRA adapter (loads the base model: prefer one ``Trainer`` for many jobs).

    With ``store``, the adapter is also put into it.
    """
    trainer = Trainer(base_model_dir, store=store, progress=progress)
    return trainer.train(examples, settings, seed, out_dir, init_adapter)


def _batch_order(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> list[list[int]]:
    """Indices for each step: shuffled epochs, cut into batches (the last may wrap)."""
    stream: list[int] = []
    need = batch_size * steps
    while len(stream) < need:
        stream.extend(int(i) for i in rng.permutation(n))
    return [stream[k * batch_size : (k + 1) * batch_size] for k in range(steps)]


def _collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    """Right-padded ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (row_ids, row_labels) in enumerate(rows):
        ids[r, : len(row_ids)] = torch.tensor(row_ids)
        mask[r, : len(row_ids)] = 1
        labels[r, : len(row_labels)] = torch.tensor(row_labels)
    return ids, mask, labels


class _Progress:
    """A rich progress bar showing the running loss, a ``TrainProgress`` callback, or nothing."""

    def __init__(self, progress: bool | TrainProgress, label: str, total: int) -> None:
        self.progress = progress
        self.label = label
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Callable[[float], None]:
        progress = self.progress
        if callable(progress):
            steps = itertools.count(1)
            return lambda loss: progress(next(steps), self.total, loss)
        if not progress:
            return lambda loss: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total, loss=float("nan"))
        return lambda loss: self._bar.update(task, advance=1, loss=loss)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
