"""One flat hierarchy of the errors swarm raises.

A class exists only where a caller handles the case differently. Across a
process boundary an error travels as data (``swarm.wire.Error``), never as a
dropped connection; ``code`` is the stable identifier used there.
"""

from __future__ import annotations

__all__ = [
    "SwarmError",
    "ConfigError",
    "WireError",
    "TransportError",
    "PeerUnavailable",
    "TransferError",
    "AdapterError",
    "BackendError",
    "TrainingError",
    "LineageError",
    "MatchmakerError",
    "RegistryError",
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
    """Bytes that are not a valid message: garbage, truncated, oversize, unknown type or version."""

    code = "wire"


class TransportError(SwarmError):
    """A socket-level failure: unroutable peer, timeout, closed transport."""

    code = "transport"


class PeerUnavailable(TransportError):
    """The peer is unknown, unroutable or stopped answering heartbeats."""

    code = "peer_unavailable"


class TransferError(TransportError):
    """An adapter transfer failed for good (after its retries)."""

    code = "transfer"


class AdapterError(SwarmError):
    """An adapter is unusable; subclasses in ``swarm.adapters`` name the exact problem."""

    code = "adapter"


class BackendError(SwarmError):
    """The inference backend could not serve a request."""

    code = "backend"


class TrainingError(SwarmError):
    """A LoRA training job failed."""

    code = "training"


class LineageError(SwarmError):
    """The lineage store refused an operation (unknown ref, lost compare-and-swap, bad path)."""

    code = "lineage"


class MatchmakerError(SwarmError):
    """Profiles or state given to a matchmaker are invalid (wrong length, NaN, bad state)."""

    code = "matchmaker"


class RegistryError(SwarmError):
    """A role, protocol or backend name is unknown or registered twice."""

    code = "registry"
