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
and ``fitness``. Third parties register more with ``@evaluator("name")`` or
through the entry-point group ``swarm.evaluators``: a class built with the
protocol's settings, with ``async evaluate(files) -> dict``.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from swarm.registry import Registry
from swarm.sandbox import SandboxLimits, run_sandboxed

__all__ = ["EVALUATORS", "CommandEvaluator", "Evaluator", "create_evaluator", "evaluator",
           "failed"]


class Evaluator(Protocol):
    """Scores one version of an artifact."""

    async def evaluate(self, files: Mapping[str, bytes]) -> dict[str, Any]: ...


EVALUATORS: Registry[Callable[[Any], Evaluator]] = Registry("evaluator", "swarm.evaluators")
E = TypeVar("E", bound=Callable[[Any], Evaluator])


def evaluator(name: str) -> Callable[[E], E]:
    """Class decorator registering an evaluator (built with the protocol's settings)."""

    def wrap(cls: E) -> E:
        EVALUATORS.register(name, cls)
        return cls

    return wrap


def create_evaluator(name: str, settings: Any) -> Evaluator:
    """The evaluator registered as ``name``, built with ``settings``."""
    return EVALUATORS.get(name)(settings)


def failed(status: str, detail: str, evaluator: str) -> dict[str, Any]:
    """A result that selection never keeps."""
    return {"status": status, "fitness": None, "evaluator": evaluator, "detail": detail[:2000]}


@evaluator("command")
class CommandEvaluator:
    """Runs the protocol's ``command`` on a sandboxed copy; reads ``{status, fitness}`` JSON."""

    def __init__(self, settings: Any) -> None:
        self.argv = [sys.executable if a == "{python}" else a for a in settings.command]
        self.limits: SandboxLimits = settings.limits
        if not self.argv:
            from swarm.errors import ConfigError

            raise ConfigError("protocol.command: the command evaluator needs a command "
                              "(e.g. ['{python}', 'score.py'])")

    async def evaluate(self, files: Mapping[str, bytes]) -> dict[str, Any]:
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
