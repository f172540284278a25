"""What the sandbox's caller and its pid 1 share: the limits, the result, the spec the caller
sends (on pid 1's stdin) and the report pid 1 sends back (on a pipe the program never has)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from swarm.settings import Settings

__all__ = ["SANDBOX_USER", "WORK", "FRESH", "SandboxLimits", "SandboxResult", "Spec", "Report"]

SANDBOX_USER = "swarm-sandbox"  # the system user `./dev setup` creates
WORK = "/tmp/work"  # the working copy, as the program sees it (in the namespace's tmpfs)
FRESH = ("/tmp", "/var/tmp", "/dev/shm")  # where the sandbox mounts its one tmpfs

Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=86_400.0)]
Megabytes = Annotated[int, msgspec.Meta(ge=1, le=1_048_576)]


class SandboxLimits(Settings, frozen=True):
    """What one sandboxed run may use; reaching a limit ends the run or fails the call that
    asked for more."""

    cpu_s: Seconds = 60.0  # RLIMIT_CPU, whole seconds rounded up: SIGXCPU, SIGKILL a second later
    memory_mb: Annotated[int, msgspec.Meta(ge=16, le=1_048_576)] = 1024  # RLIMIT_AS
    # RLIMIT_NPROC counts every process and thread of the sandbox user, so sandboxes running at
    # the same time share it.
    processes: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    file_mb: Megabytes = 64  # RLIMIT_FSIZE: no file written grows past it
    wall_s: Seconds = 120.0  # wall clock: then every process of the run is killed
    output_kb: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 256  # the last part of each stream
    disk_mb: Megabytes = 256  # the one tmpfs: working copy, /tmp, /var/tmp, /dev/shm


class SandboxResult(msgspec.Struct, frozen=True):
    """How a sandboxed run ended."""

    status: str  # "ok" (exit 0), "failed" (another exit or killed by a limit), "timeout" (wall_s)
    returncode: int  # the exit code, or minus the signal that killed it (-9 on a timeout)
    stdout: str  # the last output_kb of each stream, decoded as UTF-8 (bad bytes replaced)
    stderr: str
    reason: str  # which limit stopped it, or the exit code
    seconds: float  # the program's wall time


class Spec(msgspec.Struct, frozen=True):
    """What the caller tells the namespace's pid 1: the run, and who runs it."""

    argv: list[str]
    env: dict[str, str]
    files: list[tuple[str, bytes]]  # checked: relative, no '..', no '.git'
    uid: int
    gid: int
    limits: SandboxLimits
    exposed: list[tuple[str, list[str]]]  # (a folder the user cannot enter, what it needs inside)
    status_fd: int  # where pid 1 writes its Report


class Report(msgspec.Struct, frozen=True):
    """What pid 1 tells the caller when the program is over."""

    kind: str  # "exit", "signal", "timeout", "error" (the sandbox could not be built)
    code: int = 0  # the exit code or the signal
    cpu_s: float = 0.0
    seconds: float = 0.0
    detail: str = ""
