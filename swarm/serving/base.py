"""The ``Backend`` protocol every inference engine implements, and its result type.

A backend serves many agents' LoRA adapters on one base model. A request
names its adapter by content hash (the sha256 of the adapter's
``adapter_model.safetensors`` bytes; ``None`` is the base model), never by a
reusable name, so a new version of an adapter is a new hash and can never be
answered with stale weights. A backend finds the folder of a hash through a
``Resolver`` (the adapter store, or a plain mapping in tests).

Requests are ``swarm.wire.codec.GenRequest`` structs, the same objects that arrive
in a ``Generate`` message, so the model server hands them on unconverted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from swarm.adapters.validate import is_sha256
from swarm.errors import AdapterError, AdapterNotFound, BackendError
from swarm.wire.codec import MAX_TEMPERATURE, MAX_TOKENS, GenRequest

__all__ = [
    "GenRequest",
    "GenResult",
    "Backend",
    "Resolver",
    "MappingResolver",
    "check_ref",
    "check_requests",
]


#: Finds the PEFT folder of an adapter by content hash; raises ``AdapterError`` if unknown.
Resolver = Callable[[str], Path]


class GenResult(msgspec.Struct, frozen=True, kw_only=True):
    """One completion: its text, the generated token ids (empty where a backend cannot
    tell them) and why generation stopped (``"stop"``, ``"length"`` or ``None``)."""

    text: str
    token_ids: list[int] = []
    finish_reason: str | None = None


@runtime_checkable
class Backend(Protocol):
    """An inference engine serving a base model and many LoRA adapters at once."""

    name: str

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Complete every request (one batch, adapters mixed); results in request order.

        Raises:
            AdapterError: an adapter is unknown or invalid.
            BackendError: the engine failed or a request is malformed.
        """
        ...

    def load_adapter(self, ref: str) -> None:
        """Make the adapter with content hash ``ref`` ready to serve (idempotent)."""
        ...

    def unload_adapter(self, ref: str) -> None:
        """Drop the adapter ``ref`` from the engine (a no-op when it is not loaded)."""
        ...

    def loaded_adapters(self) -> list[str]:
        """Hashes of the adapters held now, least recently used first."""
        ...

    def close(self) -> None:
        """Release the engine and its memory."""
        ...


class MappingResolver:
    """A ``Resolver`` over a mutable mapping of content hash to adapter folder, asking
    the resolvers it was ``chain``-ed to (adapter stores, say) for hashes it lacks.

    A fallback that raises ``AdapterNotFound`` passes the question on; any other
    ``AdapterError`` (the store has the hash but the adapter is invalid) is the answer.
    """

    def __init__(self, paths: Mapping[str, Path | str] | None = None) -> None:
        self._paths = {ref: Path(p) for ref, p in (paths or {}).items()}
        self._fallbacks: list[Resolver] = []

    def add(self, ref: str, folder: Path | str) -> str:
        """Map ``ref`` to ``folder``; returns ``ref``."""
        self._paths[check_ref(ref)] = Path(folder)
        return ref

    def chain(self, resolver: Resolver) -> None:
        """Ask ``resolver`` (after the mapping and earlier fallbacks) for unknown hashes."""
        self._fallbacks.append(resolver)

    def __call__(self, ref: str) -> Path:
        folder = self._paths.get(ref)
        if folder is not None:
            return folder
        for resolver in self._fallbacks:
            try:
                return resolver(ref)
            except AdapterNotFound:  # a resolver that knows the hash but refuses it says why
                continue
        raise AdapterNotFound(f"unknown adapter {ref[:12]}: not in this resolver")


def check_ref(ref: str) -> str:
    """Return ``ref`` if it is a sha256 hex digest.

    Raises:
        AdapterError: ``ref`` is not 64 lowercase hex digits.
    """
    if not isinstance(ref, str) or not is_sha256(ref):
        raise AdapterError(f"adapter ref {ref!r} is not a sha256 hex digest")
    return ref


def check_requests(requests: Sequence[GenRequest]) -> None:
    """Refuse malformed requests before they reach an engine.

    Raises:
        AdapterError: an adapter ref is not a sha256 digest.
        BackendError: ``max_tokens`` outside 1..``MAX_TOKENS`` or ``temperature``
            not a number in 0..``MAX_TEMPERATURE`` (NaN included).
    """
    for i, req in enumerate(requests):
        if not 1 <= req.max_tokens <= MAX_TOKENS:
            raise BackendError(f"request {i}: max_tokens must be in 1..{MAX_TOKENS}, got {req.max_tokens}")
        if not 0 <= req.temperature <= MAX_TEMPERATURE:  # False for NaN too
            raise BackendError(f"request {i}: temperature must be in 0..{MAX_TEMPERATURE}, "
                               f"got {req.temperature}")  # fmt: skip
        if req.adapter is not None:
            check_ref(req.adapter)
