"""The ``inline`` launcher: coordinator and hosts inside the calling process.

For notebooks and for roles or protocols defined in the calling program (a
class defined in a notebook cell cannot be imported by a subprocess): the
coordinator and every host run as asyncio tasks on an event loop of their
own in a background thread, talking over the same ZeroMQ sockets as in the
``local`` launcher; only the model server is a subprocess. Hosts are not
restarted (a failure ends the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading

from swarm.errors import SwarmError
from swarm.runtime.local_launcher import LocalLauncher
from swarm.transport.loop import run_loop

__all__ = ["InlineLauncher"]

log = logging.getLogger(__name__)


class InlineLauncher(LocalLauncher):
    """Run the coordinator and the hosts in this process; the model server as a subprocess."""

    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _task: asyncio.Task[None] | None = None
    _code: int | None = None
    _error: BaseException | None = None

    def start(self) -> None:
        """Start the model server subprocess and the in-process swarm thread."""
        self.launch_model_server()
        self._thread = threading.Thread(target=self._main, name="swarm-inline", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            run_loop(self._run())
            self._code = 0
        except asyncio.CancelledError:
            self._code = 130
        except BaseException as exc:  # reported by poll(); the thread must not die silently
            log.exception("inline swarm failed")
            self._error = exc
            self._code = 1

    async def _run(self) -> None:
        from swarm.runtime.coordinator import Coordinator
        from swarm.runtime.host import Host
        from swarm.runtime.population import build_population
        from swarm.runtime.recorder import Recorder
        from swarm.transport.topology import address_book

        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()  # type: ignore[assignment]
        placement = json.loads((self.run_dir / "hosts.json").read_text())
        specs = {s.agent_id: s for s in build_population(self.config)}
        book = address_book(self.config.transport, len(placement), self.config.model.server)
        hosts = [Host(f"host-{i}", self.config, [specs[a] for a in agents],
                      self.config.adapter_store,
                      peer_address=book.peer(i))
                 for i, agents in enumerate(placement)]
        recorder = Recorder.open(self.config)
        coordinator = Coordinator(self.config, list(specs), recorder, resume=self.resume)
        tasks = [asyncio.ensure_future(h.run()) for h in hosts]
        try:
            summary = await coordinator.run()
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def poll(self) -> int | None:
        """The swarm's exit code once it has finished (0: done), else None."""
        super().poll()  # raises if the model server died
        if self._thread is not None and not self._thread.is_alive():
            if self._error is not None:
                raise SwarmError(f"the inline swarm failed: {self._error}") from self._error
            return self._code
        return None

    def stop(self, grace: float = 10.0) -> None:
        """Cancel the in-process swarm, then stop the model server."""
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(grace)
        super().stop(grace)

    def pids(self) -> dict[str, int]:
        """Only the model server has a pid of its own."""
        return super().pids()
