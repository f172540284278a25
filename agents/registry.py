"""The role registry: configs name roles, never import paths.

Register a role in code with ``@role("name")`` on an ``Agent`` subclass, or
from another package through the entry-point group ``swarm.roles``::

    [project.entry-points."swarm.roles"]
    reviewer = "my_package.roles:Reviewer"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from swarm.errors import RegistryError
from swarm.registry import Registry

if TYPE_CHECKING:
    from swarm.agents.base import Agent

__all__ = ["ROLES", "role", "get_role"]

ROLES: Registry[type[Agent]] = Registry("role", "swarm.roles")

A = TypeVar("A", bound="type[Agent]")


def role(name: str) -> Callable[[A], A]:
    """Class decorator registering an ``Agent`` subclass as role ``name``.

    Raises:
        RegistryError: the name is taken, the class is not an ``Agent``, or its
            hooks are the old ones that took the host instead of the agent context.
    """
    from swarm.agents.base import Agent, check_hooks

    def wrap(cls: A) -> A:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise RegistryError(f"role {name!r}: {cls!r} is not a subclass of swarm.agents.Agent")
        check_hooks(cls)
        ROLES.register(name, cls)
        cls.role = name
        return cls

    return wrap


def get_role(name: str) -> type[Agent]:
    """The ``Agent`` class registered as ``name`` (built-ins and entry points).

    The built-in roles are registered when ``swarm.agents`` is imported (its
    ``__init__`` imports ``swarm.agents.roles``), which any import of a module
    of the package does first.
    """
    return ROLES.get(name)
