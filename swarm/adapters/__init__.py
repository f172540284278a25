"""Adapters: the machine's content-addressed store of LoRA adapters and their validation.

``AdapterStore`` keeps each PEFT folder once under its weights' sha256 (the one
store per machine that the model server, the hosts and the lineage share);
``AdapterValidator`` checks an untrusted adapter against a base model;
``swarm.adapters.peft_config`` reads configs without evaluating patterns and
``swarm.adapters.tensorfile`` reads safetensors bytes with bounds checks.
"""

from __future__ import annotations

from swarm.adapters.peft_config import CONFIG_FILE
from swarm.adapters.store import COMPLETE_MARKER, AdapterRef, AdapterStore
from swarm.adapters.validate import (
    WEIGHTS_FILE,
    AdapterValidator,
    CheckedAdapter,
    adapter_sha256,
    is_sha256,
    normal_form,
)

__all__ = [
    "AdapterRef",
    "AdapterStore",
    "AdapterValidator",
    "CheckedAdapter",
    "COMPLETE_MARKER",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "adapter_sha256",
    "is_sha256",
    "normal_form",
]
