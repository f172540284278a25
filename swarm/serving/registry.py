"""The backend registry: the engines ``model.backend`` can name.

A backend is registered as a factory that takes ``(model section, model
path, resolver)`` and returns a ``Backend``, with the schema of its settings:
``@BACKENDS.decorator("name", settings=MySettings)`` in code, or an entry in
the group ``swarm.backends`` whose object (a function or a ``Backend``
class) declares ``settings_schema``::

    [project.entry-points."swarm.backends"]
    mine = "my_package.engine:MyBackend"

The section's keys other than ``ModelSection``'s own are validated against
that schema, and the factory reads them from ``section.settings``. The heavy
engines are imported only when their factory runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from swarm.errors import BackendError
from swarm.registry import Registry
from swarm.serving.base import Backend, Resolver
from swarm.serving.settings import EngineSettings, ModelSection

__all__ = ["BackendFactory", "BACKENDS", "create_backend"]

#: Builds a backend from the config's ``model`` section, the base model folder and a resolver.
BackendFactory = Callable[[ModelSection, Path, Resolver], Backend]

BACKENDS: Registry[BackendFactory] = Registry(
    "backend", "swarm.backends", reserved=ModelSection.__struct_fields__
)


def create_backend(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    """The backend ``section.backend`` names, built for ``model``.

    Raises:
        RegistryError: unknown backend name.
        BackendError: the backend's settings are incomplete.
    """
    return BACKENDS.get(section.backend)(section, model, resolver)


def _engine(section: ModelSection) -> EngineSettings:
    """The built-in engines' settings (what ``swarm.config`` puts in ``section.settings``)."""
    if not isinstance(section.settings, EngineSettings):
        raise BackendError(f"model.backend {section.backend!r} reads EngineSettings, "
                           f"not {type(section.settings).__name__}")
    return section.settings


@BACKENDS.decorator("vllm", settings=EngineSettings)
def _vllm(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    from swarm.serving.vllm_backend import VLLMBackend

    engine = _engine(section)
    return VLLMBackend(
        model,
        resolver,
        max_loras=engine.max_loras,
        max_cpu_loras=engine.max_cpu_loras,
        max_lora_rank=section.max_lora_rank,
        max_model_len=engine.max_model_len,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        dtype=engine.dtype,
    )


@BACKENDS.decorator("hf", settings=EngineSettings)
def _hf(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    from swarm.serving.hf_backend import HFBackend

    engine = _engine(section)
    dtype = "float32" if engine.dtype == "auto" else engine.dtype
    return HFBackend(model, resolver, max_adapters=engine.max_cpu_loras, dtype=dtype)


@BACKENDS.decorator("openai", settings=EngineSettings)
def _openai(section: ModelSection, model: Path, resolver: Resolver) -> Backend:
    from swarm.serving.openai_backend import OpenAIBackend

    engine = _engine(section)
    if not engine.openai_url:
        raise BackendError("model.backend is 'openai' but model.openai_url is not set")
    return OpenAIBackend(engine.openai_url, resolver, max_adapters=engine.max_cpu_loras)
