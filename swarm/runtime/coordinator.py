"""The coordinator: registry, matchmaker owner, round driver and sole lineage writer.

One per swarm. Hosts connect to its control ``Server`` and ``Join`` with the
agents they hold; the coordinator drives every round (DESIGN.md section 1):

1. ``Step(phase="local")`` to every live host: agents train and report scores;
2. the protocol's ``pairs`` hook picks ``(teacher, student)`` pairs from the
   reports and the profiles (through the matchmaker);
3. ``Step(phase="exchange")`` to the hosts of the students: each student takes
   knowledge from its teacher and reports the outcome;
4. rewards go to the matchmaker; adapters, pairings, rewards and matchmaker
   state are committed to the lineage (through the ``Recorder``); an event is
   published.

The coordinator owns the ``Matchmaker`` and the ``ProfileBuilder`` that turns
reports into its profiles; the ``Recorder`` only writes the lineage. On
``--resume`` the matchmaker is restored from the state the lineage holds, so
the run makes the choices it would have made without the restart.

Slow is not dead. A step has no deadline of its own: the coordinator waits
for a host's answer as long as the host is heard (its transport heartbeats
every ``heartbeat_ms``), however long the step takes on a loaded machine.
Only silence counts: a host not heard for ``silence_s`` in a row (default
30 s, and at least ten liveness timeouts, so a process the machine starves
of CPU for a few seconds is not taken for dead) is dropped from that round
(its agents are unavailable) and the round completes with the others; a
host that restarts and joins again ends its earlier incarnation's step at
once. A dropped host that is heard again rejoins at the next round.

A host is a peer, not a trusted part: every answer is checked against the
step it answers (``swarm.runtime.reports``). An invalid one (an agent or pair the
host was not given, a NaN score, an adapter not in the store) drops only that
host's results for the round, with the reason under ``rejected`` in the round
record and in ``swarm status``.

A round in which no agent reported is no result: its local step is retried
(``round_attempts`` times, waiting for hosts to rejoin), then the run stops
with an error and nothing of the round committed. The coordinator never
touches weights (DESIGN.md: a matchmaker, not a parameter server).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import numpy as np

from swarm.adapters.store import AdapterStore
from swarm.config.schema import SwarmConfig
from swarm.errors import PeerUnavailable, RemoteError, ReportError, SwarmError
from swarm.matching.matchmaker import Matchmaker
from swarm.matching.profiles import ProfileBuilder
from swarm.matching.registry import create_matchmaker, restore_matchmaker
from swarm.runtime.events import RunSummary, skill_means, skill_scores
from swarm.runtime.ledger import AgentLedger
from swarm.runtime.membership import Member, Membership
from swarm.runtime.partners import PartnerService
from swarm.runtime.population import agent_skills
from swarm.runtime.recorder import Recorder
from swarm.runtime.reports import ReportChecker, short
from swarm.runtime.services import ModelCaller, ServiceDesk
from swarm.transport.peers import Incoming, Server, TransportOptions
from swarm.transport.pubsub import Publisher
from swarm.transport.topology import address_book
from swarm.wire.codec import (
    AgentMsg,
    AgentReport,
    Assignment,
    Choose,
    Heartbeat,
    Join,
    Leave,
    Locate,
    Located,
    PairOutcome,
    Profile,
    Reward,
    Status,
    StatusReport,
    Step,
    StepDone,
    Welcome,
    error_reply,
)

__all__ = ["Coordinator", "Member", "swarm_skills"]

log = logging.getLogger(__name__)


class Coordinator:
    """Owns the round loop, the matchmaker and the profile builder.

    ``run()`` serves hosts and drives ``config.swarm.rounds`` rounds. With
    ``resume`` the matchmaker continues from the state committed with the
    lineage's last round (a new one when the lineage holds none).
    """

    def __init__(
        self,
        config: SwarmConfig,
        expected_agents: list[str],
        recorder: Recorder,
        options: TransportOptions | None = None,
        round_attempts: int = 3,
        silence_s: float | None = None,
        resume: bool = False,
    ) -> None:
        from swarm.protocols.base import ServiceContext
        from swarm.protocols.registry import get_protocol

        self.config = config
        self.expected = list(expected_agents)
        self.recorder = recorder
        self.options = options or TransportOptions.from_config(config.transport)
        self.round_attempts = round_attempts
        self.silence_s = self.options.silence_s if silence_s is None else silence_s
        skills = swarm_skills(config)  # a profile holds each skill's held-out score and data share
        self.profiler = ProfileBuilder(skills=skills, agent_skills=agent_skills(config),
                                       metrics={f"skill.{s}": 1.0 for s in skills})
        self.protocol = get_protocol(config.protocol.name)(config.protocol.settings,
                                                             config.swarm.rounds)
        published = self.protocol.profile_dim()
        self.matchmaker: Matchmaker = self._matchmaker(resume, published or self.profiler.dim)
        self.partners = PartnerService(lambda: self.matchmaker, published, lambda: self.round)
        self.built: dict[str, np.ndarray] = {}  # the profile builder's last profiles
        self.checker = ReportChecker(AdapterStore(recorder.adapter_root))
        self.membership = Membership(self.expected)
        self.reports: dict[str, AgentReport] = {}
        self.adapters: dict[str, str] = dict(recorder.adapters())
        self.round = recorder.next_round()
        self.history: list[dict[str, Any]] = recorder.history()
        self.last: dict[str, Any] = self.history[-1] if self.history else {}
        self.rounds_run = 0  # rounds this coordinator ran (not the lineage's earlier ones)
        self.messages = 0
        self.exchange_failures: dict[str, str] = {}
        self.rejected: dict[str, str] = {}  # host -> why its results of this round were dropped
        self.ledger = AgentLedger(recorder.agent_states())
        book = address_book(config.transport, config.launcher.hosts, config.model.server)
        self.model = ModelCaller(book.model, self.options)
        self.service = self.protocol.service(ServiceContext(
            store=recorder.store, agents=list(self.expected), seed=config.swarm.seed,
            rounds=config.swarm.rounds, generate=self.model.generate))
        self.desk = ServiceDesk(self.service, config.protocol.name)
        self._joined = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[Incoming]] = {}
        self._server: Server | None = None
        self._events: Publisher | None = None

    @property
    def server(self) -> Server | None:
        """The control socket hosts talk to (``None`` before ``run`` binds it)."""
        return self._server

    def _matchmaker(self, resume: bool, dim: int) -> Matchmaker:
        """The lineage's matchmaker on ``resume`` (when it holds one), else a new one."""
        state = self.recorder.matchmaker_state() if resume else None
        if state is not None:
            return restore_matchmaker(state)
        mm = self.config.matchmaker
        return create_matchmaker(mm.kind, dim, mm.settings, seed=self.config.swarm.seed)

    @property
    def members(self) -> dict[str, Member]:
        """The hosts stepped each round, by name."""
        return self.membership.members

    async def run(self) -> RunSummary:
        """Serve hosts and run the remaining rounds; returns the final summary."""
        config = self.config
        book = address_book(config.transport, config.launcher.hosts, config.model.server)
        address, events = book.control, book.events
        async with Server("coordinator", address, self.options,
                          on_peer_lost=self._lost) as server, Publisher(
            "coordinator", events, self.options
        ) as pub:
            self._server, self._events = server, pub
            serving = asyncio.ensure_future(self._serve(server))
            try:
                if self.service is not None:
                    await self.service.start(self.round)
                await self._wait_for_hosts()
                while self.round < self.config.swarm.rounds:
                    await self.run_round(self.round)
                    if self.service is not None:
                        await self.service.after_round(self.round)
                    self.round += 1
                summary = self.summary()
                await self._publish("done", dict(summary))
                await asyncio.sleep(0.2)  # let the last event leave
                return summary
            finally:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                if self.service is not None:
                    self.service.close()
                await self.desk.close()
                await self.model.close()
                self.recorder.close()

    async def _serve(self, server: Server) -> None:
        while True:
            for inc in await server.recv_batch():
                self.messages += 1
                try:
                    await self._handle(server, inc)
                except Exception as exc:  # one bad message must not stop the loop serving all
                    if isinstance(exc, SwarmError):
                        log.warning("coordinator: %s from %r: %s", type(inc.msg).__name__,
                                    inc.peer[:40], str(exc)[:300])
                        told = exc
                    else:
                        log.exception("coordinator: %s from %r failed", type(inc.msg).__name__,
                                      inc.peer[:40])
                        told = SwarmError(f"{type(exc).__name__}: {str(exc)[:300]}")
                    with contextlib.suppress(SwarmError):
                        await server.send(error_reply(told, inc.msg, sender="coordinator"),
                                          peer=inc.peer)

    async def _handle(self, server: Server, inc: Incoming) -> None:
        msg = inc.msg
        if isinstance(msg, Join):
            self._join(inc, msg, server.key_of(inc.peer), server.holds)
            placement, peers = self.membership.directory()
            await server.reply(inc, Welcome(sender="coordinator", swarm=self.config.swarm.name,
                                            heartbeat_ms=self.options.heartbeat_ms,
                                            placement=placement, peers=peers))
        elif isinstance(msg, Locate):
            placement, peers = self.membership.directory(set(msg.agent_ids))
            await server.reply(inc, Located(sender="coordinator", placement=placement,
                                            peers=peers))
        elif isinstance(msg, Leave):
            self._leave(inc, msg)
        elif isinstance(msg, Profile | Choose | Reward):
            host = self.membership.host_at(inc.peer)
            agents = set(self.members[host].agents) if host is not None else set()
            answer = self.partners.handle(msg, agents, self.built)
            if answer is not None:
                await server.reply(inc, answer)
        elif isinstance(msg, AgentMsg):  # to the protocol's service (ctx.ask_protocol)
            host = self.membership.host_at(inc.peer)
            self.desk.take(server, inc, set(self.members[host].agents) if host else set())
        elif isinstance(msg, Status):
            await server.reply(inc, StatusReport(sender="coordinator",
                                                 json=json.dumps(self.status())))
        elif not isinstance(msg, Heartbeat):
            log.debug("coordinator: ignoring %s", type(msg).__name__)

    def _join(self, inc: Incoming, msg: Join, key: bytes, holds: Callable[[bytes], bool]) -> None:
        """Admit a host, bound to the peer (routing id, CURVE key) that joined with its name.

        Raises:
            SecurityError: the name or one of the agents belongs to another peer.
            SwarmError: a malformed ``Join`` (bad name, unknown agents, bad capabilities).
        """
        self.membership.admit(msg, inc.peer, key, holds)
        self._drop(msg.sender, "joined again: its earlier incarnation's work is lost")
        log.info("coordinator: host %s joined with %d agents", msg.sender, len(msg.agent_ids))
        # At the start of a run (a resumed one too: agents ask each other from the first
        # round on) every expected agent must be placed; mid-run any host will do.
        if self.membership.placed() >= set(self.expected) or self.rounds_run:
            self._joined.set()

    def _leave(self, inc: Incoming, msg: Leave) -> None:
        """Remove a host, only at the request of the peer it joined from."""
        if self.membership.leave(msg.sender, inc.peer):
            self._drop(msg.sender, "left")

    def _lost(self, peer: bytes) -> None:
        host = self.membership.host_at(peer)
        if host is not None:  # not dropped yet: a starved process may be heard again (_ask)
            log.info("coordinator: host %s missed its heartbeats; dropped if silent for %.0f s",
                     host, self.silence_s)

    def _readmit(self) -> bool:
        """Take back dropped hosts that are heard again; True if any came back."""
        back = self.membership.readmit(self._server.peers if self._server is not None else ())
        for host in back:
            log.warning("coordinator: host %s is heard again; back from this round on", host)
        return bool(back)

    def _drop(self, host: str, why: str) -> None:
        task = self._inflight.pop(host, None)
        if task is not None and not task.done():
            log.warning("coordinator: host %s %s; dropped from this round", host, why)
            task.cancel()

    async def _wait_for_hosts(self, timeout: float = 300.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._joined.is_set() and not self._readmit() and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), min(1.0, deadline - loop.time()))
        if not self.members:
            raise SwarmError(f"no host joined within {timeout:.0f} s")

    # -- the round -----------------------------------------------------------------

    async def run_round(self, rnd: int) -> dict[str, Any]:
        """Run one round: local step, pairing, exchange, rewards, commit."""
        started = time.time()
        self.exchange_failures = {}
        self.ledger.start_round()
        local, reports = await self._local_step(rnd)
        self.reports.update(reports)
        for r in reports.values():
            if r.adapter:
                self.adapters[r.agent_id] = r.adapter
        profiles = self._profiles(reports)
        max_pairs = self.config.matchmaker.max_pairs or len(reports) // 2
        pairs = self.protocol.pairs(rnd, reports, profiles, self.matchmaker, max_pairs)
        await self._publish("pairs", {"round": rnd, "pairs": pairs})
        outcomes = await self._exchange(rnd, pairs, reports)
        for o in outcomes:
            self.matchmaker.update((o.teacher, o.student), profiles, o.after - o.before)
            if o.accepted and o.adapter:
                self.adapters[o.student] = o.adapter
        record = self._record(rnd, reports, pairs, outcomes, local, started)
        self.recorder.commit_round(rnd, reports, outcomes, record, self.matchmaker.state(),
                                   states=self.ledger.round_changes(),
                                   messages=self.ledger.messages)
        self.last = record
        self.history.append(record)
        self.rounds_run += 1
        await self._publish("scores", record)
        return record

    async def _local_step(self, rnd: int) -> tuple[dict[str, StepDone], dict[str, AgentReport]]:
        """The local step of every live host, retried while no agent reports at all.

        Raises:
            SwarmError: no agent reported in ``round_attempts`` attempts; nothing was committed.
        """
        why = ""
        for attempt in range(1, self.round_attempts + 1):
            self.rejected = {}
            self._readmit()
            if not self.members:  # every host died: wait for the launcher's restarts
                self._joined.clear()
                await self._wait_for_hosts()
            await self._publish("round", {"round": rnd, "members": len(self.members),
                                          "attempt": attempt})
            local = await self._step_all(rnd, "local", {
                host: Step(phase="local", agent_ids=m.agents,
                           adapters={a: self.adapters[a] for a in m.agents if a in self.adapters},
                           restore=self.ledger.restore(m.agents) if m.fresh else {})
                for host, m in self.members.items()
            })
            reports = {r.agent_id: r for done in local.values() for r in done.reports}
            if reports:
                return local, reports
            why = self._why_empty(local)
            log.warning("coordinator: round %d: no agent reported (attempt %d of %d): %s",
                        rnd, attempt, self.round_attempts, why)
            if attempt < self.round_attempts:
                await asyncio.sleep(self.options.timeout_s)  # let dead hosts be noticed, restarted
        raise SwarmError(f"round {rnd}: no agent reported in {self.round_attempts} attempt(s) "
                         f"({why}); the run stops with nothing of round {rnd} committed")

    def _why_empty(self, local: Mapping[str, StepDone]) -> str:
        failed = [f"{a}: {short(w)}" for d in local.values() for a, w in sorted(d.failed.items())]
        rejected = [f"{h} rejected: {w}" for h, w in sorted(self.rejected.items())]
        parts = rejected + failed[:3] + ([f"{len(failed) - 3} more failed"] if len(failed) > 3 else [])
        return "; ".join(parts) or "no host answered"

    async def _exchange(
        self, rnd: int, pairs: list[tuple[str, str]], reports: Mapping[str, AgentReport]
    ) -> list[PairOutcome]:
        by_host: dict[str, list[Assignment]] = {}
        for teacher, student in pairs:
            host = self.membership.host_of(student)
            if host is None:
                continue
            by_host.setdefault(host, []).append(Assignment(
                teacher=teacher, student=student, teacher_adapter=reports[teacher].adapter))
        done = await self._step_all(rnd, "exchange", {
            host: Step(phase="exchange", assignments=items) for host, items in by_host.items()
        })
        for d in done.values():
            for student, why in d.failed.items():
                log.warning("coordinator: round %d: %s could not learn: %s", rnd, student,
                            short(why))
                self.exchange_failures[student] = why
        return [o for d in done.values() for o in d.outcomes]

    async def _step_all(self, rnd: int, phase: str, steps: Mapping[str, Step]) -> dict[str, StepDone]:
        async def one(host: str, step: Step) -> tuple[str, StepDone | None]:
            member = self.members.get(host)
            if member is None or self._server is None:
                return host, None
            step = msgspec.structs.replace(step, sender="coordinator", recipient=host, round=rnd)
            task = asyncio.ensure_future(self._ask(step, member))
            self._inflight[host] = task
            try:
                inc = await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # we are being cancelled ourselves
                return host, None
            except RemoteError as exc:
                if exc.remote_code.startswith("wire."):  # its answer broke the wire's bounds
                    self._reject(host, step, f"answer refused by the wire: {exc}")
                    return host, None
                log.warning("coordinator: host %s dropped from round %d %s: %s",
                            host, rnd, phase, exc)
                self.membership.set_aside(host, member)
                return host, None
            except PeerUnavailable as exc:
                log.warning("coordinator: host %s dropped from round %d %s: %s",
                            host, rnd, phase, exc)
                self.membership.set_aside(host, member)
                return host, None
            finally:
                if self._inflight.get(host) is task:
                    del self._inflight[host]
            done = self._checked(host, member, step, inc)
            self.messages += 2 + (min(max(done.messages, 0), 1 << 40) if done is not None else 0)
            if done is not None:
                member.fresh = False
                self.ledger.take(host, member.agents, done)
            return host, done

        results = await asyncio.gather(*(one(h, s) for h, s in steps.items()))
        return {h: d for h, d in results if d is not None}

    async def _ask(self, step: Step, member: Member) -> Incoming:
        """Send ``step`` and wait for the answer for as long as the host is heard.

        Slow is not dead: each wait lasts one liveness timeout, and the same
        request (same ``msg_id``: the host runs it once and answers a resend
        with its cached answer) is waited for again until the host has been
        silent for ``silence_s`` in a row.

        Raises:
            PeerUnavailable: the host was not heard for ``silence_s``.
        """
        assert self._server is not None
        server, loop = self._server, asyncio.get_running_loop()
        heard = loop.time()
        while True:
            try:
                return await server.request(step, peer=member.peer,
                                            timeout=self.options.timeout_s, reliable=True)
            except PeerUnavailable:
                heard = server.peers.get(member.peer, heard)  # when its last traffic came
                if loop.time() - heard >= self.silence_s:
                    raise PeerUnavailable(f"host {member.host} was silent for "
                                          f"{self.silence_s:.0f} s") from None

    def _checked(self, host: str, member: Member, step: Step, inc: Incoming) -> StepDone | None:
        """The host's answer if it is a valid one to ``step``; else None, with the reason kept."""
        try:
            if inc.peer != member.peer:
                raise ReportError(f"the answer came from peer {inc.peer[:40]!r}, not from the host")
            if not isinstance(inc.msg, StepDone):
                raise ReportError(f"answered the step with {type(inc.msg).__name__}")
            self.checker.check(step, inc.msg)
        except ReportError as exc:
            self._reject(host, step, str(exc))
            return None
        return inc.msg

    def _reject(self, host: str, step: Step, reason: str) -> None:
        """Drop ``host``'s results of this step and keep why (round record, ``swarm status``)."""
        why = f"{step.phase} step: {reason}"
        log.warning("coordinator: round %d: results of host %s dropped: %s", step.round, host, why)
        self.rejected[host] = why
        for a in step.assignments:
            self.exchange_failures[a.student] = f"host {host} rejected: {reason}"

    def _profiles(self, reports: Mapping[str, AgentReport]) -> dict[str, np.ndarray]:
        """The matchmaker's profile of each reporting agent (moves each score delta on):
        built from the reports, or the agents' own published ones (``PartnerService``)."""
        self.built = {a: self.profiler.build(r) for a, r in reports.items()}
        published = self.partners.profiles(self.built)
        return {a: v for a, v in published.items() if a in reports}

    def _record(self, rnd: int, reports: Mapping[str, AgentReport], pairs: list[tuple[str, str]],
                outcomes: list[PairOutcome], local: Mapping[str, StepDone],
                started: float) -> dict[str, Any]:
        failed = {a: short(why) for d in local.values() for a, why in d.failed.items()}
        missing = sorted(set(self.expected) - set(reports) - set(failed))
        scores = {a: r.score for a, r in sorted(reports.items())}
        skills = {a: skill_scores(r.metrics) for a, r in sorted(reports.items())}
        for o in outcomes:
            if o.kept_score is not None:
                scores[o.student] = o.kept_score
            elif o.accepted:
                scores[o.student] = o.after
            if o.accepted and o.skills:
                skills[o.student] = dict(o.skills)
        return {
            "round": rnd,
            "scores": scores,
            "mean_score": float(np.mean(list(scores.values()))) if scores else 0.0,
            "skill_scores": skills,
            "skill_means": skill_means(skills),
            "local_scores": {a: r.score for a, r in sorted(reports.items())},
            "pairs": [list(p) for p in pairs],
            "rewards": [{"teacher": o.teacher, "student": o.student,
                         "reward": o.after - o.before, "accepted": o.accepted} for o in outcomes],
            "unavailable": missing + sorted(failed),
            "exchange_failures": {a: short(w) for a, w in self.exchange_failures.items()},
            "rejected": dict(self.rejected),
            "seconds": round(time.time() - started, 3),
            "messages": self.messages,
            "agent_messages": len(self.ledger.messages),
            **({"artifact": self.service.round_record(rnd)} if self.service is not None else {}),
        }

    def status(self) -> dict[str, Any]:
        """Members, round, hosts whose results this round were rejected, and the last round."""
        return {
            "swarm": self.config.swarm.name,
            "round": self.round,
            "rounds": self.config.swarm.rounds,
            "members": {h: m.agents for h, m in self.members.items()},
            "rejected": dict(self.rejected),
            "last": self.last,
        }

    def summary(self) -> RunSummary:
        """Every round record so far and the lineage location (what ``run_swarm`` returns)."""
        return {"rounds": self.round, "history": self.history,
                "lineage": str(self.recorder.path)}

    async def _publish(self, topic: str, body: Mapping[str, Any]) -> None:
        if self._events is None:
            return
        from swarm.wire.codec import Event

        with contextlib.suppress(SwarmError):
            await self._events.publish(topic, Event(sender="coordinator", topic=topic,
                                                    json=json.dumps(body, default=str)))


def swarm_skills(config: SwarmConfig) -> list[str]:
    """Every skill of the swarm's agents, sorted: the profile's skill features."""
    return sorted({s for g in config.agents for s in g.skills})
