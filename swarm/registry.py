"""Named registries for extension points (roles, protocols, backends, matchmakers).

A registry maps a name to an object (usually a class). Names are registered
in code with a decorator or by third parties through an entry-point group
(``swarm.roles``, ``swarm.protocols``, ``swarm.backends``,
``swarm.matchmakers``, ``swarm.skills``), loaded the first time a name is
looked up; a registry built with ``load=`` turns what an entry point loads
into its item (the skill registry calls a factory). A name registered twice is
an error, never a silent override.

An entry may declare the settings it reads from its config section as a
``msgspec.Struct`` class: passed as ``settings=`` when registering, or as the
object's ``settings_schema`` attribute (how an entry point declares it). The
config validates the section's other keys against that schema, exactly as for
a built-in entry. Keys the section itself uses (``reserved``, e.g. ``name``)
cannot be settings of an entry.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Generic, TypeVar

import msgspec

from swarm.errors import RegistryError

__all__ = ["Registry"]

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class Registry(Generic[T]):
    """Names to objects of one kind, open to entry points of ``group``."""

    def __init__(self, kind: str, group: str, *, reserved: Iterable[str] = (),
                 load: Callable[[str, Any], T] | None = None) -> None:
        """A registry of ``kind`` (named in errors) open to the entry-point ``group``.

        Args:
            reserved: keys of the section that names an entry (no setting may use one).
            load: ``load(name, obj)`` turns what entry point ``name`` loads into the
                registered item (raising to refuse it); default: the object as it is.
        """
        self.kind = kind
        self.group = group
        self.reserved = frozenset(reserved)
        self._load = load
        self._items: dict[str, T] = {}
        self._settings: dict[str, type[msgspec.Struct] | None] = {}
        self._entry_points_loaded = False

    def register(self, name: str, item: T, *, settings: type[msgspec.Struct] | None = None) -> T:
        """Register ``item`` under ``name``, with the schema of its settings.

        Args:
            name: what a config names it by.
            item: the registered object.
            settings: the ``msgspec.Struct`` class of its settings; ``None``: the
                item's ``settings_schema`` attribute, if it has one, else no settings.

        Raises:
            RegistryError: the name is empty or already taken; the schema is not a
                Struct class or uses a reserved key.
        """
        if not _NAME.match(name):  # ASCII: a config can name nothing else (swarm.settings.Name)
            raise RegistryError(
                f"{self.kind} name {name[:70]!r} must be 1 to 64 ASCII letters, digits, '-' or '_'"
            )
        if name in self._items and self._items[name] is not item:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {_where(self._items[name])})"
            )
        schema = self._schema(name, settings if settings is not None else _declared(item))
        self._items[name] = item
        self._settings[name] = schema
        return item

    def decorator(self, name: str, *, settings: type[msgspec.Struct] | None = None
                  ) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""

        def wrap(item: T) -> T:
            return self.register(name, item, settings=settings)

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a name (for notebooks and tests that redefine a role)."""
        self._items.pop(name, None)
        self._settings.pop(name, None)

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

    def settings(self, name: str) -> type[msgspec.Struct] | None:
        """The settings schema ``name`` declared (``None``: it takes no settings).

        Raises:
            RegistryError: unknown name (see ``get``).
        """
        self.get(name)
        return self._settings[name]

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
                item = entry.load()
                self.register(entry.name, self._load(entry.name, item) if self._load else item)
            except Exception as exc:  # a broken plugin must not take the registry down
                raise RegistryError(
                    f"{self.kind} {entry.name!r} from entry point {entry.value!r} failed to load: {exc}"
                ) from exc


    def _schema(self, name: str, schema: Any) -> type[msgspec.Struct] | None:
        if schema is None:
            return None
        if not (isinstance(schema, type) and issubclass(schema, msgspec.Struct)):
            raise RegistryError(f"{self.kind} {name!r}: its settings must be a msgspec.Struct "
                                f"class, not {schema!r}")
        taken = sorted(self.reserved.intersection(schema.__struct_fields__))
        if taken:
            raise RegistryError(f"{self.kind} {name!r}: setting(s) {', '.join(taken)} of "
                                f"{_where(schema)} are keys of the section itself; rename them")
        return schema


def _declared(item: object) -> Any:
    """The settings schema an object declares itself (``settings_schema``), or ``None``."""
    return getattr(item, "settings_schema", None)


def _where(item: object) -> str:
    if not hasattr(item, "__qualname__"):  # an instance (a skill): name its type
        item = type(item)
    module = getattr(item, "__module__", "?")
    name = getattr(item, "__qualname__", repr(item))
    return f"{module}.{name}"
