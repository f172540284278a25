"""Model serving: the ``Backend`` protocol, its vLLM, transformers and OpenAI-server
implementations, the backend registry, and the model server in front of them.

Backends are looked up by name in ``BACKENDS`` (``vllm``, ``hf``, ``openai``,
plus third-party ones from the ``swarm.backends`` entry-point group; see
``swarm.serving.registry``). The heavy engines are imported only when their
factory runs.
"""

from __future__ import annotations

from swarm.serving.base import Backend, GenRequest, GenResult, MappingResolver, Resolver
from swarm.serving.registry import BACKENDS, BackendFactory, create_backend
from swarm.serving.settings import EngineSettings, LoraSection, ModelSection, TinyModelSection

__all__ = [
    "Backend",
    "GenRequest",
    "GenResult",
    "Resolver",
    "MappingResolver",
    "BackendFactory",
    "BACKENDS",
    "create_backend",
    "EngineSettings",
    "LoraSection",
    "ModelSection",
    "TinyModelSection",
]
