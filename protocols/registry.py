"""The protocol registry: ``@protocol("name")`` or the entry-point group ``swarm.protocols``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from swarm.protocols.base import Protocol
from swarm.registry import Registry

__all__ = ["PROTOCOLS", "protocol", "get_protocol"]

PROTOCOLS: Registry[type[Protocol]] = Registry("protocol", "swarm.protocols")

P = TypeVar("P", bound=type[Protocol])


def protocol(name: str) -> Callable[[P], P]:
    """Class decorator registering a ``Protocol`` subclass as ``name``."""

    def wrap(cls: P) -> P:
        PROTOCOLS.register(name, cls)
        cls.name = name
        return cls

    return wrap


def get_protocol(name: str) -> type[Protocol]:
    """The protocol class registered as ``name`` (built-ins and entry points)."""
    import swarm.protocols.knexa  # noqa: F401  (registers the built-in protocols)
    import swarm.protocols.local  # noqa: F401

    return PROTOCOLS.get(name)
