"""The model server: one backend for every agent of a machine, behind one ZeroMQ ROUTER.

Hosts talk to it through a ``swarm.transport.peers.Client`` (one socket per host,
however many agents it holds) with two request types from ``swarm.wire.codec``:

- ``Generate(requests=[GenRequest...])`` -> ``Generated(outputs)``, one
  ``GenOutput`` (its ``n`` samples) per request, in order. A request with a
  ``json_schema`` is answered only with samples that match it (else its
  message gets ``Error(code="backend.structured")``). Every ``Generate`` that arrives within ``window_s`` of the
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
answering heartbeats while a batch or a training job runs. They take turns
through one lock (``gate``): an engine batch, then a training step, never both
at once, because two torch workloads that each use every core slow each other
down many times over (OpenMP threads spin: a LoRA step measured 0.9 s alone
took 51 s beside another one). Anything else, or
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
from typing import NamedTuple

import zmq.asyncio

from swarm.errors import (
    AdapterError,
    BackendError,
    PeerUnavailable,
    StructuredOutputError,
    SwarmError,
    TrainingError,
)
from swarm.serving.base import Backend, GenResult, check_requests, one_sample_each
from swarm.serving.structured import check_output
from swarm.transport.loop import run_loop
from swarm.transport.peers import Incoming, Server, TransportOptions
from swarm.wire.codec import (
    Error,
    Generate,
    Generated,
    GenOutput,
    GenRequest,
    Merge,
    Merged,
    Message,
    Train,
    Trained,
    error_reply,
)

__all__ = ["TrainOutcome", "TrainFn", "MergeFn", "ServerStats", "ModelServer", "ServerThread"]

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
        gate: held around every engine call; give the trainer and merger the same
            one (``store_trainer(gate=...)``) so engine and training take turns.
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
        gate: threading.Lock | None = None,
    ) -> None:
        self.backend = backend
        self.gate = gate or threading.Lock()
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
                await self._reply(srv, inc, Generated(sender=self.name, outputs=outcome))

    def _run_batch(self, msgs: Sequence[Generate]) -> list[list[GenOutput] | Exception]:
        """One engine call for every valid message (engine thread).

        Whatever one message trips (a malformed request, an adapter that fails
        to load, an engine error it causes, an answer off its schema) is that
        message's ``Error``: when the shared engine call fails, each message is
        run alone, so only the ones that fail by themselves are answered with an error.
        """
        outcomes: list[list[GenOutput] | Exception] = [[] for _ in msgs]
        valid: list[int] = []
        for i, msg in enumerate(msgs):
            try:
                check_requests(msg.requests)
            except Exception as exc:
                outcomes[i] = _typed(exc, BackendError, "malformed request")
                continue
            try:
                with self.gate:  # loading weights is engine work too
                    for ref in sorted({r.adapter for r in msg.requests if r.adapter is not None}):
                        self.backend.load_adapter(ref)
                valid.append(i)
            except Exception as exc:
                outcomes[i] = _typed(exc, AdapterError, "adapter could not be loaded")
        flat = {i: one_sample_each(msgs[i].requests)[0] for i in valid}
        requests = [r for i in valid for r in flat[i]]
        try:
            with self.gate:
                results = self.backend.generate(requests) if requests else []
        except Exception as exc:
            if len(valid) == 1:
                outcomes[valid[0]] = _typed(exc, BackendError, "engine failed")
                return outcomes
            log.warning("engine batch of %d messages failed (%s); running each alone", len(valid), exc)
            for i in valid:
                outcomes[i] = self._run_alone(msgs[i])
            return outcomes
        if len(results) != len(requests):
            error = BackendError(f"the engine answered {len(results)} samples for {len(requests)}")
            for i in valid:
                outcomes[i] = error
            return outcomes
        start = 0
        for i in valid:
            n = len(flat[i])
            outcomes[i] = _outputs(msgs[i].requests, results[start : start + n])
            start += n
        adapters = len({r.adapter for r in requests if r.adapter is not None})
        self.stats.record(len(valid), len(requests), adapters)
        return outcomes

    def _run_alone(self, msg: Generate) -> list[GenOutput] | Exception:
        requests = one_sample_each(msg.requests)[0]
        try:
            with self.gate:
                results = self.backend.generate(requests)
        except Exception as exc:
            return _typed(exc, BackendError, "engine failed")
        adapters = len({r.adapter for r in requests if r.adapter is not None})
        self.stats.record(1, len(requests), adapters)
        return _outputs(msg.requests, results)

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


def _outputs(requests: Sequence[GenRequest], results: Sequence[GenResult]
             ) -> list[GenOutput] | Exception:
    """Regroup one sample per result into one ``GenOutput`` per request, checking each
    sample of a request with a ``json_schema`` against it."""
    if len(results) != sum(r.n for r in requests):
        return BackendError(f"the engine answered {len(results)} samples for "
                            f"{sum(r.n for r in requests)}")
    outputs: list[GenOutput] = []
    start = 0
    for i, req in enumerate(requests):
        samples = results[start : start + req.n]
        start += req.n
        if req.json_schema is not None:
            for j, res in enumerate(samples):
                try:
                    check_output(res.text, req.json_schema, res.finish_reason)
                except StructuredOutputError as exc:
                    return StructuredOutputError(f"request {i}, sample {j}: {exc}")
                except Exception as exc:  # check_output types its errors; this is the last guard
                    return _typed(exc, StructuredOutputError, "answer check failed")
        outputs.append(GenOutput(texts=[r.text for r in samples],
                                 finish_reasons=[r.finish_reason for r in samples],
                                 tokens=sum(len(r.token_ids) for r in samples)))
    return outputs


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
            run_loop(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
