"""The ``Backend`` protocol every inference engine implements, and its result type.

A backend serves many agents' LoRA adapters on one base model. A request
names its adapter by content hash (the sha256 of the adapter's
``adapter_model.safetensors`` bytes; ``None`` is the base model), never by a
reusable name, so a new version of an adapter is a new hash and can never be
answered with stale weights. A backend finds the folder of a hash through a
``Resolver`` (the adapter store, or a plain mapping in tests).

Requests are ``swarm.wire.codec.GenRequest`` structs, the same objects that arrive
in a ``Generate`` message, so the model server hands them on unconverted. A
backend sees one sample per request (the server turns ``n`` samples into ``n``
requests, ``one_sample_each``); it serves a prompt as it is and a chat
rendered by the model's chat template (``chat_token_ids``), honours
``temperature``, ``top_p``, ``seed``, ``stop`` and ``max_tokens``, and holds
a ``json_schema`` by guided decoding where it can (``swarm.serving.structured``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec

from swarm.adapters.validate import is_sha256
from swarm.errors import AdapterError, AdapterNotFound, RequestError
from swarm.serving.structured import parse_schema
from swarm.wire.codec import (
    MAX_SAMPLES,
    MAX_SCHEMA,
    MAX_SEED,
    MAX_STOP_CHARS,
    MAX_STOPS,
    MAX_TEMPERATURE,
    MAX_TOKENS,
    MAX_TURNS,
    ChatTurn,
    GenRequest,
)

__all__ = [
    "GenRequest",
    "GenResult",
    "Backend",
    "Resolver",
    "MappingResolver",
    "check_ref",
    "check_requests",
    "one_sample_each",
    "cut_at_stop",
    "chat_token_ids",
    "ROLES",
]

#: The roles of a chat turn.
ROLES = ("system", "user", "assistant")


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


def check_requests(requests: Sequence[GenRequest], *, one_sample: bool = False) -> None:
    """Refuse malformed requests before they reach an engine.

    A request built in this process skips the wire's bounds, so every bound is
    checked here again (NaN fails every one). A backend passes ``one_sample``:
    it serves one sample per request, the model server having split ``n``
    (``one_sample_each``).

    Raises:
        AdapterError: an adapter ref is not a sha256 digest.
        RequestError: both a prompt and a chat; ``max_tokens``, ``temperature``,
            ``top_p``, ``seed``, ``n`` or ``stop`` out of bounds; a chat turn of
            an unknown role; a ``json_schema`` that is not a JSON schema.
    """
    for i, req in enumerate(requests):
        where = f"request {i}"
        if bool(req.prompt) == bool(req.messages):
            raise RequestError(f"{where}: give a prompt or chat messages (one of them, not "
                               f"{'both' if req.prompt else 'neither'})")
        if len(req.messages) > MAX_TURNS:
            raise RequestError(f"{where}: at most {MAX_TURNS} chat turns, got {len(req.messages)}")
        for turn in req.messages:
            if turn.role not in ROLES:
                raise RequestError(f"{where}: chat role must be one of {ROLES}, got {turn.role!r}")
        if not 1 <= req.max_tokens <= MAX_TOKENS:
            raise RequestError(f"{where}: max_tokens must be in 1..{MAX_TOKENS}, got {req.max_tokens}")
        if not 0 <= req.temperature <= MAX_TEMPERATURE:  # False for NaN too
            raise RequestError(f"{where}: temperature must be in 0..{MAX_TEMPERATURE}, "
                               f"got {req.temperature}")  # fmt: skip
        if not 0 < req.top_p <= 1:
            raise RequestError(f"{where}: top_p must be in (0, 1], got {req.top_p}")
        if req.seed is not None and not 0 <= req.seed <= MAX_SEED:
            raise RequestError(f"{where}: seed must be in 0..{MAX_SEED}, got {req.seed}")
        if not 1 <= req.n <= MAX_SAMPLES:
            raise RequestError(f"{where}: n must be in 1..{MAX_SAMPLES}, got {req.n}")
        if one_sample and req.n != 1:
            raise RequestError(f"{where}: a backend serves one sample per request (n={req.n}): "
                               f"split it with one_sample_each, as the model server does")
        if len(req.stop) > MAX_STOPS or not all(
                isinstance(s, str) and 1 <= len(s) <= MAX_STOP_CHARS for s in req.stop):
            raise RequestError(f"{where}: at most {MAX_STOPS} stop strings of 1 to "
                               f"{MAX_STOP_CHARS} characters")
        if req.json_schema is not None:
            if len(req.json_schema) > MAX_SCHEMA:
                raise RequestError(f"{where}: json_schema is over {MAX_SCHEMA} characters")
            try:
                parse_schema(req.json_schema)
            except RequestError as exc:
                raise RequestError(f"{where}: {exc}") from None
        if req.adapter is not None:
            check_ref(req.adapter)


def one_sample_each(requests: Sequence[GenRequest]) -> tuple[list[GenRequest], list[int]]:
    """The requests with ``n`` samples as ``n`` requests of one sample, and each one's ``n``.

    Sample ``j`` of a seeded request gets seed ``seed + j`` (wrapping within
    ``MAX_SEED``), so the ``n`` samples differ and the same request gives the
    same samples again; backends see only ``n == 1``.
    """
    flat: list[GenRequest] = []
    counts: list[int] = []
    for req in requests:
        counts.append(req.n)
        if req.n == 1:
            flat.append(req)
            continue
        for j in range(req.n):
            seed = None if req.seed is None else (req.seed + j) % (MAX_SEED + 1)
            flat.append(msgspec.structs.replace(req, n=1, seed=seed))
    return flat, counts


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (not included), and whether one was found."""
    if not stop:
        return text, False
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True


def chat_token_ids(tokenizer: Any, messages: Sequence[ChatTurn]) -> list[int]:
    """The token ids of a chat, rendered with the tokenizer's chat template, ending with
    the assistant's turn to speak (how every backend here feeds a chat to its model).

    Raises:
        RequestError: the model has no chat template, or its template refused the chat.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise RequestError("this model has no chat template: send a prompt instead of messages")
    turns = [{"role": t.role, "content": t.content} for t in messages]
    try:
        ids = tokenizer.apply_chat_template(turns, tokenize=True, add_generation_prompt=True)
    except Exception as exc:  # a template that refuses these turns (roles, alternation...)
        raise RequestError(f"the model's chat template refused this chat: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(ids, Mapping):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(t) for t in ids]
