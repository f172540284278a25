"""The protocol registry: ``@protocol("name")`` or the entry-point group ``swarm.protocols``.

A registered class declares the schema of its settings as ``settings_schema``
(see ``swarm.protocols.base``); the config validates the ``protocol``
section's keys other than ``name`` against it. The built-in protocols are
registered when the package is imported (``swarm.protocols`` imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from swarm.protocols.base import Protocol
from swarm.protocols.settings import ProtocolSection
from swarm.registry import Registry

__all__ = ["PROTOCOLS", "protocol", "get_protocol"]

PROTOCOLS: Registry[type[Protocol]] = Registry(
    "protocol", "swarm.protocols", reserved=ProtocolSection.__struct_fields__
)

P = TypeVar("P", bound=type[Protocol])


def protocol(name: str) -> Callable[[P], P]:
    """Class decorator registering a ``Protocol`` subclass (and its ``settings_schema``) as ``name``."""

    def wrap(cls: P) -> P:
        PROTOCOLS.register(name, cls)
        cls.name = name
        return cls

    return wrap


def get_protocol(name: str) -> type[Protocol]:
    """The protocol class registered as ``name`` (built-ins and entry points)."""
    return PROTOCOLS.get(name)
