"""The model server: one backend for every agent of a machine, behind one ZeroMQ ROUTER.

Hosts talk to it through a ``swarm.transport.peers.Client`` (one socket per host,
however many agents it holds) with two request types from ``swarm.wire.codec``:

- ``Generate(requests=[GenRequest...])`` -> ``Generated(texts)``, one text per
  request, in order. Every ``Generate`` that arrives within ``window_s`` of the
  first one (up to ``max_batch`` requests) joins one ``backend.generate`` call,
  so many agents with many adapters share one engine batch; messages that
  arrive while the engine is busy form the next batch. A message whose
  adapter is unknown or invalid, or whose request is out of bounds, gets an
  ``Error`` without failing the others; when the shared engine call fails,
  each message is rerun alone so only the ones that fail by themselves get
  an ``Error``. Whatever a message trips, typed or not, never ends the loop.
- ``Train(agent_id, base_adapter, examples, hyper)`` -> ``Trained(adapter,
  metrics)``: jobs queue and run one at a time through the ``TrainFn``; the new
  adapter is served by its new hash from the next ``Generate`` on.

The engine and the trainer run in their own threads so the event loop keeps
answering heartbeats while a batch or a training job runs. Anything else, or
any failure, is answered with an ``Error`` message; the server keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import zmq.asyncio

from swarm.errors import AdapterError, BackendError, PeerUnavailable, SwarmError, TrainingError
from swarm.serving.base import Backend, check_requests
from swarm.transport import loop as aio
from swarm.transport.peers import Incoming, Server, TransportOptions
from swarm.transport.topology import endpoint
from swarm.wire.codec import (
    Error,
    Generate,
    Generated,
    Merge,
    Merged,
    Message,
    Train,
    Trained,
    error_reply,
)

if TYPE_CHECKING:
    from swarm.config.schema import SwarmConfig

__all__ = ["TrainOutcome", "TrainFn", "MergeFn", "ServerStats", "ModelServer", "ServerThread", "serve"]

log = logging.getLogger(__name__)


class TrainOutcome(NamedTuple):
    """What a training job produced: the new adapter's content hash and its metrics."""

    adapter: str
    metrics: dict[str, float]


#: Runs one ``Train`` job to completion (blocking; called in the trainer thread).
TrainFn = Callable[[Train], TrainOutcome]

#: Runs one ``Merge`` (blocking; in the trainer thread) and returns the merged adapter's hash.
MergeFn = Callable[[Merge], str]


@dataclass
class ServerStats:
    """Counters of a running server (read them from any thread)."""

    batches: int = 0
    messages: int = 0
    requests: int = 0
    errors: int = 0
    trained: int = 0
    last_batch_requests: int = 0
    last_batch_adapters: int = 0
    max_batch_requests: int = 0
    max_batch_adapters: int = 0

    def record(self, messages: int, requests: int, adapters: int) -> None:
        """Count one engine batch of ``requests`` with ``adapters`` distinct adapters."""
        self.batches += 1
        self.messages += messages
        self.requests += requests
        self.last_batch_requests, self.last_batch_adapters = requests, adapters
        self.max_batch_requests = max(self.max_batch_requests, requests)
        self.max_batch_adapters = max(self.max_batch_adapters, adapters)


