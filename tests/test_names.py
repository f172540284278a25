"""Every name check refuses a trailing newline (``$`` matches before one; ``\\Z`` does not)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from swarm.errors import AdapterError, ConfigError, RegistryError, SwarmError
from swarm.wire.codec import Join


def test_config_names_refuse_a_trailing_newline() -> None:
    from swarm.settings import ModuleName, Name

    for kind in (Name, ModuleName):
        assert msgspec.convert("q_proj", kind) == "q_proj"
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert("q_proj\n", kind)


def test_registry_refuses_a_name_with_a_trailing_newline() -> None:
    from swarm.registry import Registry

    reg: Registry[int] = Registry("thing", "swarm.things")
    with pytest.raises(RegistryError):
        reg.register("thing\n", 1)


def test_join_refuses_a_host_name_with_a_trailing_newline() -> None:
    from swarm.runtime.membership import check_join

    with pytest.raises(SwarmError):
        check_join(Join(sender="host-0\n", agent_ids=["a-0"]), ["a-0"])


def test_adapter_ref_refuses_a_trailing_newline() -> None:
    from swarm.serving.base import check_ref

    with pytest.raises(AdapterError):
        check_ref("a" * 64 + "\n")


def test_keys_add_refuses_a_name_or_key_with_a_trailing_newline(tmp_path: Path) -> None:
    from swarm.transport.security import add_key, init_keys, public_key_text

    init_keys(tmp_path)
    key = public_key_text(tmp_path)
    with pytest.raises(ConfigError):
        add_key(tmp_path, "peer\n", key)
    with pytest.raises(ConfigError):
        add_key(tmp_path, "peer", key + "\n")
    assert add_key(tmp_path, "peer", key).is_file()
