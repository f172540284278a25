"""``TransportOptions``: the limits and timing every socket of a process shares.

Each process builds its options once, with ``TransportOptions.from_config``
(which also loads the CURVE keys under ``security: curve``), and hands them to
every ``Endpoint`` it opens.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarm.transport.security import CurveSecurity
from swarm.transport.settings import TransportSection
from swarm.wire.codec import MAX_BATCH

__all__ = ["TransportOptions"]


@dataclass(frozen=True)
class TransportOptions:
    """Limits and timing shared by every socket of a process."""

    max_message_bytes: int = 256 * 1024 * 1024
    heartbeat_ms: int = 1000
    liveness: int = 3
    hwm: int = 100_000
    drain_batch: int = 1024
    max_batch: int = 512
    max_batch_bytes: int = 256 * 1024
    inbox_max: int = 100_000
    dedup_window: int = 100_000
    backoff_max_ms: int = 32_000
    busy_poll_us: int = 300
    # Slow is not dead: a peer the machine starves for a few seconds misses its
    # heartbeats (``timeout_s``), but its names (host name, agent routes, CURVE
    # key) stay bound to it for ``silence_s`` of silence, so no other peer can take
    # them over meanwhile; the coordinator drops a host after the same silence.
    silence_s: float = 30.0
    security: CurveSecurity | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= MAX_BATCH:  # a receiver refuses longer batches
            raise ValueError(f"max_batch must be 1 to {MAX_BATCH}, got {self.max_batch}")

    @classmethod
    def from_config(
        cls, section: TransportSection, security: CurveSecurity | None = None
    ) -> TransportOptions:
        """Options from the config's ``transport`` section.

        With ``security: curve`` and no ``security`` given, the keys are loaded from
        ``keys_dir`` here: every process builds its options through this one
        call, so the setting reaches every socket it opens.

        Raises:
            ConfigError: ``security: curve`` and the keys are missing or unusable.
        """
        if security is None:
            security = CurveSecurity.from_config(section)
        return cls(
            max_message_bytes=section.max_message_bytes,
            heartbeat_ms=section.heartbeat_ms,
            liveness=section.liveness,
            busy_poll_us=section.busy_poll_us,
            silence_s=max(section.silence_s, 10 * section.heartbeat_ms * section.liveness / 1000.0),
            security=security,
        )

    @property
    def timeout_s(self) -> float:
        """How long a silent peer is considered alive: ``heartbeat_ms * liveness``."""
        return self.heartbeat_ms * self.liveness / 1000.0
