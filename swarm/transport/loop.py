"""The event loop every swarm process runs on: uvloop where it is installed, asyncio's otherwise.

The transport's hot path is a reader callback per socket plus one task wake
per request; on asyncio's pure-Python loop those loop passes are a large part
of a request's round trip (``bench/transport.py``), and uvloop's libuv loop
makes them cheaper. ``SWARM_EVENT_LOOP=asyncio`` forces the standard loop, for
debugging or to compare.

    from swarm.transport.loop import run_loop
    run_loop(main())           # instead of asyncio.run(main())

``start_eagerly(coro)`` runs a coroutine at once, up to its first suspension,
and makes a task of it only if it suspends (Python 3.12's eager tasks, on
3.11): a handler that answers without waiting costs no task and no loop pass.
"""

from __future__ import annotations

import asyncio
import os
from collections import abc
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

from swarm.errors import ConfigError

__all__ = ["ENV", "loop_factory", "run_loop", "start_eagerly"]

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


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, up to its first suspension; ``None`` if it finished there.

    Otherwise the task that goes on with it (cancel it as any task, even before
    its first step: the coroutine sees the cancellation where it waits). An
    exception ``coro`` raises before suspending goes to the loop's exception
    handler, as a task's unretrieved exception would.
    """
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    except Exception as exc:
        asyncio.get_running_loop().call_exception_handler({
            "message": f"{getattr(coro, '__qualname__', coro)!s} failed", "exception": exc})
        return None
    return asyncio.ensure_future(_Resumed(coro, first))


_TAKEN: Any = object()


class _Resumed(abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine already started: its first step hands the task what it yielded then."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro, self._first = coro, first

    def send(self, value: Any) -> Any:
        first = self._first
        if first is _TAKEN:
            return self._coro.send(value)
        self._first = _TAKEN
        return first  # the future it waits on: the task waits on it now

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._first = _TAKEN
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._coro.close()

    def __next__(self) -> Any:
        return self.send(None)

    def __iter__(self) -> _Resumed:
        return self

    def __await__(self) -> Generator[Any, Any, None]:
        return self  # type: ignore[return-value]
