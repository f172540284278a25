"""The ``swarm`` command line.

Each command group lives in its own module that exposes
``register(subparsers)``; the groups are listed in ``_GROUPS``. A handler
returns an exit code.

A user who gives a bad file, a bad path, a full or read-only disk, or a
corrupt repository or key file gets one line that names the problem and exit
code 2, never a traceback: a ``SwarmError`` raised where the problem is found
says it best, and ``main`` turns what escapes anyway (``OSError``,
``UnicodeDecodeError``, ``RecursionError``, a YAML or msgspec decode error) into
one line as a last resort. ``--debug`` (or ``SWARM_DEBUG=1``) shows the
traceback instead; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from swarm.cli.keys import key_after_dashes
from swarm.errors import ConfigError, SwarmError

__all__ = ["main", "build_parser", "describe"]

# Modules that each add one command group (``register(subparsers)``).
_GROUPS = (
    "swarm.cli.config_cmd",
    "swarm.cli.run",
    "swarm.cli.lineage",
    "swarm.cli.artifact",
    "swarm.cli.keys",
    "swarm.cli.init",
)

_MAX_LINE = 400
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EPIPE, errno.EROFS, errno.EFBIG)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too, pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_clip(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = _Parser(
        prog="swarm",
        description="Run and inspect swarms of LLM agents that learn from each other.",
    )
    parser.add_argument("--version", action="version", version=f"swarm {_version()}")
    parser.add_argument(
        "--debug", action="store_true",
        help="show the traceback of an error instead of one line (also SWARM_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swarm`` console script."""
    parser = build_parser()
    args = parser.parse_args(key_after_dashes(sys.argv[1:] if argv is None else argv))
    debug = args.debug or os.environ.get("SWARM_DEBUG", "") not in ("", "0")
    try:
        code: int = args.handler(args)
        _flush_stdout()
    except KeyboardInterrupt:
        print("swarm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, OSError) and exc.filename is None:
            try:  # a write to stdout failed (full disk, closed pipe): say so
                _flush_stdout()
            except OSError as stdout_error:
                exc = stdout_error
        lines = None if debug else describe(exc)
        if lines is None:
            raise
        for line in lines:
            print(line, file=sys.stderr)
        return 2
    return code


def describe(exc: BaseException) -> list[str] | None:
    """What to print for an error a user can fix, or ``None`` for a bug (keep the traceback).

    A config with several problems gets a line per problem; anything else one line.
    """
    import msgspec
    import yaml

    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        return [f"swarm: error: {len(exc.problems)} problems:"] + [
            f"  {_clip(p)}" for p in exc.problems
        ]
    if isinstance(exc, SwarmError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = _os_error(exc)
    elif isinstance(exc, UnicodeDecodeError):
        text = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    elif isinstance(exc, RecursionError):
        text = "input nested too deeply to read"
    elif isinstance(exc, yaml.YAMLError):
        text = f"not valid YAML: {exc}"
    elif isinstance(exc, msgspec.DecodeError):
        text = f"corrupt data: {exc}"
    else:
        return None
    return [f"swarm: error: {_clip(text)}"]


def _flush_stdout() -> None:
    """Flush stdout now, so that a full disk or closed pipe is an error ``main`` can describe.

    Left to interpreter exit, a failed flush prints its own multi-line warning.
    After a failure, stdout is pointed at the null device so that the exit-time
    flush of what is still buffered succeeds quietly.

    Raises:
        OSError: the flush failed; its filename is ``standard output``.
    """
    try:
        sys.stdout.flush()
    except OSError as exc:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass
        raise OSError(exc.errno, exc.strerror, "standard output") from None


def _version() -> str:
    """The installed distribution's version (``swarm.__version__``, read by pyproject).

    Read from the package metadata, not ``swarm``: no part imports the facade.
    """
    try:
        return metadata.version("swarm")
    except metadata.PackageNotFoundError:  # the checkout on sys.path, never installed
        return "(not installed)"


def _os_error(exc: OSError) -> str:
    if exc.strerror is None:
        return str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    if names:
        return f"{' -> '.join(names)}: {exc.strerror}"
    # No file name: a read or write on an open file or on the output failed.
    return f"cannot write: {exc.strerror}" if exc.errno in _WRITE_ERRORS else exc.strerror


def _clip(text: str) -> str:
    """One line, at most ``_MAX_LINE`` characters: an error must not flood the terminal."""
    line = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."
