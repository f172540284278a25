"""The sandbox's pid 1: ``python -m swarm.sandbox.pid1``, root in the new namespaces.

``swarm.sandbox.run`` starts it (through ``setpriv`` and ``unshare``) with a ``Spec`` on its
stdin. It never runs the artifact's code itself: it makes every mount read-only, mounts one
tmpfs of ``disk_mb`` on /tmp (bound on /var/tmp and /dev/shm too), covers a folder above the
interpreter that the sandbox user cannot enter with an empty read-only tmpfs into which the
interpreter's folders are bound, writes the working copy, then forks the program: rlimits,
no new privileges, the sandbox user, exec. It reaps every orphan while it waits (a zombie
still counts against RLIMIT_NPROC), kills every process of the namespace when the program
ends or ``wall_s`` is up, and writes a ``Report`` on the status pipe, which the program does
not inherit. When it exits, the kernel takes the namespace, its tmpfs and the copy with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Iterator
from typing import NoReturn

import msgspec

from swarm.sandbox.spec import FRESH, WORK, Report, Spec

__all__ = ["main"]

# mount(2) flags (linux/mount.h) and prctl(2)'s PR_SET_NO_NEW_PRIVS
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_RELATIME = 1 << 21
KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
              "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
READ_ONLY_AGAIN = MS_REMOUNT | MS_BIND | MS_RDONLY
PR_SET_NO_NEW_PRIVS = 38


def main() -> None:
    """Build the sandbox, run the program, kill what is left, report; the spec on stdin."""
    spec = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=Spec)
    os.set_inheritable(spec.status_fd, False)
    try:
        _build(spec)
        report = _run(spec)
    except Exception as exc:  # noqa: BLE001 - the caller raises it as a SandboxError
        report = Report("error", detail=f"{type(exc).__name__}: {exc}")
    os.write(spec.status_fd, msgspec.json.encode(report))


def _build(spec: Spec) -> None:
    """Every mount read-only, the fresh tmpfs, the interpreter's folders, the working copy."""
    held = {folder: os.open(folder, os.O_PATH | os.O_DIRECTORY)  # before a mount hides them
            for _, folders in spec.exposed for folder in folders}
    try:
        for point, flags in _writable_mounts():
            _mount(None, point, None, READ_ONLY_AGAIN | flags)
        _mount("swarm-sandbox", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={spec.limits.disk_mb}m,mode=1777")
        for place in FRESH[1:]:  # /var/tmp and /dev/shm: folders of the one tmpfs
            if os.path.isdir(place):
                inside = "/tmp/." + place.strip("/").replace("/", "-")
                os.mkdir(inside)
                os.chmod(inside, 0o1777)
                _mount(inside, place, None, MS_BIND)
        for cover, folders in spec.exposed:
            _expose(cover, folders, held)
    finally:
        for fd in held.values():
            os.close(fd)
    _write_copy(spec)


def _write_copy(spec: Spec) -> None:
    """The working copy, in the fresh tmpfs (nothing there yet to follow), owned by the user."""
    os.mkdir(WORK, 0o755)
    for name, data in spec.files:
        path = os.path.join(WORK, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb") as fh:
            fh.write(data)
    for folder, _, names in os.walk(WORK):
        for path in (folder, *(os.path.join(folder, n) for n in names)):
            os.chown(path, spec.uid, spec.gid)


def _writable_mounts() -> Iterator[tuple[str, int]]:
    """Each mount point that is writable (its top mount), with the flags to keep; /proc is
    the namespace's own."""
    top: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            top[point] = fields[5]
    for point, options in top.items():
        names = set(options.split(","))
        if "ro" not in names and point != "/proc" and not point.startswith("/proc/"):
            yield point, sum(flag for name, flag in KEPT_FLAGS.items() if name in names)


def _expose(cover: str, folders: list[str], held: dict[str, int]) -> None:
    """Bind ``folders`` (read-only) back into ``cover``: one of the fresh places, or a folder
    the user cannot enter, covered first with an empty read-only tmpfs."""
    if cover not in FRESH:
        _mount("swarm-sandbox", cover, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for folder in folders:
        os.makedirs(folder, 0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{held[folder]}", folder, None, MS_BIND | MS_REC)
        _mount(None, folder, None, READ_ONLY_AGAIN | MS_NOSUID | MS_NODEV)
    if cover not in FRESH:
        _mount(None, cover, None, READ_ONLY_AGAIN | MS_NOSUID | MS_NODEV)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    encoded = [None if s is None else s.encode() for s in (source, target, fstype, data)]
    if libc.mount(encoded[0], encoded[1], encoded[2], flags, encoded[3]) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"mount {source or ''} on {target}: {os.strerror(number)}")


def _run(spec: Spec) -> Report:
    """Fork the program, wait for it within wall_s (reaping orphans), then kill every other
    process of the namespace."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    start = time.monotonic()
    child = os.fork()
    if child == 0:
        _exec(spec)
    try:
        ended = _wait(child, start + spec.limits.wall_s)
    finally:
        _kill_all()
    seconds = time.monotonic() - start
    if ended is None:
        return Report("timeout", seconds=seconds)
    status, usage = ended
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status):
        return Report("signal", os.WTERMSIG(status), cpu, seconds)
    return Report("exit", os.waitstatus_to_exitcode(status), cpu, seconds)


def _wait(child: int, deadline: float) -> tuple[int, resource.struct_rusage] | None:
    """The program's wait status and usage, or None when ``deadline`` passed first."""
    while True:
        while (reaped := os.wait4(-1, os.WNOHANG))[0]:
            if reaped[0] == child:
                return reaped[1], reaped[2]
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        signal.sigtimedwait([signal.SIGCHLD], min(left, 0.1))


def _kill_all() -> None:
    """SIGKILL every process of the namespace but pid 1, until none is left to reap."""
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        try:
            os.wait4(-1, 0)
        except ChildProcessError:
            return


def _exec(spec: Spec) -> NoReturn:
    """In the forked child: limits, then the sandbox user, no new privileges, the program."""
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for number in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; exec keeps that
            signal.signal(number, signal.SIG_DFL)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.chdir(WORK)
        limits = spec.limits
        cpu = math.ceil(limits.cpu_s)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        for which, value in ((resource.RLIMIT_AS, limits.memory_mb << 20),
                             (resource.RLIMIT_NPROC, limits.processes),
                             (resource.RLIMIT_FSIZE, limits.file_mb << 20), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(which, (value, value))
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        os.setgroups([])
        os.setresgid(spec.gid, spec.gid, spec.gid)
        os.setresuid(spec.uid, spec.uid, spec.uid)
        if os.getresuid() != (spec.uid,) * 3 or os.getgroups():
            raise OSError("the sandbox user's ids did not take")
        os.execvpe(spec.argv[0], spec.argv, spec.env)
    except BaseException as exc:  # noqa: BLE001 - the child must never return into pid 1's code
        os.write(2, f"sandbox: cannot run {spec.argv[0]!r}: {exc}\n".encode(errors="replace"))
    finally:
        os._exit(127)


if __name__ == "__main__":
    main()
