"""The settings serving reads: the config's ``model`` section and each agent group's ``lora``.

``model.backend`` names a registered backend (``swarm.serving.registry``);
the section's keys other than its own fields are that backend's settings,
validated against the schema the backend registered and held in
``ModelSection.settings``. The built-in ``vllm``, ``hf`` and ``openai`` share
``EngineSettings``, so one config switches engine with ``model.backend`` alone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from swarm.settings import Fraction, ModuleName, Name, PathText, PosInt, Seed, Settings

__all__ = ["TinyModelSection", "EngineSettings", "ModelSection", "LoraSection"]


class TinyModelSection(Settings, frozen=True):
    """Shape of the tiny model built on the fly when ``model.path`` is ``tiny``."""

    layers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    hidden: Annotated[int, msgspec.Meta(ge=64, le=4096, multiple_of=64)] = 256
    vocab: Annotated[int, msgspec.Meta(ge=300, le=65536)] = 1024
    seed: Seed = 0


class EngineSettings(Settings, frozen=True):
    """Engine options of the built-in backends (each reads the ones it needs)."""

    max_loras: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    max_cpu_loras: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    max_model_len: Annotated[int, msgspec.Meta(ge=16, le=131_072)] = 512
    gpu_memory_utilization: Fraction = 0.3
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    openai_url: str | None = None


class ModelSection(Settings, frozen=True):
    """The base model and the engine that serves it."""

    path: PathText = "tiny"
    backend: Name = "vllm"
    tiny: TinyModelSection = msgspec.field(default_factory=TinyModelSection)
    #: The backend's own settings: an instance of the schema it registered (or ``None``).
    settings: Any = msgspec.field(default_factory=EngineSettings)
    # The model server refuses adapters of a higher rank, whichever the engine
    max_lora_rank: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    server: str | None = None  # address of a running model server to share; None: start one
    # The machine's adapter store ({name}: the swarm's name); None: <run dir>/adapters
    adapter_store: PathText | None = None


class LoraSection(Settings, frozen=True):
    """LoRA adapter shape and the local fine-tuning budget of each round."""

    rank: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    alpha: Annotated[float, msgspec.Meta(ge=1e-6, le=4096.0)] = 16.0
    dropout: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0
    # Attention and MLP: on the tiny model, rank 8 on all seven projections takes
    # held-out `reverse` to 1.0 in 300 steps; attention alone gets 0.14 (0.42 at
    # 600 steps). See bench/training.py.
    target_modules: Annotated[list[ModuleName], msgspec.Meta(min_length=1, max_length=64)] = (
        msgspec.field(default_factory=lambda: [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
        ])
    )
    learning_rate: Annotated[float, msgspec.Meta(ge=1e-12, le=10.0)] = 3e-3
    steps: PosInt = 40
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16
