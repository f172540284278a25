"""The ``swarm`` command line.

Each command group lives in its own module that exposes
``register(subparsers)``; the groups are listed in ``_GROUPS``. A handler
returns an exit code. A ``SwarmError`` (a user mistake or a refused input) is
printed to stderr without a traceback and exits 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from swarm import __version__
from swarm.cli_keys import key_after_dashes
from swarm.errors import SwarmError

__all__ = ["main", "build_parser"]

# Modules that each add one command group (``register(subparsers)``).
_GROUPS = (
    "swarm.cli_basic",
    "swarm.cli_run",
    "swarm.cli_lineage",
    "swarm.cli_keys",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog="swarm",
        description="Run and inspect swarms of LLM agents that learn from each other.",
    )
    parser.add_argument("--version", action="version", version=f"swarm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swarm`` console script."""
    parser = build_parser()
    args = parser.parse_args(key_after_dashes(sys.argv[1:] if argv is None else argv))
    try:
        code: int = args.handler(args)
    except SwarmError as exc:
        print(f"swarm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("swarm: interrupted", file=sys.stderr)
        return 130
    return code
