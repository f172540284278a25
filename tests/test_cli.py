"""The command line: a bad file, path or disk is one line on stderr and exit 2, never a traceback.

In-process runs (``main`` + ``capsys``) cover each command and input; a few
runs of the real console script check what only a process shows: nothing
printed at interpreter exit, the exit status, ``--debug``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm import load_config
from swarm.cli.main import describe, main
from swarm.errors import ConfigError, LineageError
from swarm.transport.security import init_keys, public_key_text

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SWARM = Path(sys.executable).with_name("swarm")


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    """Run ``swarm argv``; assert exit 2 and one line on stderr holding every fragment."""
    code = main(argv)

    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


# -- swarm config check / swarm run / swarm status on bad files ---------------------------


def _bad_files(tmp: Path) -> list[tuple[str, Path, str]]:
    latin1 = tmp / "latin1.yaml"
    latin1.write_bytes(b"swarm: {name: caf\xe9}\n")
    deep = tmp / "deep.yaml"
    deep.write_text("[" * 100_000)
    bomb = tmp / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n")
    dup = tmp / "dup.yaml"
    # Invalid whichever value wins: a regression must not start a real swarm under `run`.
    dup.write_text(QUICKSTART.read_text().replace("  rounds: 4\n", "  rounds: 4\n  rounds: 0\n"))
    binary = tmp / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    return [
        ("not UTF-8", latin1, "not UTF-8 text (byte 0xe9"),
        ("nested 100,000 deep", deep, "nested more than 32 levels"),
        ("alias bomb", bomb, "alias *a is not allowed"),
        ("duplicate key", dup, "swarm.rounds: duplicate key"),
        ("binary", binary, "not UTF-8 text"),
        ("missing", tmp / "missing.yaml", "No such file or directory"),
        ("a directory", tmp, "Is a directory"),
    ]


@pytest.mark.parametrize("command", ["config check", "run", "status", "chat"])
def test_bad_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     command: str) -> None:
    # `status` and `chat` also take a run directory: a directory without config.json is not one
    runs = command in ("status", "chat")
    for desc, path, fragment in _bad_files(tmp_path):
        if runs and path == tmp_path:
            fragment = "not a run directory (no readable config.json"
        tail = ["a-0", "hi"] if command == "chat" else []
        err = _one_line(capsys, [*command.split(), str(path), *tail], str(path), fragment)
        assert err.count(str(path)) == 1, f"{desc}: {err!r}"


def test_config_with_several_problems_lists_each(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "swarm.yaml"
    path.write_text(QUICKSTART.read_text().replace("name: knexa", "name: knexo")
                    .replace("lineage: runs/{name}/lineage", "lineage: runs/{nme}"))

    code = main(["config", "check", str(path)])

    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err[0] == f"{path}: 2 error(s)"
    assert any("did you mean 'knexa'" in line for line in err[1:])
    assert any("did you mean {name}" in line for line in err[1:])


# -- swarm keys on bad key files and directories -------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    init_keys(tmp_path / "keys")
    return tmp_path / "keys"


def test_keys_init_on_bad_directories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")

    _one_line(capsys, ["keys", "init", "--dir", str(a_file)], str(a_file), "not a directory")
    _one_line(capsys, ["keys", "init", "--dir", str(a_file / "keys")], str(a_file / "keys"),
              "cannot write a keypair", "Not a directory")
    # procfs refuses new directories even to root: a read-only destination.
    _one_line(capsys, ["keys", "init", "--dir", "/proc/self/keys"], "/proc/self/keys",
              "cannot write a keypair")
    assert a_file.read_text() == "x"


def test_keys_add_with_bad_key_files(tmp_path: Path, keys: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("metadata\ncurve\n    secret-key = \"x\"\n")
    binary = tmp_path / "binary.key"
    binary.write_bytes(bytes(range(256)) * 4)
    short = tmp_path / "short.key"
    short.write_text('    public-key = "tooshort"\n')
    huge = tmp_path / "huge.key"
    huge.write_bytes(b"#" * (65 * 1024))
    cases = [
        (garbage, "holds no public key"),
        (binary, "holds no public key"),
        (short, "not 40 Z85 characters"),
        (huge, "larger than"),
        (tmp_path / "missing.key", "does not exist"),
        (tmp_path, "is not a file"),
    ]
    for path, fragment in cases:
        _one_line(capsys, ["keys", "add", "peer", str(path), "--dir", str(keys)],
                  str(path), fragment)
    _one_line(capsys, ["keys", "add", "..", public_key_text(keys), "--dir", str(keys)],
              "key name '..'")
    assert sorted(p.name for p in (keys / "allowed").iterdir()) == ["self.key"]


def test_keys_add_to_an_unwritable_allow_list(keys: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (keys / "allowed" / "self.key").unlink()
    (keys / "allowed").rmdir()
    (keys / "allowed").write_text("not a directory")

    _one_line(capsys, ["keys", "add", "peer", public_key_text(keys), "--dir", str(keys)],
              "cannot write", str(keys / "allowed" / "peer.key"))


def test_keys_list_with_corrupt_files(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (keys / "allowed" / "broken.key").write_bytes(b"\x00\xff garbage")

    _one_line(capsys, ["keys", "list", "--dir", str(keys)],
              str(keys / "allowed" / "broken.key"), "holds no public key")
    (keys / "allowed" / "broken.key").unlink()
    (keys / "self.key").write_bytes(b'public-key = "\xff\xfe"\n')
    _one_line(capsys, ["keys", "list", "--dir", str(keys)],
              str(keys / "self.key"), "not 40 Z85 characters")
    _one_line(capsys, ["keys", "list", "--dir", str(keys / "missing")], "no keypair in")


def test_keys_add_of_a_dash_key_after_debug(keys: Path) -> None:
    dash_key = "-h" + public_key_text(keys)[2:]

    assert main(["--debug", "keys", "add", "peer", dash_key, "--dir", str(keys)]) == 0

    assert (keys / "allowed" / "peer.key").read_text().count(dash_key) == 1


# -- swarm model tiny ---------------------------------------------------------------------


def test_model_tiny_refuses_sizes_past_the_config_bounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_line(capsys, ["model", "tiny", str(tmp_path / "m"), "--layers", "1000000"],
              "--layers", "<= 64")
    _one_line(capsys, ["model", "tiny", str(tmp_path / "m"), "--vocab", "10"], "--vocab", ">= 300")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("argv", [["model", "tiny"], ["model", "tiny", "x", "--layers", "two"],
                                  ["keys", "frobnicate"], ["nosuchcommand"], []])
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)

    err = capsys.readouterr().err
    assert info.value.code == 2
    assert len(err.splitlines()) == 1 and "error:" in err and "--help" in err, err


# -- the last-resort handler --------------------------------------------------------------


def test_describe_turns_user_errors_into_one_line_and_leaves_bugs() -> None:
    lines = describe(PermissionError(errno.EACCES, "Permission denied", "/etc/x"))
    assert lines == ["swarm: error: /etc/x: Permission denied"]
    lines = describe(OSError(errno.ENOSPC, "No space left on device"))
    assert lines == ["swarm: error: cannot write: No space left on device"]
    lines = describe(LineageError("line one\nline two\n" + "x" * 10_000))
    assert lines is not None and len(lines) == 1 and len(lines[0]) <= 420
    assert lines[0].startswith("swarm: error: line one | line two | x")
    assert describe(RecursionError()) == ["swarm: error: input nested too deeply to read"]
    lines = describe(ConfigError(["a: bad", "b: worse"]))
    assert lines == ["swarm: error: 2 problems:", "  a: bad", "  b: worse"]
    assert describe(ValueError("a bug")) is None
    assert describe(AttributeError("a bug")) is None


def _swarm(*args: str, stdout: int | None = subprocess.PIPE,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SWARM), *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


def test_console_script_on_a_full_disk_prints_one_line() -> None:
    with open("/dev/full", "w") as full:
        done = _swarm("config", "check", str(QUICKSTART), stdout=full.fileno())

    assert done.returncode == 2
    assert done.stderr.splitlines() == ["swarm: error: cannot write: No space left on device"]


def test_console_script_bad_config_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "self.key").write_text("garbage\n")

    plain = _swarm("keys", "list", "--dir", str(keys))
    debug = _swarm("--debug", "keys", "list", "--dir", str(keys))
    env_debug = _swarm("keys", "list", "--dir", str(keys), env={"SWARM_DEBUG": "1"})

    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.splitlines() == [
        f"swarm: error: key file {keys / 'self.key'} holds no public key (a ZeroMQ certificate)"
    ]
    for run in (debug, env_debug):
        assert run.returncode != 0
        assert "Traceback" in run.stderr and "ConfigError" in run.stderr


# -- swarm init ------------------------------------------------------------------------------


def _starter() -> dict[str, bytes]:
    """What ``swarm init`` must write: the checkout's configs and notebooks."""
    files = {f"configs/{p.name}": p.read_bytes() for p in (ROOT / "configs").glob("*.yaml")}
    files |= {f"notebooks/{p.name}": p.read_bytes() for p in (ROOT / "notebooks").glob("*.ipynb")}
    files |= {f"configs/artifacts/{p.parent.name}/{p.name}": p.read_bytes()
              for p in (ROOT / "configs" / "artifacts").glob("*/*") if p.suffix in (".py", ".txt")}
    files |= {f"configs/skills/{p.name}": p.read_bytes()
              for p in (ROOT / "configs" / "skills").glob("*.jsonl")}
    return files


