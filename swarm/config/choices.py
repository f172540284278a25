"""Sections whose one key picks a registered entry, and that entry's own settings.

``model.backend``, ``matchmaker.kind`` and ``protocol.name`` name an entry of
a registry (``swarm.serving.registry.BACKENDS``,
``swarm.matching.registry.MATCHMAKERS``, ``swarm.protocols.registry.PROTOCOLS``),
built-in or third-party alike. In the YAML the entry's settings sit in the
section next to the section's own keys; in a ``SwarmConfig`` they are an
instance of the schema the entry registered, in the section's ``settings``.
``pick`` takes a raw config apart that way and checks the entry's keys;
``flatten`` puts resolved sections back together for printing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from swarm.config.explain import explain, fields_of, unknown_keys
from swarm.errors import RegistryError
from swarm.matching.registry import MATCHMAKERS
from swarm.matching.settings import MatchmakerSection
from swarm.protocols.registry import PROTOCOLS
from swarm.protocols.settings import ProtocolSection
from swarm.registry import Registry
from swarm.serving.registry import BACKENDS
from swarm.serving.settings import ModelSection

__all__ = ["Choice", "CHOICES", "Picked", "pick", "flatten"]

SETTINGS = "settings"
"""The field of a section that holds its entry's settings (never a key of the YAML)."""


@dataclass(frozen=True)
class Choice:
    """A section (``protocol``) whose key (``name``) names an entry of ``registry``."""

    section: str
    key: str
    schema: type[msgspec.Struct]
    registry: Registry[Any]

    @property
    def own(self) -> dict[str, Any]:
        """The section's own keys and their types (not its entry's settings)."""
        return {k: t for k, t in fields_of(self.schema).items() if k != SETTINGS}

    @property
    def default(self) -> Any:
        """The entry a section that names none gets."""
        return next(f.default for f in msgspec.structs.fields(self.schema) if f.name == self.key)


CHOICES = (
    Choice("model", "backend", ModelSection, BACKENDS),
    Choice("matchmaker", "kind", MatchmakerSection, MATCHMAKERS),
    Choice("protocol", "name", ProtocolSection, PROTOCOLS),
)


@dataclass(frozen=True)
class Picked:
    """What a raw section picked: the entry, its schema and the keys that are its settings."""

    choice: Choice
    name: Any
    known: bool  # the name is registered (else its keys cannot be checked; the rules say why)
    schema: type[msgspec.Struct] | None
    keys: dict[str, Any]

    def problems(self) -> Iterable[str]:
        """The entry's keys that its schema does not know."""
        if not self.known:
            return
        fields = {**self.choice.own, **(fields_of(self.schema) if self.schema else {})}
        context = f"for {self.choice.registry.kind} {self.name!r}"
        yield from unknown_keys(self.keys, fields, f"$.{self.choice.section}", context)

    def settings(self) -> Any:
        """The entry's settings, converted by its schema (``None``: it takes none).

        Raises:
            msgspec.ValidationError: a key's type or range (see ``explain``).
        """
        if self.schema is None:
            return None
        return msgspec.convert(self.keys, self.schema, strict=True)

    def explain(self, exc: msgspec.ValidationError) -> str:
        """A validation error of ``settings`` as a config problem line."""
        assert self.schema is not None
        return explain(str(exc), self.keys, self.schema, self.choice.section)


def pick(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[Picked]]:
    """``raw`` without the entries' settings keys, and what each chosen section picked."""
    base = dict(raw)
    picked = []
    for choice in CHOICES:
        section = raw.get(choice.section, {})
        if not isinstance(section, Mapping):
            continue  # the schema says what it should be
        own = {k: v for k, v in section.items() if k in choice.own}
        keys = {k: v for k, v in section.items() if k not in choice.own}
        name = own.get(choice.key, choice.default)
        known, schema = _lookup(choice.registry, name)
        if choice.section in raw:
            base[choice.section] = own
        picked.append(Picked(choice, name, known, schema, keys))
    return base, picked


def flatten(data: dict[str, Any]) -> dict[str, Any]:
    """Resolved config data (``msgspec.to_builtins``) with each entry's settings in its section."""
    for choice in CHOICES:
        section = data.get(choice.section)
        if not isinstance(section, dict):
            continue
        flat: dict[str, Any] = {}
        for key, value in section.items():
            if key == SETTINGS:
                flat.update(value or {})
            else:
                flat[key] = value
        data[choice.section] = flat
    return data


def _lookup(registry: Registry[Any], name: Any) -> tuple[bool, type[msgspec.Struct] | None]:
    if not isinstance(name, str):
        return False, None  # the schema's type check names the problem
    try:
        return True, registry.settings(name)
    except RegistryError:
        return False, None  # swarm.config.rules reports it with the other problems
