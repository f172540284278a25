"""Shared fixtures: one tiny model and one vLLM engine per test session.

Starting a vLLM engine costs about 40 s on a CPU, so every test that needs a
real engine shares the session's ``vllm_engine``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama model folder built once per session (seed 0, the defaults)."""
    from swarm.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def adapter_paths() -> Any:
    """The session backend's resolver: ``adapter_paths.add(sha256, folder)`` makes an adapter
    servable by ``vllm_backend``."""
    from swarm.serving import MappingResolver

    return MappingResolver()


@pytest.fixture(scope="session")
def vllm_backend(tiny_model: Path, adapter_paths: Any) -> Iterator[Any]:
    """The session's one real vLLM engine (LoRA on, 8 adapters per step), as a ``VLLMBackend``."""
    from swarm.serving.vllm_backend import VLLMBackend

    backend = VLLMBackend(
        tiny_model,
        adapter_paths,
        max_loras=8,
        max_cpu_loras=16,
        max_lora_rank=16,
        max_model_len=512,
        gpu_memory_utilization=0.3,
        dtype="float32",
        enforce_eager=True,
        seed=0,
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def vllm_engine(vllm_backend: Any) -> Any:
    """The raw ``vllm.LLM`` of the session's ``vllm_backend`` (the same engine)."""
    return vllm_backend.engine
