"""The ``hf`` backend: transformers + peft, for machines without vLLM.

One base model wrapped in a ``PeftModel`` that holds many named adapters (the
name is the content hash). A batch is served group by group: the requests of
one adapter (and one sampling setting) run as one padded ``generate`` call
with that adapter active; base-model requests run with adapters disabled.
Adapters beyond ``max_adapters`` are deleted least recently used first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarm.errors import AdapterError, BackendError
from swarm.serving.base import GenRequest, GenResult, Resolver, check_ref, check_requests

__all__ = ["HFBackend"]


class HFBackend:
    """A transformers model with peft adapters, addressed by content hash.

    Args:
        model: base model folder or hub id.
        resolver: content hash -> PEFT adapter folder.
        max_adapters: adapters held in memory (the LRU size).
        dtype: torch dtype name of the weights.
        device: torch device.
        batch_size: most prompts in one ``generate`` call.
    """

    name = "hf"

    def __init__(
        self,
        model: str | Path,
        resolver: Resolver,
        *,
        max_adapters: int = 8,
        dtype: str = "float32",
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.resolver = resolver
        self.capacity = max_adapters
        self.batch_size = batch_size
        self.device = device
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(model))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        base: Any = AutoModelForCausalLM.from_pretrained(str(model), dtype=getattr(torch, dtype))
        self.base: Any = base.to(device)
        self.base.eval()
        self.model: Any = None  # the PeftModel, once a first adapter is loaded
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.RLock()

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete every request, one padded ``generate`` per adapter and setting.

        Raises:
            AdapterError: an adapter is unknown or peft refused it.
            BackendError: a malformed request or a generation failure.
        """
        check_requests(requests)
        groups: dict[tuple[str | None, int, float], list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault((req.adapter, req.max_tokens, req.temperature), []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        with self._lock:
            wanted = {r.adapter for r in requests if r.adapter is not None}
            for name in wanted:
                self._acquire(name, keep=wanted)
            for (ref, max_tokens, temperature), idx in groups.items():
                for start in range(0, len(idx), self.batch_size):
                    chunk = idx[start : start + self.batch_size]
                    prompts = [requests[i].prompt for i in chunk]
                    outs = self._run(ref, prompts, max_tokens, temperature)
                    for i, out in zip(chunk, outs, strict=True):
                        results[i] = out
        return [r for r in results if r is not None]

    def load_adapter(self, ref: str) -> None:
        """Load the adapter ``ref`` into the peft model (idempotent).

        Raises:
            AdapterError: unknown hash, or peft refused the adapter.
        """
        with self._lock:
            self._acquire(check_ref(ref), keep={ref})

    def unload_adapter(self, ref: str) -> None:
        """Delete the adapter ``ref`` from the peft model."""
        with self._lock:
            if self._loaded.pop(ref, 0) is not None or self.model is None:
                return
            self.model.delete_adapter(ref)

    def loaded_adapters(self) -> list[str]:
        """Hashes of the adapters held, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def close(self) -> None:
        """Drop the model (memory is freed when the last reference goes)."""
        self.model = None
        self._loaded.clear()

    def _acquire(self, ref: str, keep: set[str]) -> None:
        if ref in self._loaded:
            self._loaded.move_to_end(ref)
            return
        folder = Path(self.resolver(ref))
        if not (folder / "adapter_model.safetensors").is_file():
            raise AdapterError(f"adapter {ref[:12]}: {folder} holds no adapter_model.safetensors")
        for old in list(self._loaded):
            if len(self._loaded) < self.capacity:
                break
            if old not in keep:
                self.unload_adapter(old)
        try:
            if self.model is None:
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.base, str(folder), adapter_name=ref)
                self.model.eval()
            else:
                self.model.load_adapter(str(folder), adapter_name=ref)
        except Exception as exc:
            raise AdapterError(f"peft refused adapter {ref[:12]}: {exc}") from exc
        self._loaded[ref] = None

    def _run(
        self, ref: str | None, prompts: list[str], max_tokens: int, temperature: float
    ) -> list[GenResult]:
        import contextlib

        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        if ref is not None:
            self.model.set_adapter(ref)
            runner, ctx = self.model, contextlib.nullcontext()
        elif self.model is not None:
            runner, ctx = self.model, self.model.disable_adapter()
        else:
            runner, ctx = self.base, contextlib.nullcontext()
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {}
        try:
            with ctx, torch.inference_mode():
                out = runner.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    do_sample=False,
                    **sampling,
                )
        except Exception as exc:
            raise BackendError(f"transformers generate failed: {exc}") from exc
        new = out[:, enc["input_ids"].shape[1] :]
        return [self._result(row.tolist(), max_tokens) for row in new]

    def _result(self, ids: list[int], max_tokens: int) -> GenResult:
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[: ids.index(eos) + 1]
            reason = "stop"
        else:
            reason = "length" if len(ids) >= max_tokens else "stop"
        text = str(self.tokenizer.decode(ids, skip_special_tokens=True))
        return GenResult(text=text, token_ids=ids, finish_reason=reason)