class ModelServer:
    """Answers ``Generate`` and ``Train`` from many agents with one backend.

    Args:
        backend: the engine (``VLLMBackend``, ``HFBackend``, ``OpenAIBackend``...).
        address: where the ROUTER binds, e.g. ``tcp://127.0.0.1:47002``.
        trainer: runs ``Train`` jobs; ``None`` answers them with an ``Error``.
        window_s: how long a batch waits for more requests after its first one.
        max_batch: requests that close a batch at once.
    """

    def __init__(
        self,
        backend: Backend,
        address: str,
        *,
        trainer: TrainFn | None = None,
        merger: MergeFn | None = None,
        options: TransportOptions | None = None,
        context: zmq.asyncio.Context | None = None,
        name: str = "model-server",
        window_s: float = 0.002,
        max_batch: int = 256,
    ) -> None:
        self.backend = backend
        self.address = address
        self.trainer = trainer
        self.merger = merger
        self.options = options or TransportOptions()
        self.name = name
        self.window_s = window_s
        self.max_batch = max_batch
        self.stats = ServerStats()
        self._ctx = context
        self._jobs: asyncio.Queue[Incoming] | None = None

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until cancelled; ``ready`` is called once the socket is bound."""
        self._jobs = asyncio.Queue()
        engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        training = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
        async with Server(self.name, self.address, self.options, self._ctx) as srv:
            trainer = asyncio.ensure_future(self._train_loop(srv, training))
            if ready is not None:
                ready()
            try:
                while True:
                    batch = await self._gather(srv)
                    if batch:
                        await self._serve(srv, batch, engine)
            finally:
                trainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await trainer
                engine.shutdown(wait=True, cancel_futures=True)
                training.shutdown(wait=False, cancel_futures=True)

    async def _gather(self, srv: Server) -> list[Incoming]:
        """The ``Generate`` messages of one batch; queues ``Train`` jobs on the way."""
        loop = asyncio.get_running_loop()
        items = await srv.recv_batch(self.max_batch)
        deadline = loop.time() + self.window_s
        batch: list[Incoming] = []
        count = 0
        while True:
            for inc in items:
                if isinstance(inc.msg, Generate):
                    batch.append(inc)
                    count += len(inc.msg.requests)
                elif isinstance(inc.msg, Train | Merge):
                    assert self._jobs is not None
                    self._jobs.put_nowait(inc)
                else:
                    reason = f"a model server answers Generate, Train and Merge, not {type(inc.msg).__name__}"
                    await self._reply(srv, inc, Error(code="backend.unsupported", reason=reason))
            left = deadline - loop.time()
            if count >= self.max_batch or left <= 0:
                return batch
            try:
                items = await srv.recv_batch(self.max_batch, timeout=left)
            except TimeoutError:
                return batch

    async def _serve(self, srv: Server, batch: list[Incoming], pool: ThreadPoolExecutor) -> None:
        msgs = [inc.msg for inc in batch if isinstance(inc.msg, Generate)]
        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(pool, self._run_batch, msgs)
        except Exception as exc:  # _run_batch answers per message; this is the last guard
            log.exception("engine batch failed outside its guards")
            outcomes = [_typed(exc, BackendError, "engine failed") for _ in msgs]
        for inc, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self.stats.errors += 1
                await self._reply(srv, inc, error_reply(outcome, inc.msg, sender=self.name))
            else:
                await self._reply(srv, inc, Generated(sender=self.name, texts=outcome))

    def _run_batch(self, msgs: Sequence[Generate]) -> list[list[str] | Exception]:
        """One engine call for every valid message (engine thread).

        Whatever one message trips (a malformed request, an adapter that fails
        to load, an engine error it causes) is that message's ``Error``: when the
        shared engine call fails, each message is run alone, so only the ones
        that fail by themselves are answered with an error.
        """
        outcomes: list[list[str] | Exception] = [[] for _ in msgs]
        valid: list[int] = []
        for i, msg in enumerate(msgs):
            try:
                check_requests(msg.requests)
                for ref in sorted({r.adapter for r in msg.requests if r.adapter is not None}):
                    self.backend.load_adapter(ref)
                valid.append(i)
            except Exception as exc:
                outcomes[i] = _typed(exc, AdapterError, "adapter could not be loaded")
        requests = [r for i in valid for r in msgs[i].requests]
        try:
            texts = [res.text for res in self.backend.generate(requests)] if requests else []
        except Exception as exc:
            if len(valid) == 1:
                outcomes[valid[0]] = _typed(exc, BackendError, "engine failed")
                return outcomes
            log.warning("engine batch of %d messages failed (%s); running each alone", len(valid), exc)
            for i in valid:
                outcomes[i] = self._run_alone(msgs[i])
            return outcomes
        start = 0
        for i in valid:
            n = len(msgs[i].requests)
            outcomes[i] = texts[start : start + n]
            start += n
        adapters = len({r.adapter for r in requests if r.adapter is not None})
        self.stats.record(len(valid), len(requests), adapters)
        return outcomes

    def _run_alone(self, msg: Generate) -> list[str] | Exception:
        try:
            texts = [res.text for res in self.backend.generate(msg.requests)]
        except Exception as exc:
            return _typed(exc, BackendError, "engine failed")
        adapters = len({r.adapter for r in msg.requests if r.adapter is not None})
        self.stats.record(1, len(msg.requests), adapters)
        return texts

    async def _train_loop(self, srv: Server, pool: ThreadPoolExecutor) -> None:
        """Run queued ``Train`` jobs one at a time."""
        assert self._jobs is not None
        loop = asyncio.get_running_loop()
        while True:
            inc = await self._jobs.get()
            job = inc.msg
            reply: Message
            if isinstance(job, Merge):
                reply = await self._merge(job, pool)
                await self._reply(srv, inc, reply)
                continue
            assert isinstance(job, Train)
            try:
                if self.trainer is None:
                    raise TrainingError("this model server has no trainer")
                out = await loop.run_in_executor(pool, self.trainer, job)
                self.stats.trained += 1
                reply = Trained(sender=self.name, agent_id=job.agent_id, adapter=out.adapter,
                                metrics=dict(out.metrics))  # fmt: skip
            except Exception as exc:
                if not isinstance(exc, SwarmError):
                    log.exception("training job of %s failed", job.agent_id)
                reply = error_reply(exc, job, sender=self.name)
            await self._reply(srv, inc, reply)

    async def _merge(self, job: Merge, pool: ThreadPoolExecutor) -> Message:
        """Run one ``Merge`` in the trainer thread (merges and training never overlap)."""
        try:
            if self.merger is None:
                raise TrainingError("this model server has no merger")
            sha = await asyncio.get_running_loop().run_in_executor(pool, self.merger, job)
            return Merged(sender=self.name, agent_id=job.agent_id, adapter=sha)
        except Exception as exc:
            if not isinstance(exc, SwarmError):
                log.exception("merge for %s failed", job.agent_id)
            return error_reply(exc, job, sender=self.name)

    async def _reply(self, srv: Server, to: Incoming, msg: Message) -> None:
        try:
            await srv.reply(to, msg)
        except PeerUnavailable as exc:  # the asker is gone; nothing to tell it
            log.warning("%s: reply to %s dropped: %s", self.name, to.msg.sender, exc)


def _typed(exc: Exception, kind: type[SwarmError], what: str) -> SwarmError:
    """``exc`` as the ``SwarmError`` its ``Error`` reply is made of (an untyped one is logged)."""
    if isinstance(exc, SwarmError):
        return exc
    log.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
    return kind(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")


class ServerThread:
    """Runs a ``ModelServer`` on its own event loop in a background thread.

    For tests, benchmarks and notebooks that hold the backend in the calling
    process: ``with ServerThread(server): ...`` returns once the socket is bound
    and stops the server on exit.
    """

    def __init__(self, server: ModelServer, start_timeout: float = 30.0) -> None:
        self.server = server
        self.start_timeout = start_timeout
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="model-server", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> ModelServer:
        self._thread.start()
        if not self._ready.wait(self.start_timeout) or self._error is not None:
            raise BackendError(f"model server did not start: {self._error!r}")
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=30)

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()  # type: ignore[assignment]
            with contextlib.suppress(asyncio.CancelledError):
                await self.server.run(ready=self._ready.set)

        try:
            aio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()


async def serve(config: SwarmConfig, model: Path, store_root: Path) -> None:
    """Run the machine's model server for ``config`` until cancelled (``swarm.runtime.process``).

    Adapters are resolved through the adapter store at ``store_root``; each is
    validated against the base model (hash, keys, shapes, rank, finite values,
    norm) the first time the engine loads it.
    """
    from swarm.adapters.store import AdapterStore
    from swarm.adapters.validate import AdapterValidator
    from swarm.serving import create_backend
    from swarm.serving.jobs import store_merger, store_trainer
    from swarm.transport.topology import MODEL_OFFSET

    store = AdapterStore(store_root, AdapterValidator(model, max_rank=config.model.max_lora_rank))

    backend = create_backend(config.model, model, store.checked_path)
    address = config.model.server or endpoint(config.transport, MODEL_OFFSET)
    options = TransportOptions.from_config(config.transport)
    trainer = store_trainer(model, store, seed=config.swarm.seed)
    merger = store_merger(model, store)
    server = ModelServer(backend, address, trainer=trainer, merger=merger, options=options)
    log.info("model server: %s backend on %s, adapters in %s", backend.name, address, store_root)
    try:
        await server.run()
    finally:
        backend.close()
