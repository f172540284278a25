"""Model serving: the ``Backend`` protocol, its vLLM, transformers and OpenAI-server
implementations, and the model server process in front of them.

Backends are looked up by name in ``BACKENDS`` (``vllm``, ``hf``, ``openai``,
plus third-party ones from the ``swarm.backends`` entry-point group). A factory
takes ``(model section, model path, resolver)`` and returns a ``Backend``; the
heavy engines are imported only when their factory runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from swarm.config.schema import ModelSection
from swarm.errors import BackendError
from swarm.registry import Registry
from swarm.serving.base import Backend, GenRequest, GenResult, MappingResolver, Resolver

__all__ = [
    "Backend",
    "GenRequest",
    "GenResult",
    "Resolver",
    "MappingResolver",
    "BackendFactory",
    "BACKENDS",
    "create_backend",
]

#: Builds a backend from the config's ``model`` section, the base model folder and a resolver.
BackendFactory = Callable[[ModelSection, Path, Resolver], Backend]

BACKENDS: Registry[BackendFactory] = Registry("backend", "swarm.backends")


def create_backend(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    """The backend ``section.backend`` names, built for ``model``.

    Raises:
        RegistryError: unknown backend name.
        BackendError: the backend's settings are incomplete.
    """
    return BACKENDS.get(section.backend)(section, model, resolver)


@BACKENDS.decorator("vllm")
def _vllm(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    from swarm.serving.vllm_backend import VLLMBackend

    return VLLMBackend(
        model,
        resolver,
        max_loras=section.max_loras,
        max_cpu_loras=section.max_cpu_loras,
        max_lora_rank=section.max_lora_rank,
        max_model_len=section.max_model_len,
        gpu_memory_utilization=section.gpu_memory_utilization,
        dtype=section.dtype,
    )


@BACKENDS.decorator("hf")
def _hf(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    from swarm.serving.hf_backend import HFBackend

    dtype = "float32" if section.dtype == "auto" else section.dtype
    return HFBackend(model, resolver, max_adapters=section.max_cpu_loras, dtype=dtype)


@BACKENDS.decorator("openai")
def _openai(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    from swarm.serving.openai_backend import OpenAIBackend

    if not section.openai_url:
        raise BackendError("model.backend is 'openai' but model.openai_url is not set")
    return OpenAIBackend(section.openai_url, resolver, max_adapters=section.max_cpu_loras)
