"""The ``hf`` backend: transformers + peft, for machines without vLLM.

One base model wrapped in a ``PeftModel`` that holds many named adapters (the
name is the content hash). A batch is served group by group: the requests of
one adapter (and one sampling setting) run as one left-padded ``generate``
call with that adapter active; base-model requests run with adapters
disabled. A chat is fed as the token ids of the model's chat template, a JSON
schema is held by xgrammar's logits processor (when xgrammar is installed;
else the server's check is all), stop strings end a sample and are cut from
its text, and a seed is applied inside a forked RNG.
Adapters beyond ``max_adapters`` are deleted least recently used first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarm.errors import AdapterError, BackendError, RequestError
from swarm.serving.base import (
    GenRequest,
    GenResult,
    Resolver,
    chat_token_ids,
    check_ref,
    check_requests,
    cut_at_stop,
)

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
        self._compiler: Any = None  # xgrammar's grammar compiler, made on the first schema

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete every request, one padded ``generate`` per adapter and setting.

        Raises:
            AdapterError: an adapter is unknown or peft refused it.
            RequestError: a malformed request (or a chat for a model without a template).
            BackendError: a generation failure.
        """
        check_requests(requests, one_sample=True)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, req in enumerate(requests):
            # A seeded request runs alone, so that its sample does not depend on its batch;
            # so does one with a schema and stop strings (xgrammar's processor cannot take
            # the padding of a row that stopped before its grammar ended).
            alone = req.seed is not None or (req.json_schema is not None and bool(req.stop))
            key = (req.adapter, req.max_tokens, req.temperature, req.top_p, req.seed,
                   tuple(req.stop), req.json_schema, i if alone else -1)
            groups.setdefault(key, []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        with self._lock:
            wanted = {r.adapter for r in requests if r.adapter is not None}
            for name in wanted:
                self._acquire(name, keep=wanted)
            for idx in groups.values():
                for start in range(0, len(idx), self.batch_size):
                    chunk = idx[start : start + self.batch_size]
                    outs = self._run([requests[i] for i in chunk])
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

    def _run(self, reqs: list[GenRequest]) -> list[GenResult]:
        """One padded ``generate`` for requests of one adapter and one setting."""
        import contextlib

        import torch

        first = reqs[0]
        rows = [chat_token_ids(self.tokenizer, r.messages) if r.messages
                else list(self.tokenizer(r.prompt)["input_ids"]) for r in reqs]
        ids, mask = _left_padded(rows, self.tokenizer.pad_token_id)
        ref = first.adapter
        if ref is not None:
            self.model.set_adapter(ref)
            runner, ctx = self.model, contextlib.nullcontext()
        elif self.model is not None:
            runner, ctx = self.model, self.model.disable_adapter()
        else:
            runner, ctx = self.base, contextlib.nullcontext()
        options: dict[str, Any] = {"do_sample": False}
        if first.temperature > 0:
            options = {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p}
        if first.stop:
            options.update(stop_strings=list(first.stop), tokenizer=self.tokenizer)
        if first.json_schema is not None:
            processor = self._guide(first.json_schema)
            if processor is not None:
                options["logits_processor"] = [processor]
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        try:
            with ctx, torch.inference_mode(), torch.random.fork_rng(devices=devices):
                if first.seed is not None:
                    torch.manual_seed(first.seed)
                out = runner.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=first.max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    **options,
                )
        except Exception as exc:
            raise BackendError(f"transformers generate failed: {exc}") from exc
        new = out[:, ids.shape[1] :]
        return [self._result(row.tolist(), first.max_tokens, first.stop) for row in new]

    def _guide(self, schema: str) -> Any:
        """xgrammar's logits processor for ``schema`` (``None`` without xgrammar: checked only)."""
        try:
            import xgrammar as xgr
            from xgrammar.contrib.hf import LogitsProcessor
        except ImportError:
            return None
        if self._compiler is None:
            vocab = int(self.base.config.vocab_size)
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab)
            self._compiler = xgr.GrammarCompiler(info)
        try:
            grammar = self._compiler.compile_json_schema(schema, any_whitespace=False)
        except Exception as exc:
            raise RequestError(f"json_schema cannot be compiled to a grammar: {exc}") from exc
        return LogitsProcessor(grammar)  # one per generate call: it keeps its matchers' state

    def _result(self, ids: list[int], max_tokens: int, stop: Sequence[str]) -> GenResult:
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[: ids.index(eos) + 1]
            reason = "stop"
        else:
            reason = "length" if len(ids) >= max_tokens else "stop"
        text, cut = cut_at_stop(str(self.tokenizer.decode(ids, skip_special_tokens=True)), stop)
        return GenResult(text=text, token_ids=ids, finish_reason="stop" if cut else reason)


def _left_padded(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Token rows left-padded to one width, and their attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
    return ids, mask
