"""The evaluation sandbox (``swarm/sandbox/``) with real processes.

Each artifact that misbehaves (writes outside its copy, forks without end, allocates
10 GB, loops, sleeps, connects) is stopped, reported with the limit that stopped it, and
leaves no process of the sandbox user behind (``pgrep -u swarm-sandbox -f TAG``, after
every test). The machine is shared: the fork bomb and the 10 GB case run only after the same
test saw the bounded case (5 processes, 200 MB) stopped by the limit. Other sandboxes may
run on the machine at the same time, so each test tags its programs' command lines and
looks for leftovers with that tag.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from swarm.errors import SandboxError
from swarm.sandbox import SANDBOX_USER, WORK, SandboxLimits, run_sandboxed, sandbox_available

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

pytestmark = pytest.mark.timeout(180)


def _processes(tag: str) -> str:
    """The sandbox user's processes whose command line holds ``tag`` (other sandboxes may run
    on this machine at the same time: each test tags its own)."""
    found = subprocess.run(["pgrep", "-a", "-u", SANDBOX_USER, "-f", tag], capture_output=True, text=True)
    return found.stdout.strip()


@pytest.fixture(scope="module")
def sandbox() -> None:
    """Skips where the sandbox cannot run (not root, no user): the reason says why."""
    why = sandbox_available()
    if why is not None:
        pytest.skip(why)


@pytest.fixture
def tag(sandbox: None) -> Iterator[str]:
    """A word for the command lines of the test's programs; after the test, no process of the
    sandbox user has it."""
    word = f"swarm-sandbox-test-{uuid.uuid4().hex}"
    yield word
    assert _processes(word) == "", "the run left processes of the sandbox user behind"


def _run(tag: str, source: str, limits: SandboxLimits) -> tuple[str, int, str, str, str]:
    result = run_sandboxed([PY, "main.py", tag], {"main.py": source.encode()}, limits)
    return result.status, result.returncode, result.stdout, result.stderr, result.reason


# --------------------------------------------------------------------------- runs that end well


CLEAN = """
import json, os
with open("data/input.txt") as fh:
    value = int(fh.read())
with open("{marker}", "w") as fh:
    fh.write("written in the copy")
