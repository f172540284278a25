"""The sandbox's caller side: check the request, start the chain, read what comes back.

The chain of processes is

    caller -> setpriv --pdeathsig KILL -> unshare --pid --fork --kill-child ... (new pid,
    mount, network, IPC and UTS namespaces) -> ``swarm.sandbox.pid1`` as pid 1 (root)
    -> the program (the user ``swarm-sandbox``)

so the tree dies with the calling thread (each link kills the next when it dies), and pid 1,
swarm's own code, enforces the wall clock and reports how the program ended. Here the
caller sends it a ``Spec``, reads stdout and stderr (keeping a bounded tail of each) and the
``Report``, and turns them into a ``SandboxResult`` whose reason names the limit. A backstop
kills the chain ``_GRACE_S`` after ``wall_s`` should pid 1 itself hang. docs/DESIGN.md
section 8 says what the sandbox does and does not protect against.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import msgspec

from swarm.errors import SandboxError
from swarm.sandbox import spec as shared
from swarm.sandbox.spec import FRESH, WORK, Report, SandboxLimits, SandboxResult, Spec

__all__ = ["run_sandboxed", "sandbox_available"]

_HINT = "run ./dev setup as root (it creates the system user swarm-sandbox)"
_GRACE_S = 20.0  # past wall_s: starting the namespace, writing the copy, tearing it down
_DRAIN_S = 5.0  # after the backstop kill, how long the pipes may take to close
_REPORT_MAX = 1 << 16
_PATH = "/usr/local/bin:/usr/bin:/bin"


def run_sandboxed(argv: Sequence[str], files: Mapping[str, bytes], limits: SandboxLimits | None = None,
                  env: Mapping[str, str] | None = None) -> SandboxResult:
    """Run ``argv`` in a fresh working copy holding ``files``, in the sandbox; block until it ends.

    Args:
        argv: the program and its arguments (``[sys.executable, "score.py"]``); found on the
            sandbox's PATH, which starts with this interpreter's folder.
        files: relative path -> contents of the working copy, the program's cwd and HOME.
        limits: the run's limits (``SandboxLimits()`` when None).
        env: variables added to the sandbox's few (PATH, HOME, TMPDIR, LANG); nothing of the
            caller's environment is passed on.

    Returns:
        A ``SandboxResult``: ``ok`` on exit code 0, ``failed`` on any other end, ``timeout``
        when the wall clock ran out. The working copy is gone when it returns.

    Raises:
        SandboxError: the sandbox cannot run here (not root, no user ``swarm-sandbox``,
            namespaces refused), or a path in ``files`` leaves the copy, or ``limits`` are out
            of bounds.
    """
    limits = _checked_limits(limits or SandboxLimits())
    entries = _checked_files(files)
    command = _checked_argv(argv)
    user = _sandbox_user()
    size = sum(-(-len(data) // 4096) * 4096 for _, data in entries)
    if size > limits.disk_mb << 20:
        return SandboxResult("failed", -1, "", "", f"the files ({size / 2**20:.1f} MB) do not fit "
                             f"the sandbox's disk (disk_mb={limits.disk_mb})", 0.0)
    environment, exposed = _environment(env), _exposed(user.pw_uid, user.pw_gid)
    read, write = os.pipe()
    spec = Spec(command, environment, entries, user.pw_uid, user.pw_gid, limits, exposed, write)
    try:
        tails, killed, seconds = _supervise(spec, read)
    finally:
        os.close(read)
    return _result(tails, killed, seconds, limits)


def sandbox_available() -> str | None:
    """None if the sandbox runs here, else why not, in one line that says how to fix it.

    It runs Python in the sandbox once (a fraction of a second), so it finds what the
    checks of ``run_sandboxed`` cannot: a kernel that refuses namespaces, an interpreter the
    sandbox user cannot read.
    """
    try:
        result = run_sandboxed([sys.executable, "-c", "print('sandbox ok')"], {}, SandboxLimits(wall_s=30.0))
    except SandboxError as exc:
        return str(exc)
    if result.status == "ok" and result.stdout.strip() == "sandbox ok":
        return None
    last = result.stderr.strip().splitlines()[-1:]
    return (f"Python does not run in the sandbox ({result.reason}{': ' + last[0] if last else ''}); "
            f"the user {shared.SANDBOX_USER} must be able to read {sys.executable} and its libraries")


def _checked_limits(limits: SandboxLimits) -> SandboxLimits:
    try:  # a Struct built in code skips its bounds; converting checks them
        return msgspec.convert(msgspec.to_builtins(limits), SandboxLimits)
    except msgspec.ValidationError as exc:
        raise SandboxError(f"sandbox limits: {exc}") from None


def _checked_files(files: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    entries: dict[str, bytes] = {}
    for name, data in files.items():
        path = PurePosixPath(name) if isinstance(name, str) else None
        why = ("not a str" if path is None else "empty" if str(path) == "." else
               "absolute" if path.is_absolute() else "has a NUL byte" if "\0" in name else
               "goes up with '..'" if ".." in path.parts else
               "is inside a .git folder" if ".git" in path.parts else
               "is there twice" if str(path) in entries else
               "not bytes" if not isinstance(data, bytes) else "")
        if why:
            raise SandboxError(f"sandbox file {name!r}: {why} (a path relative to the working copy, "
                               "without '..' or '.git', is allowed)")
        entries[str(path)] = data
    folders = {str(parent) for name in entries for parent in PurePosixPath(name).parents}
    clash = sorted(folders & entries.keys())
    if clash:
        raise SandboxError(f"sandbox file {clash[0]!r} is also a folder of another file")
    return sorted(entries.items())


def _checked_argv(argv: Sequence[str]) -> list[str]:
    command = [argv] if isinstance(argv, str) else list(argv)
    if isinstance(argv, str) or not command or not all(isinstance(a, str) and "\0" not in a for a in command):
        raise SandboxError(f"sandbox argv {argv!r}: a non-empty list of strings without NUL bytes is needed")
    return command


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {"PATH": f"{os.path.dirname(sys.executable)}:{_PATH}", "HOME": WORK, "TMPDIR": "/tmp",
           "LANG": "C.UTF-8"}
    for key, value in (extra or {}).items():
        if not (isinstance(key, str) and isinstance(value, str)) or not key or "=" in key \
                or "\0" in key + value:
            raise SandboxError(f"sandbox env {key!r}: a name without '=' and a str value are needed")
        env[key] = value
    return env


def _sandbox_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        raise SandboxError(f"the sandbox needs root (to make its namespaces and run code as "
                           f"{shared.SANDBOX_USER}); this process runs as uid {os.geteuid()}")
    try:
        user = pwd.getpwnam(shared.SANDBOX_USER)
    except KeyError:
        raise SandboxError(f"no user {shared.SANDBOX_USER} for the sandbox: {_HINT}") from None
    if user.pw_uid == 0 or user.pw_gid == 0:
        raise SandboxError(f"the user {shared.SANDBOX_USER} has uid or gid 0: it must be unprivileged "
                           f"(userdel {shared.SANDBOX_USER}, then {_HINT})")
    for tool in ("setpriv", "unshare"):
        if shutil.which(tool) is None:
            raise SandboxError(f"the sandbox needs {tool} (util-linux) on PATH")
    return user


def _exposed(uid: int, gid: int) -> list[tuple[str, list[str]]]:
    """The interpreter's folders that pid 1 binds back in, by what covers them in the sandbox:
    a fresh place (``/tmp``, ...) or the outermost folder above them that the sandbox user
    cannot enter (``/root`` for a pyenv Python), which pid 1 covers with an empty tmpfs."""
    wanted = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                            sys.base_exec_prefix, os.path.dirname(sys.executable))}
    wanted.add(os.path.dirname(os.path.realpath(sys.executable)))
    roots = sorted(p for p in wanted if not any(p.startswith(q.rstrip("/") + "/") for q in wanted))
    plan: dict[str, list[str]] = {}
    for root in roots:
        if not _may_enter(root, uid, gid, read=True):
            raise SandboxError(f"the interpreter's folder {root} is not readable by "
                               f"{shared.SANDBOX_USER}: chmod o+rx it, or use a Python installed elsewhere")
        covers = [place for place in FRESH if root.startswith(place + "/")] + [
            str(folder) for folder in reversed(PurePosixPath(root).parents)
            if not _may_enter(str(folder), uid, gid)]
        if covers:
            plan.setdefault(covers[0], []).append(root)
    return sorted(plan.items())


def _may_enter(folder: str, uid: int, gid: int, read: bool = False) -> bool:
    """Whether ``uid`` (group ``gid``) may search ``folder`` (and list it, with ``read``)."""
    st = os.stat(folder)
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    need = 5 if read else 1
    return (st.st_mode >> shift) & need == need


def _supervise(spec: Spec, read: int) -> tuple[dict[str, _Tail], bool, float]:
    """Start the chain, hand pid 1 the spec, read everything back (bounded, within the backstop)."""
    start = time.monotonic()
    env = {"PATH": _PATH, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           # pid 1 imports what this process imports: swarm, msgspec
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          *(p for p in sys.path if os.path.isabs(p))])}
    try:
        chain = [_tool("setpriv"), "--pdeathsig", "KILL", "--",
                 _tool("unshare"), "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
                 "--net", "--ipc", "--uts", "--", sys.executable, "-s", "-P", "-m", "swarm.sandbox.pid1"]
        proc = subprocess.Popen(chain, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(spec.status_fd,), cwd="/", env=env,
                                bufsize=0)
    finally:
        os.close(spec.status_fd)  # pid 1 holds it now; its end is the chain's end
    with proc:
        try:
            _send(proc, msgspec.msgpack.encode(spec))
            tails, killed = _collect(proc, read, spec.limits.output_kb << 10,
                                     start + spec.limits.wall_s + _GRACE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return tails, killed, time.monotonic() - start


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxError(f"the sandbox needs {name} (util-linux) on PATH")
    return path


def _send(proc: subprocess.Popen[bytes], payload: bytes) -> None:
    assert proc.stdin is not None
    view = memoryview(payload)
    try:
        while view:
            view = view[os.write(proc.stdin.fileno(), view):]
        proc.stdin.close()
    except BrokenPipeError:  # pid 1 died before reading it all: its stderr says why
        pass


class _Tail:
    """The last ``limit`` bytes of a stream, and how many were dropped before them."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            cut = len(self.data) - self.limit
            del self.data[:cut]
            self.dropped += cut

    def value(self) -> tuple[bytes, int]:
        extra = max(0, len(self.data) - self.limit)
        return bytes(self.data[extra:]), self.dropped + extra


