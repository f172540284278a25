"""Evaluators of evolved artifacts, registered by name like roles (``protocol.evaluator``).

An evaluator scores one version of an artifact (its files) and returns a JSON
object ``{"status", "fitness", "evaluator", "detail"}``: ``status`` ``ok`` with
a finite ``fitness`` (higher is better), or ``failed`` / ``timeout`` /
``invalid`` with ``fitness`` null, which selection never keeps. The evolution
service caches each result per tree in git notes, so a version is evaluated
once however often it is reached.

Built in: ``command`` runs ``protocol.command`` (``{python}`` is this
interpreter) in the sandbox (``swarm.sandbox``) on a fresh copy of the files
and reads the last line of its output that is a JSON object with ``status``
and ``fitness``; ``judge`` shows the swarm's LLM the diff of a child against
its parent (and, where ``protocol.command`` is set, that command's output on
the child as its lint) and has it answer ``good`` or ``bad`` as structured
output: the child's fitness is its parent's plus one, or minus one (the seed
scores 0), so (1+1) selection keeps exactly the children the judge calls
good. A judged fitness is relative to the parent it was judged against; the
cache per tree keeps the first verdict. Third parties register more with ``@evaluator("name")`` or
through the entry-point group ``swarm.evaluators``: a class built with the
protocol's settings, with ``async evaluate(files) -> dict``.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypeVar

import msgspec

from swarm.protocols.base import ServiceContext
from swarm.registry import Registry
from swarm.sandbox import SandboxLimits, run_sandboxed

__all__ = ["EVALUATORS", "CommandEvaluator", "Evaluator", "JudgeEvaluator", "Parent",
           "create_evaluator", "evaluator", "failed", "read_score"]


@dataclass(frozen=True)
class Parent:
    """The version a child was made from (its first parent), for evaluators that compare."""

    files: Mapping[str, bytes]
    fitness: float | None


class Evaluator(Protocol):
    """Scores one version of an artifact (``parent``: what it was made from, or None)."""

    async def evaluate(self, files: Mapping[str, bytes],
                       parent: Parent | None = None) -> dict[str, Any]: ...


EVALUATORS: Registry[Callable[[Any, ServiceContext], Evaluator]] = Registry(
    "evaluator", "swarm.evaluators")
E = TypeVar("E", bound=Callable[[Any, ServiceContext], Evaluator])


def evaluator(name: str) -> Callable[[E], E]:
    """Class decorator registering an evaluator (built with the protocol's settings and the
    service's context: its ``generate`` reaches the model)."""

    def wrap(cls: E) -> E:
        EVALUATORS.register(name, cls)
        return cls

    return wrap


def create_evaluator(name: str, settings: Any, ctx: ServiceContext) -> Evaluator:
    """The evaluator registered as ``name``, built with ``settings`` and ``ctx``."""
    return EVALUATORS.get(name)(settings, ctx)


def failed(status: str, detail: str, evaluator: str) -> dict[str, Any]:
    """A result that selection never keeps."""
    return {"status": status, "fitness": None, "evaluator": evaluator, "detail": detail[:2000]}


@evaluator("command")
class CommandEvaluator:
    """Runs the protocol's ``command`` on a sandboxed copy; reads ``{status, fitness}`` JSON."""

    def __init__(self, settings: Any, ctx: ServiceContext) -> None:
        self.argv = [sys.executable if a == "{python}" else a for a in settings.command]
        self.limits: SandboxLimits = settings.limits
        if not self.argv:
            from swarm.errors import ConfigError

            raise ConfigError("protocol.command: the command evaluator needs a command "
                              "(e.g. ['{python}', 'score.py'])")

    async def evaluate(self, files: Mapping[str, bytes],
                       parent: Parent | None = None) -> dict[str, Any]:
        run = await asyncio.to_thread(run_sandboxed, self.argv, dict(files), self.limits)
        if run.status != "ok":
            return failed(run.status, f"{run.reason}; stderr: {run.stderr[-500:]}", "command")
        return read_score(run.stdout, "command")


def read_score(stdout: str, name: str) -> dict[str, Any]:
    """The result a command printed: its last line that is ``{"status", "fitness"}`` JSON."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or "status" not in data:
            continue
        fitness = data.get("fitness")
        if data["status"] != "ok":
            return failed(str(data["status"])[:40], str(data.get("detail", ""))[:2000], name)
        if isinstance(fitness, bool) or not isinstance(fitness, int | float) or \
                not math.isfinite(fitness):
            return failed("invalid", f"fitness {fitness!r} is not a finite number", name)
        return {"status": "ok", "fitness": float(fitness), "evaluator": name,
                "detail": str(data.get("detail", ""))[:2000]}
    return failed("invalid", f"no {{status, fitness}} JSON line in its output: {stdout[-300:]!r}",
                  name)


class Verdict(msgspec.Struct, frozen=True):
    """What the judge answers."""

    verdict: Literal["good", "bad"]
    reason: Annotated[str, msgspec.Meta(max_length=300)]


@evaluator("judge")
class JudgeEvaluator:
    """The swarm's LLM compares a child with its parent: good (+1) or bad (-1)."""

    def __init__(self, settings: Any, ctx: ServiceContext) -> None:
        if ctx.generate is None:
            from swarm.errors import ConfigError

            raise ConfigError("protocol.evaluator: judge needs the swarm's model server")
        self.generate = ctx.generate
        self.lint = CommandEvaluator(settings, ctx) if settings.command else None

    async def evaluate(self, files: Mapping[str, bytes],
                       parent: Parent | None = None) -> dict[str, Any]:
        from swarm.errors import SwarmError
        from swarm.serving.structured import check_output, decode_output, schema_for
        from swarm.wire.messages import ChatTurn, GenRequest

        if parent is None:
            return {"status": "ok", "fitness": 0.0, "evaluator": "judge", "detail": "the seed"}
        diff = _diff(parent.files, files)
        lint = "" if self.lint is None else json.dumps(await self.lint.evaluate(files))[:1500]
        schema = schema_for(Verdict)
        request = GenRequest(messages=[
            ChatTurn(role="system", content="You review a change to a file. Answer with JSON: "
                     "{\"verdict\": \"good\" or \"bad\", \"reason\": one sentence}."),
            ChatTurn(role="user", content=f"The change:\n{diff[:6000]}\n\nIts checks: "
                     f"{lint or '(none)'}\n\nIs the changed version better?")],
            max_tokens=96, temperature=0.0, json_schema=schema)
        try:
            out = (await self.generate([request]))[0]
            check_output(out.texts[0], schema)
            verdict = decode_output(out.texts[0], Verdict)
        except SwarmError as exc:
            return failed("failed", f"the judge did not answer: {exc}", "judge")
        base = parent.fitness or 0.0
        return {"status": "ok", "fitness": base + (1.0 if verdict.verdict == "good" else -1.0),
                "evaluator": "judge", "detail": f"{verdict.verdict}: {verdict.reason}"[:2000]}


def _diff(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> str:
    out: list[str] = []
    for path in sorted(set(before) | set(after)):
        a = before.get(path, b"").decode(errors="replace").splitlines(keepends=True)
        b = after.get(path, b"").decode(errors="replace").splitlines(keepends=True)
        out += difflib.unified_diff(a, b, f"a/{path}", f"b/{path}")
    return "".join(out) or "(no change)"
