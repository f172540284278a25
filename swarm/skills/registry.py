"""The skill registry: a config names skills, ``get_skill`` finds them.

A ``Skill`` turns a seeded ``numpy.random.Generator`` into ``Example``s
(prompt, completion, skill name). Register one with ``register_skill``; a name
registered twice is an error. The built-in skills (``swarm.skills.procedural``)
are registered when ``swarm.skills`` is imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from swarm.errors import RegistryError
from swarm.wire.messages import Example

__all__ = ["Skill", "register_skill", "get_skill", "skill_names"]


@dataclass(frozen=True)
class Skill:
    """A named generator of examples: ``make(rng) -> (prompt, completion)``."""

    name: str
    make: Callable[[np.random.Generator], tuple[str, str]]
    description: str = ""

    def example(self, rng: np.random.Generator) -> Example:
        """Draw one example."""
        prompt, completion = self.make(rng)
        return Example(prompt, completion, self.name)

    def examples(self, n: int, rng: np.random.Generator) -> list[Example]:
        """Draw ``n`` examples."""
        return [self.example(rng) for _ in range(n)]


_SKILLS: dict[str, Skill] = {}


def register_skill(skill: Skill) -> Skill:
    """Add ``skill`` to the registry.

    Raises:
        RegistryError: the name is taken by another skill or is not an identifier.
    """
    if not skill.name.isidentifier():
        raise RegistryError(f"skill name {skill.name!r} must be a Python identifier")
    known = _SKILLS.get(skill.name)
    if known is not None and known is not skill:
        raise RegistryError(f"skill {skill.name!r} is already registered")
    _SKILLS[skill.name] = skill
    return skill


def get_skill(name: str) -> Skill:
    """The skill registered as ``name``.

    Raises:
        RegistryError: unknown name (the message names a close one and lists the known ones).
    """
    try:
        return _SKILLS[name]
    except KeyError:
        close = difflib.get_close_matches(name, skill_names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown skill {name!r}{hint} (known: {', '.join(skill_names())})"
        ) from None


def skill_names() -> list[str]:
    """Every registered skill name, sorted."""
    return sorted(_SKILLS)
