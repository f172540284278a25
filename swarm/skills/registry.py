"""The skill registry: a config names skills, ``get_skill`` finds them.

A ``Skill`` turns a seeded ``numpy.random.Generator`` into ``Example``s
(prompt, completion, skill name). Register one with ``register_skill``, or from
another package through the entry-point group ``swarm.skills`` (a ``Skill``,
or a zero-argument callable returning one, under the skill's own name); a name
registered twice is an error. The built-in skills (``swarm.skills.procedural``)
are registered when ``swarm.skills`` is imported. A config's file skills
(``swarm.skills.files``) are not registered: they belong to one config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from swarm.errors import RegistryError
from swarm.registry import Registry
from swarm.wire.messages import Example

__all__ = ["Skill", "SKILLS", "register_skill", "get_skill", "skill_names", "as_skill"]


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


def as_skill(name: str, obj: object) -> Skill:
    """What entry point ``name`` of ``swarm.skills`` loads, as a ``Skill``.

    Args:
        name: the entry point's name, which must be the skill's.
        obj: a ``Skill``, or a zero-argument callable returning one.

    Raises:
        RegistryError: it gives no ``Skill``, or one of another name.
    """
    skill = obj() if callable(obj) and not isinstance(obj, Skill) else obj
    if not isinstance(skill, Skill):
        raise RegistryError(f"it gives {type(skill).__name__}, not a swarm.skills.Skill "
                            "(or a zero-argument callable returning one)")
    if skill.name != name:
        raise RegistryError(f"it gives the skill {skill.name!r}; the entry point must be "
                            "named as its skill")
    _check_name(skill.name)
    return skill


SKILLS: Registry[Skill] = Registry("skill", "swarm.skills", load=as_skill)
"""Every registered skill by name: the built-ins, those registered in code, entry points."""


def register_skill(skill: Skill) -> Skill:
    """Add ``skill`` to the registry.

    Raises:
        RegistryError: the name is taken by another skill or is not an identifier.
    """
    _check_name(skill.name)
    return SKILLS.register(skill.name, skill)


def get_skill(name: str) -> Skill:
    """The skill registered as ``name`` (an entry point's is loaded when first named).

    Raises:
        RegistryError: unknown name (the message names a close one and lists the known ones).
    """
    return SKILLS.get(name)


def skill_names() -> list[str]:
    """Every registered skill name, entry points included, sorted."""
    return SKILLS.names()


def _check_name(name: str) -> None:
    if not (name.isidentifier() and name.isascii()):
        raise RegistryError(f"skill name {name[:70]!r} must be an ASCII Python identifier")
