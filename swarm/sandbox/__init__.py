"""The sandbox for code under evaluation: the code an evaluator runs was written by an LLM.

``run_sandboxed(argv, files, limits, env)`` writes ``files`` into a fresh working copy and
runs ``argv`` in it as the unprivileged system user ``swarm-sandbox`` (``./dev setup``
creates it), in new pid, mount, network, IPC and UTS namespaces, with every mount read-only
but one tmpfs, under rlimits (CPU, memory, processes, file size) and a wall clock; the whole
process tree dies at the end, on the timeout and with the caller. Only root can run it.
``sandbox_available()`` says why it cannot run here, or None.

The caller's side: ``run``; the namespace's pid 1: ``pid1``; the limits, the result and what
passes between the two: ``spec``. docs/DESIGN.md section 8 says what it does and does not
protect against.
"""

from __future__ import annotations

from swarm.sandbox.run import run_sandboxed, sandbox_available
from swarm.sandbox.spec import SANDBOX_USER, WORK, SandboxLimits, SandboxResult

__all__ = ["SANDBOX_USER", "WORK", "SandboxLimits", "SandboxResult", "run_sandboxed", "sandbox_available"]
