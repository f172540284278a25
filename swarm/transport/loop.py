"""The event loop every swarm process runs on: uvloop where it is installed, asyncio's otherwise.

The transport's hot path is a reader callback per socket plus one task wake
per request; on asyncio's pure-Python loop those loop passes are a large part
of a request's round trip (``bench/transport.py``), and uvloop's libuv loop
makes them cheaper. ``SWARM_EVENT_LOOP=asyncio`` forces the standard loop, for
debugging or to compare.

    from swarm.transport.loop import run_loop
    run_loop(main())           # instead of asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from swarm.errors import ConfigError

__all__ = ["ENV", "loop_factory", "run_loop"]

ENV = "SWARM_EVENT_LOOP"
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop constructor chosen by ``SWARM_EVENT_LOOP`` (``uvloop`` if importable by default).

    Raises:
        ConfigError: ``SWARM_EVENT_LOOP`` is not ``uvloop`` or ``asyncio``, or asks for
            uvloop where it is not installed.
    """
    choice = os.environ.get(ENV, "")
    if choice not in ("", "uvloop", "asyncio"):
        raise ConfigError(f"{ENV} must be 'uvloop' or 'asyncio', got {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(f"{ENV}=uvloop but uvloop is not installed") from None
        else:
            return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on the chosen loop (see the module docstring).

    Raises:
        ConfigError: see :func:`loop_factory` (``coro`` is closed, never run).
    """
    try:
        factory = loop_factory()
    except ConfigError:
        coro.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