def _collect(proc: subprocess.Popen[bytes], status: int, limit: int,
             deadline: float) -> tuple[dict[str, _Tail], bool]:
    """Read stdout, stderr and the status pipe to their ends, keeping a bounded tail of each;
    past ``deadline`` (pid 1 stuck), kill the chain, which takes the namespace with it."""
    assert proc.stdout is not None and proc.stderr is not None
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr", status: "status"}
    tails = {"stdout": _Tail(limit), "stderr": _Tail(limit), "status": _Tail(_REPORT_MAX)}
    killed = False
    with selectors.DefaultSelector() as selector:
        for fd in names:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                if killed:
                    break
                proc.kill()
                killed, deadline = True, time.monotonic() + _DRAIN_S
                continue
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 1 << 16)
                if chunk:
                    tails[names[key.fd]].add(chunk)
                else:
                    selector.unregister(key.fd)
    return tails, killed


def _result(tails: dict[str, _Tail], killed: bool, seconds: float, limits: SandboxLimits) -> SandboxResult:
    out, out_dropped = tails["stdout"].value()
    err, err_dropped = tails["stderr"].value()
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    raw, _ = tails["status"].value()
    if killed and not raw:
        return SandboxResult("timeout", -signal.SIGKILL, stdout, stderr, f"the sandbox did not end "
                             f"within wall_s={limits.wall_s:g} + {_GRACE_S:g} s: it was killed", seconds)
    try:
        report = msgspec.json.decode(raw, type=Report)
    except msgspec.DecodeError:
        last = stderr.strip().splitlines()[-1:]
        raise SandboxError(f"the sandbox did not start ({last[0] if last else 'no message'}); it needs "
                           "root and a kernel that allows pid, mount and network namespaces") from None
    if report.kind == "error":
        raise SandboxError(f"the sandbox could not be set up: {report.detail}")
    status, code, reason = _verdict(report, stderr, limits)
    for name, dropped in (("stdout", out_dropped), ("stderr", err_dropped)):
        if dropped:
            reason += f"; {name} cut to its last {limits.output_kb} KB ({dropped} bytes dropped)"
    return SandboxResult(status, code, stdout, stderr, reason, report.seconds)


