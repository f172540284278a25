"""Named registries for extension points (roles, protocols, backends).

A registry maps a name to an object (usually a class). Names are registered
in code with a decorator or by third parties through an entry-point group
(``swarm.roles``, ``swarm.protocols``, ``swarm.backends``), loaded the first
time a name is looked up. A name registered twice is an error, never a
silent override.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from importlib import metadata
from typing import Generic, TypeVar

from swarm.errors import RegistryError

__all__ = ["Registry"]

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class Registry(Generic[T]):
    """Names to objects of one kind, open to entry points of ``group``."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``.

        Raises:
            RegistryError: the name is empty or already taken.
        """
        if not _NAME.match(name):  # ASCII: a config can name nothing else (swarm.config.schema.Name)
            raise RegistryError(
                f"{self.kind} name {name[:70]!r} must be 1 to 64 ASCII letters, digits, '-' or '_'"
            )
        if name in self._items and self._items[name] is not item:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {_where(self._items[name])})"
            )
        self._items[name] = item
        return item

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""

        def wrap(item: T) -> T:
            return self.register(name, item)

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a name (for notebooks and tests that redefine a role)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as ``name``.

        Raises:
            RegistryError: unknown name, with the known names and a close match.
        """
        if name not in self._items:
            self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def names(self) -> list[str]:
        """Every registered name, entry points included, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry in metadata.entry_points(group=self.group):
            if entry.name in self._items:
                continue
            try:
                self.register(entry.name, entry.load())
            except Exception as exc:  # a broken plugin must not take the registry down
                raise RegistryError(
                    f"{self.kind} {entry.name!r} from entry point {entry.value!r} failed to load: {exc}"
                ) from exc


def _where(item: object) -> str:
    module = getattr(item, "__module__", "?")
    name = getattr(item, "__qualname__", repr(item))
    return f"{module}.{name}"
