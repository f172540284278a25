"""``local``: every agent trains on its own data; nothing is exchanged (a baseline)."""

from __future__ import annotations

from swarm.protocols.base import Protocol
from swarm.protocols.registry import protocol

__all__ = ["Local"]


@protocol("local")
class Local(Protocol):
    """No pairs, no exchange."""
