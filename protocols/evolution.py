"""The evogit protocol's service: the coordinator's side of an evolving artifact.

Agents reach it with ``ctx.ask_protocol`` (``swarm.protocols.evogit``'s
messages); it alone writes the artifact's lineage (``swarm.lineage.artifacts``):

- ``MutationTask`` -> ``Section``: a random section of a random mutable file of
  the agent's individual, with context and the parent's evaluation;
- ``Mutation`` -> ``Selected``: the edit is checked (the parent is still the
  individual, the lines exist, the size, ``line_pattern``, a message),
  committed as a child, evaluated (cached per tree) and kept only if fitter
  than its parent ((1+1)); an invalid edit is counted, never committed;
- ``Crossover`` -> ``Selected``: a three-way merge of two individuals, each
  conflicting hunk by a coin seeded with the swarm's seed, the round and the
  pair; kept only if fitter than both parents;
- ``Steer`` (from a person, ``swarm artifact ...``) -> ``Steered``: promote a
  version to every individual, prune one, continue a paused run, or status.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import msgspec

from swarm.errors import LineageError, MessageTypeError, SecurityError, SwarmError
from swarm.lineage.artifacts import Artifact, Hunk
from swarm.protocols.base import ServiceContext
from swarm.protocols.evaluators import Parent, create_evaluator
from swarm.protocols.evotypes import (
    Crossover,
    EvogitSettings,
    Mutation,
    MutationTask,
    Section,
    Selected,
    Steer,
    Steered,
)

__all__ = ["Evolution", "better"]


class Side(msgspec.Struct, frozen=True):
    """The LLM's choice of a conflicting hunk's side."""

    take: Literal["ours", "theirs"]


def better(child: float | None, *others: float | None) -> bool:
    """Whether ``child`` is fitter than every one of ``others`` (an unscored one loses)."""
    return child is not None and all(o is None or child > o for o in others)


class Evolution:
    """One evolving artifact: the population, selection and a person's steering."""

    def __init__(self, settings: EvogitSettings, ctx: ServiceContext) -> None:
        self.settings, self.ctx = settings, ctx
        self.artifact = Artifact(ctx.store, settings.artifact)
        self.evaluator = create_evaluator(settings.evaluator, settings, ctx)
        self.rng = random.Random(ctx.seed)
        self.pattern = re.compile(settings.line_pattern) if settings.line_pattern else None
        self.round = 0
        self.stats: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.paused = False
        self._resume = asyncio.Event()
        self._evals = asyncio.Semaphore(settings.parallel_evals)

    # -- the coordinator's hooks ---------------------------------------------------

    async def start(self, round: int) -> None:
        """Seed the artifact (once: a resumed run finds it) and fork every agent's individual."""
        self.round = round
        self.artifact.seed(Path(self.settings.seed) if self.settings.seed else None)
        pruned = set(self.ctx.store.refs(f"refs/pruned/artifact/{self.artifact.name}/"))
        for agent in self.ctx.agents:
            if f"refs/pruned/{self.artifact.branch(agent)}" not in pruned:
                self.artifact.individual(agent)
        seed = self.artifact.seed_sha()
        assert seed is not None
        await self.fitness(seed)

    async def handle(self, sender: str, msg: msgspec.Struct) -> msgspec.Struct:
        if isinstance(msg, Steer):
            if not sender.startswith("user:"):  # agents evolve; only a person steers
                raise SecurityError(f"{sender!r} may not steer the evolution (people do, as "
                                    f"user:<name>)")
            return await self._steer(msg)
        if sender not in self.ctx.agents:
            raise SwarmError(f"{sender!r} is no agent of this swarm")
        if isinstance(msg, MutationTask):
            return self._task(sender)
        if isinstance(msg, Mutation):
            return await self._mutate(sender, msg)
        if isinstance(msg, Crossover):
            return await self._crossover(sender, msg)
        raise MessageTypeError(f"the evogit service takes no {type(msg).__name__}")

    def round_record(self, round: int) -> dict[str, Any]:
        """What the round record keeps of the artifact: the population, the best, the events."""
        population = self.population()
        best = max(population.items(), key=lambda kv: _rank(kv[1]["fitness"]), default=None)
        record = {"name": self.artifact.name, "individuals": population,
                  "best": None if best is None else {"agent": best[0], **best[1]},
                  "events": self.events, "stats": dict(self.stats)}
        self.events = []
        return record

    async def after_round(self, round: int) -> None:
        """Pause for a person every ``human_every`` rounds (or act for them, by the policy)."""
        self.round = round + 1
        every = self.settings.human_every
        if not every or (round + 1) % every or round + 1 >= self.ctx.rounds:
            return
        if self.settings.human_policy == "promote_best":
            best = self._best()
            if best is not None:
                await self._steer(Steer(action="promote", ref=best))
        elif self.settings.human_policy == "wait":
            self.paused = True
            self._resume.clear()
            await self._resume.wait()

    def close(self) -> None:
        self._resume.set()

    # -- reading -------------------------------------------------------------------

    def population(self) -> dict[str, dict[str, Any]]:
        """``{agent: {"sha", "fitness"}}`` of every live individual (cached evaluations only)."""
        out = {}
        for agent, sha in sorted(self.artifact.individuals().items()):
            ev = self.artifact.evaluation(sha)
            out[agent] = {"sha": sha, "fitness": None if ev is None else ev.get("fitness")}
        return out

    async def fitness(self, sha: str, parent: str | None = None) -> float | None:
        """``sha``'s fitness: the cached evaluation of its tree, else evaluated (and noted).

        ``parent``: the version it was made from (a judge compares the two).
        """
        return (await self._scored(sha, parent))[0]

    async def _scored(self, sha: str, parent: str | None) -> tuple[float | None, bool]:
        """``fitness``, and whether this call evaluated the tree (False: the cache's)."""
        result = self.artifact.evaluation(sha)
        fresh = result is None
        if result is None:
            files = self.artifact.files(sha)
            before = None if parent is None else Parent(self.artifact.files(parent),
                                                        await self.fitness(parent))
            async with self._evals:
                result = await self.evaluator.evaluate(files, before)
            self.stats["evaluations"] += 1
            self.artifact.record(sha, result)
        else:
            self.stats["cached"] += 1
            if self.ctx.store.get_note(sha) is None:  # the same tree reached by another commit
                self.ctx.store.note_many({sha: result})
        value = result.get("fitness")
        return (float(value) if isinstance(value, int | float) else None), fresh

    # -- mutation ------------------------------------------------------------------

    def _task(self, agent: str) -> Section:
        tip = self.artifact.individuals().get(agent)
        if tip is None:
            return Section()  # pruned
        files = self.artifact.files(tip)
        paths = [p for p in sorted(files) if self._mutable(p) and _text(files[p]) is not None]
        if not paths:
            return Section()
        path = self.rng.choice(paths)
        lines = (_text(files[path]) or "").splitlines(keepends=True) or [""]
        most = self.settings.section_lines
        n = min(len(lines), self.rng.randint(max(1, most // 2), most))
        start = self.rng.randrange(0, len(lines) - n + 1)
        ctx = self.settings.context_lines
        ev = self.artifact.evaluation(tip) or {}
        return Section(parent=tip, path=path, start=start + 1, end=start + n,
                       before="".join(lines[max(0, start - ctx):start]),
                       lines="".join(lines[start:start + n]),
                       after="".join(lines[start + n:start + n + ctx]),
                       fitness=ev.get("fitness"), notes=str(ev.get("detail", ""))[:2000],
                       pattern=self.settings.line_pattern, max_bytes=self.settings.max_edit_bytes,
                       max_lines=n + self.settings.extra_lines)

    async def _mutate(self, agent: str, m: Mutation) -> Selected:
        tip = self.artifact.individuals().get(agent, "")
        changed, why = self._apply(tip, m)
        if changed is None:
            self.stats["invalid"] += 1
            self.events.append({"kind": "invalid", "agent": agent, "detail": why})
            return Selected(status="invalid", detail=why, individual=tip)
        message = m.message.strip().splitlines()[0][:200]
        child = self.artifact.child(agent, tip, {m.path: changed},
                                    f"round {self.round}: mutate {agent}: {message}", author=agent)
        self.stats["mutations"] += 1
        return await self._select(agent, "mutate", child, tip)

    def _apply(self, tip: str, m: Mutation) -> tuple[bytes | None, str]:
        """The mutated file, or None and why the edit is refused."""
        if not tip or m.parent != tip:
            return None, f"stale parent {m.parent[:12]}: the individual is at {tip[:12]}"
        files = self.artifact.files(tip)
        text = _text(files.get(m.path, b"")) if self._mutable(m.path) else None
        if m.path not in files or text is None:
            return None, f"{m.path!r} is not a mutable text file of the artifact"
        lines = text.splitlines(keepends=True)
        if not 1 <= m.start <= m.end <= len(lines):
            return None, f"lines {m.start}-{m.end} are not in {m.path} ({len(lines)} lines)"
        if len(m.section.encode()) > self.settings.max_edit_bytes:
            return None, f"the section is over {self.settings.max_edit_bytes} bytes"
        new_lines = m.section.splitlines()
        if len(new_lines) > m.end - m.start + 1 + self.settings.extra_lines:
            return None, f"the section grew by more than {self.settings.extra_lines} lines"
        if self.pattern is not None and not all(self.pattern.fullmatch(x) for x in new_lines):
            return None, "a line of the section does not match line_pattern"
        if not m.message.strip():
            return None, "no commit message"
        section = m.section if m.section.endswith("\n") or not m.section else m.section + "\n"
        new = "".join(lines[:m.start - 1]) + section + "".join(lines[m.end:])
        if new == text:
            return None, "the edit changes nothing"
        return new.encode(), ""

    # -- crossover -----------------------------------------------------------------

    async def _crossover(self, agent: str, c: Crossover) -> Selected:
        tips = self.artifact.individuals()
        ours, theirs = tips.get(agent), tips.get(c.theirs)
        if ours is None or theirs is None or ours == theirs:
            self.stats["invalid"] += 1
            return Selected(status="invalid", individual=ours or "",
                            detail=f"no crossover of {agent} and {c.theirs}: pruned or the same")
        key = f"{self.ctx.seed}|{self.round}|{agent}|{c.theirs}".encode()
        coin = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
        sides: dict[tuple[str, int], str] = {}
        if self.settings.resolve == "llm":
            sides = await self._llm_sides(self.artifact.conflicts(ours, theirs))

        def choose(h: Hunk) -> list[str]:
            side = sides.get((h.path, h.index)) or ("ours" if coin.random() < 0.5 else "theirs")
            return h.ours if side == "ours" else h.theirs

        merged = self.artifact.merge(agent, ours, theirs, choose,
                                     f"round {self.round}: merge {agent} + {c.theirs}")
        self.stats["merges"] += 1
        self.stats["conflicts"] += len(merged.hunks)
        return await self._select(agent, "merge", merged.sha, ours, theirs,
                                  hunks=merged.hunks)

    async def _select(self, agent: str, kind: str, child: str, *parents: str,
                      **extra: Any) -> Selected:
        fits = [await self.fitness(p) for p in parents]
        fit, fresh = await self._scored(child, parents[0])
        keep = better(fit, *fits)
        if keep:
            self.artifact.advance(agent, child)
            self.stats["accepted"] += 1
        ev = self.artifact.evaluation(child) or {}
        self.events.append({"kind": kind, "agent": agent, "child": child, "parents": list(parents),
                            "fitness": fit, "parent_fitness": fits, "accepted": keep,
                            "evaluated": fresh, **extra})
        return Selected(status=str(ev.get("status", "failed")), child=child, fitness=fit,
                        parent_fitness=fits[0], accepted=keep,
                        individual=child if keep else parents[0],
                        detail=str(ev.get("detail", ""))[:2000])

    async def _llm_sides(self, hunks: list[Hunk]) -> dict[tuple[str, int], str]:
        """The LLM's side of each hunk (one batch of requests); a hunk it fails on is the coin's."""
        generate = self.ctx.generate
        if generate is None or not hunks:
            return {}
        from swarm.serving.structured import decode_output, schema_for
        from swarm.wire.messages import ChatTurn, GenRequest

        schema = schema_for(Side)
        requests = [GenRequest(messages=[
            ChatTurn(role="system", content="Two versions of a part of a file disagree. "
                     "Answer with JSON: {\"take\": \"ours\" or \"theirs\"}."),
            ChatTurn(role="user", content=f"File {h.path}.\nOurs:\n{''.join(h.ours)[:3000]}\n"
                     f"Theirs:\n{''.join(h.theirs)[:3000]}\nWhich is better?")],
            max_tokens=16, temperature=0.0, json_schema=schema) for h in hunks]
        try:
            outputs = await generate(requests)
        except SwarmError as exc:
            self.events.append({"kind": "resolve", "detail": f"the LLM failed: {exc}"[:300]})
            return {}
        sides: dict[tuple[str, int], str] = {}
        for h, out in zip(hunks, outputs, strict=True):
            with contextlib.suppress(SwarmError):
                sides[(h.path, h.index)] = decode_output(out.texts[0], Side).take
        self.stats["llm_hunks"] += len(sides)
        return sides

    # -- a person ------------------------------------------------------------------

    async def _steer(self, s: Steer) -> Steered:
        if s.action == "promote":
            sha = self._ref(s.ref)
            await self.fitness(sha)
            tag = self.artifact.promote(sha, self.round, sorted(self.artifact.individuals()))
            self.events.append({"kind": "promote", "child": sha, "tag": tag})
            done = f"promoted {sha[:12]} to every individual ({tag})"
        elif s.action == "prune":
            if s.ref not in self.artifact.individuals():
                raise LineageError(f"no live individual {s.ref!r} of {self.artifact.name}")
            pruned = self.artifact.prune(s.ref, s.reason or "pruned by a person")
            self.events.append({"kind": "prune", "agent": s.ref})
            done = f"pruned {s.ref} ({pruned})"
        elif s.action == "continue":
            done = "continued" if self.paused else "not paused"
            self.paused = False
            self._resume.set()
        else:
            done = "status"
        return Steered(done=done, paused=self.paused,
                       json=json.dumps({"round": self.round, "population": self.population()}))

    def _best(self) -> str | None:
        population = self.population()
        best = max(population.values(), key=lambda v: _rank(v["fitness"]), default=None)
        return None if best is None else str(best["sha"])

    def _ref(self, ref: str) -> str:
        tips = self.artifact.individuals()
        return tips[ref] if ref in tips else self.ctx.store.resolve(ref)

    def _mutable(self, path: str) -> bool:
        globs = self.settings.mutable
        return not globs or any(fnmatch.fnmatch(path, g) for g in globs)


def _rank(fitness: Any) -> float:
    return float(fitness) if isinstance(fitness, int | float) else float("-inf")


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