print(json.dumps({{"value": 2 * value, "uid": os.getuid(), "cwd": os.getcwd(),
                  "home": os.environ["HOME"], "copy": open("{marker}").read(),
                  "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                  "caller_env": "SWARM_SECRET" in os.environ, "extra": os.environ["EXTRA"]}}))
"""


def test_a_clean_run_returns_ok_with_its_stdout(tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    marker = f"{tag}-copy"
    monkeypatch.setenv("SWARM_SECRET", "not for the sandbox")
    # Execute
    result = run_sandboxed([PY, "main.py", tag], {"main.py": CLEAN.format(marker=marker).encode(),
                                              "data/input.txt": b"21"},
                           SandboxLimits(wall_s=30), env={"EXTRA": "given"})
    # Assert
    assert (result.status, result.returncode, result.reason) == ("ok", 0, "exit code 0"), result.stderr
    seen = json.loads(result.stdout)
    assert seen["value"] == 42 and seen["copy"] == "written in the copy"
    assert seen["uid"] == pwd.getpwnam(SANDBOX_USER).pw_uid
    assert seen["cwd"] == WORK and seen["home"] == WORK
    assert len(seen["pids"]) <= 2 and 1 in seen["pids"]  # its own pid namespace: pid 1 and itself
    assert seen["caller_env"] is False and seen["extra"] == "given"
    assert not Path(WORK, marker).exists() and not Path("/tmp", marker).exists()  # the copy is gone


WRITES = """
import json, os
done = {{}}
for folder in {folders!r}:
    try:
        with open(os.path.join(folder, "{marker}"), "w") as fh:
            fh.write("leak")
        done[folder] = "written"
    except OSError as exc:
        done[folder] = type(exc).__name__
print(json.dumps(done))
"""


def test_writes_outside_the_copy_fail_or_land_on_a_throwaway_tmpfs(tag: str) -> None:
    # Prepare
    marker = f"{tag}-leak"
    throwaway = ["/tmp", "/var/tmp", "/dev/shm"]
    refused = [str(REPO), str(REPO / "swarm"), str(Path.home()), "/root", "/", "/etc",
               *[p for p in ("/run/lock", "/var/lock") if os.path.isdir(p)]]
    # Execute
    status, _, stdout, stderr, _ = _run(tag, WRITES.format(folders=throwaway + refused, marker=marker),
                                        SandboxLimits(wall_s=30))
    # Assert
    assert status == "ok", stderr
    done = json.loads(stdout)
    assert all(done[folder] == "written" for folder in throwaway), done
    # each refused with an OSError, whatever the folder looks like from inside (a checkout
    # under /tmp is not there at all: FileNotFoundError)
    assert all(done[folder] != "written" for folder in refused), done
    left = [folder for folder in throwaway + refused if Path(folder, marker).exists()]
    assert left == [], f"the sandbox's writes reached the machine: {left}"


def test_output_past_output_kb_keeps_its_last_part(tag: str) -> None:
    # Execute
    status, _, stdout, _, reason = _run(tag, "for i in range(100_000):\n    print('line', i)\n",
                                        SandboxLimits(output_kb=1, wall_s=30))
    # Assert
    assert status == "ok"
    assert len(stdout.encode()) <= 1024 and stdout.endswith("line 99999\n")
    assert "stdout cut to its last 1 KB" in reason


# --------------------------------------------------------------------------- runs a limit stops


def test_a_cpu_loop_is_killed_by_the_cpu_limit(tag: str) -> None:
    # Execute
    status, code, _, _, reason = _run(tag, "while True:\n    pass\n", SandboxLimits(cpu_s=1, wall_s=60))
    # Assert
    assert (status, code) == ("failed", -signal.SIGXCPU)
    assert "CPU time limit (cpu_s=1)" in reason


SLEEPER = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import subprocess, sys, time; "
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]]); "
         "time.sleep(600)", sys.argv[1]]
subprocess.Popen(sleep)  # a child that sleeps, and a grandchild that sleeps
print("started", flush=True)
time.sleep(600)
"""


def test_a_sleep_past_wall_s_times_out_and_its_whole_tree_dies(tag: str) -> None:
    # Execute
    status, code, stdout, _, reason = _run(tag, SLEEPER, SandboxLimits(wall_s=3))
    # Assert
    assert (status, code) == ("timeout", -signal.SIGKILL)
    assert stdout == "started\n"
    assert "wall-clock limit (wall_s=3)" in reason
    # `tag` checks that the child and the grandchild died with it


FORK_TEN = """
import json, os, time
forked = refused = 0
for _ in range(10):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        forked += 1
    except OSError:
        refused += 1
print(json.dumps({"forked": forked, "refused": refused}))
"""

FORK_BOMB = "import os\nwhile True:\n    os.fork()\n"

FORK_SPINNER = """
import os
while True:  # forks without end and never gives up
    try:
        os.fork()
    except OSError:
        pass
"""


def test_the_process_limit_holds_then_fork_bombs_are_stopped(tag: str) -> None:
    # Execute: the bounded case first, 10 forks under processes=5
    status, _, stdout, stderr, _ = _run(tag, FORK_TEN, SandboxLimits(processes=5, wall_s=30))
    # Assert
    assert status == "ok", stderr
    counts = json.loads(stdout)
    assert counts["forked"] <= 4 and counts["forked"] + counts["refused"] == 10, counts
    # Execute: a fork bomb, now that the limit is shown to hold
    status, _, _, _, reason = _run(tag, FORK_BOMB, SandboxLimits(processes=16, cpu_s=5, wall_s=30))
    # Assert
    assert status == "failed" and "process limit (processes=16)" in reason, reason
    # Execute: one that forks without end, ignoring the refusals
    status, _, _, _, reason = _run(tag, FORK_SPINNER, SandboxLimits(processes=16, cpu_s=1, wall_s=5))
    # Assert
    assert status in ("failed", "timeout")
    assert "CPU time limit (cpu_s=1)" in reason or "wall-clock limit (wall_s=5)" in reason, reason


GROW = """
chunks = []
try:
    while len(chunks) < 1024:  # 10 GB in 10 MB pieces, each written
        chunks.append(b"x" * (10 << 20))
except MemoryError:
    print(len(chunks), flush=True)
    raise
"""


def test_the_memory_limit_holds_then_10_gb_is_refused(tag: str) -> None:
    # Execute: the bounded case first, 200 MB under memory_mb=100
    status, _, _, _, reason = _run(tag, "b = bytearray(200 << 20)\n", SandboxLimits(memory_mb=100, wall_s=30))
    # Assert
    assert status == "failed" and "memory limit (memory_mb=100)" in reason, reason
    # Execute: 10 GB, now that the limit is shown to hold
    status, _, stdout, _, reason = _run(tag, GROW, SandboxLimits(memory_mb=200, wall_s=30))
    # Assert
    assert status == "failed" and "memory limit (memory_mb=200)" in reason, reason
    assert int(stdout) * 10 < 200  # it got no further than the limit


def test_a_file_past_file_mb_fails(tag: str) -> None:
    # Execute
    status, _, _, _, reason = _run(tag, "open('big', 'wb').write(b'x' * (3 << 20))\n",
                                   SandboxLimits(file_mb=1, wall_s=30))
    # Assert
    assert status == "failed" and "file size limit (file_mb=1)" in reason, reason


def test_a_network_connection_does_not_connect(tag: str) -> None:
    # Prepare: a server in this process that the artifact tries to reach
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'hi')\n"
        # Execute
        status, _, _, _, reason = _run(tag, source, SandboxLimits(wall_s=30))
        # Assert
        assert status == "failed" and "no network in the sandbox" in reason, reason
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # a connection made would be waiting here


CALLER = """
import sys
from swarm.sandbox import SandboxLimits, run_sandboxed
run_sandboxed([sys.executable, "main.py", sys.argv[1]], {"main.py": sys.argv[2].encode()},
              SandboxLimits(wall_s=600))
"""


def _wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_the_tree_dies_with_its_caller(tag: str) -> None:
    # Prepare: a caller whose sandboxed program and its child and grandchild sleep 10 minutes
    caller = subprocess.Popen([PY, "-c", CALLER, tag, SLEEPER], cwd=REPO)
    try:
        assert _wait_until(lambda: len(_processes(tag).splitlines()) >= 3, 60), "it did not start"
        # Execute
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        # Assert
        assert _wait_until(lambda: _processes(tag) == "", 60), _processes(tag)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


# --------------------------------------------------------------------------- what it refuses


@pytest.mark.parametrize("name", ["/etc/passwd", "../up.py", "a/../../up.py", ".git/config",
                                  "sub/.git/HEAD", "", "nul\0.py"])
def test_a_path_outside_the_copy_is_refused(name: str) -> None:
    with pytest.raises(SandboxError, match="sandbox file"):
        run_sandboxed([PY, "main.py"], {"main.py": b"", name: b"x"})


def test_limits_out_of_bounds_are_refused() -> None:
    with pytest.raises(SandboxError, match="cpu_s"):
        run_sandboxed([PY, "-c", "pass"], {}, SandboxLimits(cpu_s=-1.0))


@pytest.mark.skipif(os.geteuid() != 0, reason="as another user the sandbox refuses for want of root")
def test_a_missing_user_is_an_error_that_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.setattr("swarm.sandbox.spec.SANDBOX_USER", "swarm-sandbox-absent")
    # Execute
    with pytest.raises(SandboxError) as raised:
        run_sandboxed([PY, "-c", "pass"], {})
    # Assert
    assert "no user swarm-sandbox-absent" in str(raised.value) and "./dev setup" in str(raised.value)
    assert sandbox_available() == str(raised.value)


CALLER_IN_VENV = """
import json, sys
from swarm.sandbox import run_sandboxed
result = run_sandboxed([sys.executable, "-c", "import sys; print(sys.prefix)", sys.argv[1]], {})
print(json.dumps([result.status, result.stdout.strip(), result.stderr]))
"""


def test_python_runs_from_a_folder_the_sandbox_user_cannot_enter(tag: str, tmp_path: Path) -> None:
    # Prepare: a venv inside a folder only root may enter (as pyenv's Python is under /root)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    venv = private / "venv"
    subprocess.run([Path(sys.base_prefix, "bin", "python3"), "-m", "venv", "--without-pip", venv], check=True)
    path = os.pathsep.join([str(REPO), str(Path(msgspec.__file__).parents[1])])
    # Execute
    done = subprocess.run([venv / "bin" / "python", "-c", CALLER_IN_VENV, tag], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, check=True)
    # Assert
    status, prefix, stderr = json.loads(done.stdout)
    assert (status, prefix) == ("ok", str(venv)), stderr
