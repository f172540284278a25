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
def vllm_engine(tiny_model: Path) -> Iterator[Any]:
    """One real vLLM engine with LoRA enabled on the tiny model, shared by the session."""
    from vllm import LLM

    engine = LLM(
        model=str(tiny_model),
        enable_lora=True,
        max_loras=8,
        max_lora_rank=16,
        max_model_len=512,
        gpu_memory_utilization=0.3,
        dtype="float32",
        enforce_eager=True,
        seed=0,
    )
    yield engine
    del engine