def test_init_writes_the_quickstart_config_and_the_notebooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "new" / "project"

    code = main(["init", str(dest)])

    out = capsys.readouterr().out
    assert code == 0
    written = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert written == _starter()
    assert "configs/quickstart.yaml" in written and "notebooks/quickstart.ipynb" in written
    assert f"cd {dest}" in out and "swarm run configs/quickstart.yaml" in out
    load_config(dest / "configs" / "quickstart.yaml")  # the starter config validates
    assert "configs/artifacts/packing/params.txt" in written  # evogit.yaml's seed artifact
    assert load_config(dest / "configs" / "skills.yaml").skills[0].file == str(
        dest / "configs" / "skills" / "largest.jsonl")  # its file skill, beside it


def test_init_into_an_existing_folder_keeps_its_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")

    assert main(["init", str(tmp_path)]) == 0

    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert (tmp_path / "configs" / "quickstart.yaml").read_bytes() == QUICKSTART.read_bytes()


def test_init_overwrites_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "configs" / "quickstart.yaml"
    mine.parent.mkdir()
    mine.write_text("swarm: {name: mine}\n")

    _one_line(capsys, ["init", str(tmp_path)], f"{mine} already exists", "overwrites nothing")

    assert mine.read_text() == "swarm: {name: mine}\n"
    assert not (tmp_path / "notebooks").exists()  # refused before writing anything


def test_init_into_a_file_or_an_unwritable_place_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    _one_line(capsys, ["init", str(file)], f"{file} is not a folder")
    _one_line(capsys, ["init", str(file / "below")], f"{file / 'below' / 'configs'}")
