"""The event loop of swarm's processes: its choice, eager starts, deadlines on one timer."""

from __future__ import annotations

import asyncio

import pytest

from swarm.errors import ConfigError
from swarm.transport.deadlines import Deadlines
from swarm.transport.loop import ENV, run_loop, start_eagerly


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


def test_start_eagerly_runs_a_coroutine_that_never_waits_to_its_end_at_once() -> None:
    async def main() -> tuple[list[str], object]:
        said: list[str] = []

        async def answer() -> None:
            said.append("answered")

        task = start_eagerly(answer())
        return said[:], task  # before any loop pass

    said, task = asyncio.run(main())
    assert said == ["answered"] and task is None


def test_start_eagerly_goes_on_in_a_task_after_the_first_wait() -> None:
    async def main() -> list[str]:
        said: list[str] = []
        gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def handler() -> None:
            said.append("started")
            said.append(await gate)
            await asyncio.sleep(0)
            said.append("done")

        task = start_eagerly(handler())
        assert task is not None and said == ["started"]
        gate.set_result("woken")
        await task
        return said

    assert asyncio.run(main()) == ["started", "woken", "done"]


def test_a_task_started_eagerly_is_cancelled_inside_its_coroutine() -> None:
    async def main() -> list[str]:
        said: list[str] = []

        async def handler() -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                said.append("cancelled")
                raise

        task = start_eagerly(handler())
        assert task is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return said

    assert asyncio.run(main()) == ["cancelled"]


def test_start_eagerly_reports_an_error_before_the_first_wait_to_the_loop() -> None:
    async def main() -> list[BaseException]:
        seen: list[BaseException] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: seen.append(context["exception"]))

        async def broken() -> None:
            raise ValueError("the handler broke")

        assert start_eagerly(broken()) is None
        return seen

    seen = asyncio.run(main())
    assert [type(e) for e in seen] == [ValueError] and str(seen[0]) == "the handler broke"


def test_deadlines_settle_what_is_left_when_its_wait_is_over() -> None:
    async def main() -> tuple[object, object, object, bool]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        short, answered, long = (loop.create_future() for _ in range(3))
        deadlines.add("short", short, 0.01)
        slot = deadlines.add("answered", answered, 0.01)
        deadlines.add("long", long, 30.0)
        deadlines.remove("answered", slot)  # its request was answered first
        result = await asyncio.wait_for(short, 10)
        await asyncio.sleep(0.05)
        left = (answered.done(), long.done())
        deadlines.close()
        return result, left[0], left[1], len(deadlines) == 1

    assert asyncio.run(main()) == (None, False, False, True)
