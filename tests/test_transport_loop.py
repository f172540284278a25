"""The event-loop choice of swarm's processes."""

from __future__ import annotations

import asyncio

import pytest

from swarm.errors import ConfigError
from swarm.transport.loop import ENV, run_loop


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_uvloop_by_default_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(ENV, raising=False)
    assert run_loop(_loop_type()) == "uvloop"
    monkeypatch.setenv(ENV, "asyncio")
    assert run_loop(_loop_type()) == "asyncio"


def test_a_bad_loop_name_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "trio")
    with pytest.raises(ConfigError, match="SWARM_EVENT_LOOP must be 'uvloop' or 'asyncio', got 'trio'"):
        run_loop(_loop_type())
