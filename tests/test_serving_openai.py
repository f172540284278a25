"""The ``openai`` backend against a real vLLM OpenAI server started by the test on the CPU,
with runtime LoRA loading (``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarm.errors import AdapterError
from swarm.wire.codec import GenRequest
from tests.support import api_server as start_api_server
from tests.support import random_lora
from tests.test_serving import PROMPTS, sha


@pytest.fixture(scope="module")
def loras(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, adapter_paths: Any) -> list[str]:
    """Four random adapters (the same seeds as test_serving's), servable by the session backend."""
    root = tmp_path_factory.mktemp("openai-loras")
    return [adapter_paths.add(sha(f), f)
            for f in (random_lora(tiny_model, root / f"a{i}", seed=100 + i) for i in range(4))]


@pytest.fixture(scope="module")
def api_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's OpenAI server on the tiny model with runtime LoRA loading, on a free port."""
    log = tmp_path_factory.mktemp("api") / "server.log"
    with start_api_server(tiny_model, log, "--max-model-len", "512") as url:
        yield url


@pytest.mark.slow
def test_openai_backend_loads_adapters_at_runtime_on_a_real_server(
    api_server: str, vllm_backend: Any, adapter_paths: Any, loras: list[str], tiny_model: Path,
    tmp_path: Path,
) -> None:
    from swarm.serving.openai_backend import OpenAIBackend
    from swarm.serving.vllm_backend import write_zero_adapter

    zero = write_zero_adapter(tiny_model, tmp_path / "zero")
    backend = OpenAIBackend(api_server, adapter_paths, max_adapters=3,
                            base_adapter=adapter_paths.add(sha(zero), zero))  # fmt: skip
    tuned = [GenRequest(prompt=p, adapter=ref, max_tokens=10)
             for p, ref in zip(PROMPTS[:4], loras[:4], strict=True)]  # fmt: skip
    base = [GenRequest(prompt=p, max_tokens=10) for p in PROMPTS[:2]]
    too_big = random_lora(tiny_model, tmp_path / "r32", seed=9, rank=32)
    bad = adapter_paths.add(sha(too_big), too_big)
    try:
        served_tuned = [(r.text, r.token_ids) for r in backend.generate(tuned)]
        served_base = [(r.text, r.token_ids) for r in backend.generate(base)]
        held = backend.loaded_adapters()
        mixed = [(r.text, r.token_ids) for r in backend.generate(base + tuned)]
        backend.unload_adapter(loras[0])
        listed = {m["id"] for m in httpx_models(api_server)}
        again = backend.generate(tuned[:1])[0].token_ids
        with pytest.raises(AdapterError, match="rank"):
            backend.load_adapter(bad)
        with pytest.raises(AdapterError, match="unknown adapter"):
            backend.generate([GenRequest(prompt="x", adapter="f" * 64)])
    finally:
        backend.close()
    local = [(r.text, r.token_ids) for r in vllm_backend.generate(tuned + base)]

    assert served_tuned + served_base == local
    assert mixed == served_base + served_tuned  # base answers stay base next to adapters
    assert set(held) == set(loras[:4])  # all four kept while one batch needed them
    assert loras[0] not in listed and loras[1] in listed
    assert again == local[0][1]


def httpx_models(url: str) -> list[dict[str, Any]]:
    import httpx

    data: list[dict[str, Any]] = httpx.get(f"{url}/v1/models", timeout=10).json()["data"]
    return data