# The stderr text that names a limit, for an exit that does not say which limit it hit.
_HINTS = (
    (re.compile(r"MemoryError|Cannot allocate memory|std::bad_alloc|[Oo]ut of memory"),
     "the memory limit (memory_mb={memory_mb})"),
    (re.compile(r"BlockingIOError|Resource temporarily unavailable"),
     "the process limit (processes={processes})"),
    (re.compile(r"File too large"), "the file size limit (file_mb={file_mb})"),
    (re.compile(r"No space left on device"), "the sandbox's disk (disk_mb={disk_mb})"),
    (re.compile(r"Network is unreachable|Temporary failure in name resolution|Name or service not known"),
     "no network in the sandbox"),
)


def _verdict(report: Report, stderr: str, limits: SandboxLimits) -> tuple[str, int, str]:
    """(status, returncode, reason) of a run that pid 1 reported."""
    if report.kind == "timeout":
        return ("timeout", -signal.SIGKILL, f"the wall-clock limit (wall_s={limits.wall_s:g}) was "
                "reached: every process of the run was killed")
    if report.kind == "signal":
        cpu = report.code == signal.SIGXCPU or (
            report.code == signal.SIGKILL and report.cpu_s >= math.ceil(limits.cpu_s))
        limit = (f"the CPU time limit (cpu_s={limits.cpu_s:g})" if cpu else
                 f"the file size limit (file_mb={limits.file_mb})" if report.code == signal.SIGXFSZ else "")
        return "failed", -report.code, f"killed by {_signal_name(report.code)}" + (
            f": {limit}" if limit else _hint(stderr, limits))
    if report.code == 0:
        return "ok", 0, "exit code 0"
    return "failed", report.code, f"exit code {report.code}" + _hint(stderr, limits)


def _hint(stderr: str, limits: SandboxLimits) -> str:
    tail = stderr[-4096:]
    found = [(m.start(), m.group(0), text) for pattern, text in _HINTS for m in pattern.finditer(tail)]
    if not found:
        return ""
    _, shown, text = max(found)  # the last one: the error the program ended with
    return f"; stderr shows {shown!r}: {text.format(**msgspec.structs.asdict(limits))}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
