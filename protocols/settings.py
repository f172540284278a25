"""The config's ``protocol`` section and the settings of the built-in protocols.

``protocol.name`` names a registered protocol (``swarm.protocols.registry``);
the section's keys other than ``name`` are that protocol's settings, validated
against its ``settings_schema`` and held in ``ProtocolSection.settings``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from swarm.settings import Name, Settings

__all__ = ["ExchangeSettings", "ProtocolSection"]


class ExchangeSettings(Settings, frozen=True):
    """How knowledge flows inside a pair (``knexa``; ``local`` takes them and pairs no one)."""

    exchange: Literal["merge", "distill"] = "merge"
    # merge: student + merge_weight * teacher (task arithmetic), SVD back to rank r
    merge_weight: Annotated[float, msgspec.Meta(gt=0.0, le=2.0)] = 1.0


class ProtocolSection(Settings, frozen=True):
    """The round logic and how knowledge flows inside a pair."""

    name: Name = "knexa"
    #: The protocol's own settings: an instance of its ``settings_schema`` (or ``None``).
    settings: Any = msgspec.field(default_factory=ExchangeSettings)
