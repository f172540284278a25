"""One flat hierarchy of the errors swarm raises.

A class exists only where a caller handles the case differently. Across a
process boundary an error travels as data (``swarm.wire.codec.Error``), never as a
dropped connection; ``code`` is the stable identifier used there.
"""

from __future__ import annotations

__all__ = [
    "SwarmError",
    "ConfigError",
    "WireError",
    "TransportError",
    "PeerUnavailable",
    "RemoteError",
    "TransferError",
    "SecurityError",
    "AdapterError",
    "AdapterFormatError",
    "AdapterPickleError",
    "AdapterCorruptError",
    "AdapterKeyError",
    "AdapterDtypeError",
    "AdapterRankError",
    "AdapterShapeError",
    "AdapterNonFiniteError",
    "AdapterNormError",
    "AdapterNotFound",
    "BackendError",
    "RequestError",
    "StructuredOutputError",
    "ModelError",
    "TrainingError",
    "LineageError",
    "MatchmakerError",
    "ReportError",
    "RegistryError",
    "AgentError",
    "UnknownAgent",
    "MessageTypeError",
    "AskTimeout",
    "HandlerError",
    "ToolError",
    "SandboxError",
    "error_for_code",
]


class SwarmError(Exception):
    """Base of every error swarm raises on purpose."""

    code = "swarm"


class ConfigError(SwarmError):
    """A config file or override is invalid; the message names key, value and what is allowed."""

    code = "config"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class WireError(SwarmError):
    """Bytes that are not a valid message: garbage, truncated, oversize, unknown type or version.

    ``kind`` names the case (``garbage, truncated, unknown_type, bad_version,
    invalid, frames, oversize``); the ``Error`` reply's code is ``wire.<kind>``.
    """

    code = "wire"

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        self.kind = kind
        super().__init__(reason)


class TransportError(SwarmError):
    """A socket-level failure: unroutable peer, timeout, closed transport."""

    code = "transport"


class PeerUnavailable(TransportError):
    """The peer is unknown, unroutable or stopped answering heartbeats."""

    code = "peer_unavailable"


class RemoteError(TransportError):
    """The peer answered a request with an ``Error`` message; ``code`` and ``reason`` are its."""

    code = "remote"

    def __init__(self, code: str, reason: str) -> None:
        self.remote_code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class TransferError(TransportError):
    """An adapter transfer failed for good (after its retries)."""

    code = "transfer"


class SecurityError(TransportError):
    """A peer's claim was refused: a host name or agents that another live peer joined with.

    The refused peer gets ``Error(code="security")`` and nothing changes. A
    restarted host keeps its routing id (``swarm.runtime.process``), so it is the same
    peer and is not refused.
    """

    code = "security"


class AdapterError(SwarmError):
    """An adapter is unusable; the subclasses below name the exact problem."""

    code = "adapter"


class AdapterFormatError(AdapterError):
    """An adapter folder lacks a file or its ``adapter_config.json`` is not a usable LoRA config."""

    code = "adapter.format"


class AdapterPickleError(AdapterError):
    """An adapter ships pickle weights (``.bin``, ``.pt``); refused without ever unpickling."""

    code = "adapter.pickle"


class AdapterCorruptError(AdapterError):
    """``adapter_model.safetensors`` is truncated or its header is malformed."""

    code = "adapter.corrupt"


class AdapterKeyError(AdapterError):
    """A tensor name matches no LoRA module of the base model and the config, or one is missing."""

    code = "adapter.key"


class AdapterDtypeError(AdapterError):
    """A tensor has a dtype other than float32, float16 or bfloat16."""

    code = "adapter.dtype"


class AdapterRankError(AdapterError):
    """A LoRA factor's rank disagrees with ``adapter_config.json`` or with its partner factor."""

    code = "adapter.rank"


class AdapterShapeError(AdapterError):
    """A LoRA factor's input or output size does not fit the base model's layer."""

    code = "adapter.shape"


class AdapterNonFiniteError(AdapterError):
    """A tensor holds NaN or infinity."""

    code = "adapter.nonfinite"


class AdapterNormError(AdapterError):
    """A layer's weight update ``scale * B @ A`` exceeds the norm bound."""

    code = "adapter.norm"


class AdapterNotFound(AdapterError):
    """No adapter with this content hash is in the store."""

    code = "adapter.not_found"


class BackendError(SwarmError):
    """The inference backend could not serve a request."""

    code = "backend"


class RequestError(BackendError):
    """A generation request is malformed: a sampling value out of bounds (NaN included),
    both or neither of prompt and chat, a JSON schema that is not one."""

    code = "backend.request"


class StructuredOutputError(BackendError):
    """An answer does not match the JSON schema its request gave (cut off by
    ``max_tokens``, or a backend without guided decoding that did not get it right)."""

    code = "backend.structured"


class ModelError(SwarmError):
    """A base model cannot be found, built or loaded (``model.path``)."""

    code = "model"


class TrainingError(SwarmError):
    """A LoRA training job failed."""

    code = "training"


class LineageError(SwarmError):
    """The lineage store refused an operation (unknown ref, lost compare-and-swap, bad path)."""

    code = "lineage"


class MatchmakerError(SwarmError):
    """Profiles or state given to a matchmaker are invalid (wrong length, NaN, bad state)."""

    code = "matchmaker"


class ReportError(SwarmError):
    """A host's answer to a ``Step`` is invalid (an agent or pair it was not given, a NaN score,
    an adapter not in the store); the coordinator drops that host's results for the round."""

    code = "report"


class RegistryError(SwarmError):
    """A role, protocol or backend name is unknown or registered twice."""

    code = "registry"


class AgentError(SwarmError):
    """An agent message failed (base of the cases below; a role catches this for all)."""

    code = "agent"


class UnknownAgent(AgentError):
    """No agent of that id is in the swarm (or its host cannot be reached to deliver)."""

    code = "agent.unknown"


class MessageTypeError(AgentError):
    """A message of a type no one registered, or a body that does not decode as its type."""

    code = "agent.type"


class AskTimeout(AgentError):
    """An ``ask`` got no answer within its timeout."""

    code = "agent.timeout"


class HandlerError(AgentError):
    """The recipient's handler raised, or the recipient has no handler for the message."""

    code = "agent.handler"


class ToolError(AgentError):
    """A tool cannot be offered (its signature, its name), or a tool call failed."""

    code = "agent.tool"


class SandboxError(SwarmError):
    """The evaluation sandbox cannot run here (not root, no user ``swarm-sandbox``, namespaces
    refused) or was asked for something it refuses (a file outside its working copy, limits out
    of bounds); the message says how to fix it. Code under evaluation that fails is a
    ``SandboxResult``, never this."""

    code = "sandbox"


def error_for_code(code: str, reason: str) -> SwarmError:
    """The typed error an ``Error`` message's ``code`` names (``RemoteError`` for a code no
    class here has), so a caller catches ``StructuredOutputError`` and not a string."""
    classes: dict[str, type[SwarmError]] = {}
    stack: list[type[SwarmError]] = [SwarmError]
    while stack:
        cls = stack.pop()
        classes.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    found = classes.get(code)
    if found is None and code.split(".")[0] == WireError.code:  # wire.invalid, wire.oversize...
        return WireError(reason, kind=code.partition(".")[2] or "invalid")
    if found is None or found is RemoteError:
        return RemoteError(code, reason)
    try:
        return found(reason)
    except TypeError:  # a class that needs more than a reason
        return RemoteError(code, reason)
