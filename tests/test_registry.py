"""Registries: duplicates refused, unknown names explained, third-party entry points loaded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from swarm.agents import ROLES, Agent, get_role, role
from swarm.errors import RegistryError
from swarm.protocols import get_protocol
from swarm.registry import Registry


def test_builtin_roles_and_protocols_resolve() -> None:
    assert get_role("learner").learns and get_role("learner").trains
    assert not get_role("expert").learns
    assert not get_role("listener").trains
    assert get_protocol("knexa").name == "knexa"
    assert get_protocol("local").name == "local"


def test_duplicate_role_is_refused() -> None:
    with pytest.raises(RegistryError, match="already registered"):

        @role("learner")
        class Impostor(Agent):
            __slots__ = ()


def test_unknown_role_names_the_close_one() -> None:
    with pytest.raises(RegistryError, match="did you mean 'learner'"):
        get_role("lerner")


def test_non_agent_class_is_refused() -> None:
    with pytest.raises(RegistryError, match="not a subclass"):
        role("plain")(object)  # type: ignore[arg-type]
    assert "plain" not in ROLES.names()


def test_entry_point_role_from_another_distribution(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "thirdparty_roles.py").write_text(
        "from swarm.agents.base import Agent\n\n"
        "class Reviewer(Agent):\n    __slots__ = ()\n    learns = False\n"
    )
    dist = tmp_path / "thirdparty_roles-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-roles\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[swarm.roles]\nreviewer = thirdparty_roles:Reviewer\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[type[Agent]] = Registry("role", "swarm.roles")

    cls = registry.get("reviewer")

    assert cls.__name__ == "Reviewer" and issubclass(cls, Agent)
    assert "reviewer" in registry.names()
    sys.modules.pop("thirdparty_roles", None)


@pytest.mark.parametrize("name", ["", "r\u00f4le", "caf\u00e9", "x" * 65, "a.b", "a/b", "\u00b2"])
def test_names_a_config_cannot_spell_are_refused(name: str) -> None:
    registry: Registry[object] = Registry("role", "swarm.test_nothing")

    with pytest.raises(RegistryError, match="ASCII letters, digits"):
        registry.register(name, object())

    assert registry.names() == []
