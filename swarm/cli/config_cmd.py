"""CLI groups ``swarm config`` and ``swarm model``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
import yaml

from swarm.config import load_config, to_dict
from swarm.errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``config`` and ``model`` command groups."""
    config = sub.add_parser("config", help="validate and show swarm configs")
    config_sub = config.add_subparsers(dest="config_command", metavar="COMMAND")
    config_sub.required = True
    check = config_sub.add_parser(
        "check",
        help="validate a config file and print it resolved (defaults filled in)",
        description="Validate FILE with its overrides; print the resolved config, "
        "or every error and exit 2.",
    )
    check.add_argument("file", type=Path, help="YAML config file")
    check.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. --set swarm.rounds=3 (repeatable)",
    )
    check.set_defaults(handler=_config_check)

    model = sub.add_parser("model", help="build local models")
    model_sub = model.add_subparsers(dest="model_command", metavar="COMMAND")
    model_sub.required = True
    tiny = model_sub.add_parser(
        "tiny",
        help="write a tiny Llama model with a locally trained tokenizer",
        description="Write a tiny Llama-architecture causal LM (random weights, "
        "byte-level BPE tokenizer trained locally, chat template) to DEST. "
        "The same arguments give byte-identical weights.",
    )
    tiny.add_argument("dest", type=Path, help="output folder")
    tiny.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    tiny.add_argument(
        "--hidden", type=int, default=256, help="hidden size, a multiple of 64 (default 256)"
    )
    tiny.add_argument("--vocab", type=int, default=1024, help="vocabulary size (default 1024)")
    tiny.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    tiny.set_defaults(handler=_model_tiny)


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file, args.overrides)
    except ConfigError as exc:
        # One problem is one line (naming the file once); several get a header.
        if len(exc.problems) == 1:
            line = exc.problems[0]
            print(line if line.startswith(f"{args.file}:") else f"{args.file}: {line}",
                  file=sys.stderr)
            return 2
        print(f"{args.file}: {len(exc.problems)} error(s)", file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0


def _model_tiny(args: argparse.Namespace) -> int:
    from swarm.config.schema import TinyModelSection
    from swarm.models.tiny import TinySpec, build_tiny_model, weights_sha256

    # The same bounds as the config's model.tiny: --layers 10**9 must not start building.
    shape = {"layers": args.layers, "hidden": args.hidden, "vocab": args.vocab, "seed": args.seed}
    try:
        msgspec.convert(shape, TinyModelSection)
    except msgspec.ValidationError as exc:
        what, _, where = str(exc).partition(" - at `$.")
        raise ConfigError(f"--{where.rstrip('`')}: {what[0].lower()}{what[1:]}") from None
    try:
        spec = TinySpec(**shape)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    dest = build_tiny_model(args.dest, spec)
    print(f"wrote {dest} (weights sha256 {weights_sha256(dest)})")
    return 0
