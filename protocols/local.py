"""``local``: every agent trains on its own data; nothing is exchanged (a baseline)."""

from __future__ import annotations

from swarm.protocols.base import Protocol
from swarm.protocols.registry import protocol
from swarm.protocols.settings import ExchangeSettings

__all__ = ["Local"]


@protocol("local")
class Local(Protocol):
    """No pairs, no exchange."""

    # knexa's settings, so that a config switches to this baseline with protocol.name alone
    settings_schema = ExchangeSettings
