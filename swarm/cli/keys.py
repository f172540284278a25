"""CLI group ``swarm keys``: the CurveZMQ keypair and allow-list of this node."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from swarm.transport.security import add_key, init_keys, list_keys, public_key_text

__all__ = ["register", "key_after_dashes"]

_DEFAULT_DIR = "~/.swarm/keys"


def register(sub: Any) -> None:
    """Add the ``keys`` command group (``init``, ``add``, ``list``)."""
    keys = sub.add_parser("keys", help="manage CurveZMQ keys (transport.security: curve)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    keys_sub.required = True

    init = keys_sub.add_parser(
        "init",
        help="create this node's keypair and allow its own public key",
        description="Write DIR/self.key and DIR/self.key_secret (mode 0600) and put the "
        "public key on DIR/allowed/. Prints the public key to hand to peers.",
    )
    init.add_argument("--force", action="store_true", help="replace an existing keypair")
    init.set_defaults(handler=_init)

    add = keys_sub.add_parser(
        "add",
        help="allow a peer's public key",
        description="Put KEY (40 Z85 characters, or a .key certificate file) on the "
        "allow-list under NAME. Running servers pick it up on restart.",
    )
    add.add_argument("name", help="a name for the peer (letters, digits, _ . -)")
    add.add_argument("key", help="the peer's public key or its .key file")
    add.set_defaults(handler=_add)

    show = keys_sub.add_parser("list", help="show this node's public key and the allow-list")
    show.set_defaults(handler=_list)

    for parser in (init, add, show):
        parser.add_argument(
            "--dir", default=_DEFAULT_DIR, help=f"keys directory (default {_DEFAULT_DIR})"
        )


def key_after_dashes(argv: Sequence[str]) -> list[str]:
    """``swarm keys add NAME KEY`` with a KEY that starts with '-', moved behind ``--``.

    Z85 has '-' in its alphabet, so about one public key in 85 starts with it, and
    argparse would read such a key as an option (``-h...`` even as ``--help``). A
    40-character argument starting with '-' is the key: it goes last, after ``--``.
    """
    argv = list(argv)
    lead = 0
    while lead < len(argv) and argv[lead] == "--debug":  # the one option before a command
        lead += 1
    head, argv = argv[:lead], argv[lead:]
    if argv[:2] != ["keys", "add"] or "--" in argv:
        return head + argv
    rest: list[str] = []
    key = None
    tokens = iter(argv[2:])
    for tok in tokens:
        if tok == "--dir":
            rest += [tok, next(tokens, "")]
        elif key is None and len(tok) == 40 and tok.startswith("-"):
            key = tok
        else:
            rest.append(tok)
    return head + (argv if key is None else ["keys", "add", *rest, "--", key])


def _init(args: argparse.Namespace) -> int:
    public = init_keys(args.dir, force=args.force)
    print(f"wrote keypair to {args.dir}")
    print(f"public key: {public.decode()}")
    return 0


def _add(args: argparse.Namespace) -> int:
    dest = add_key(args.dir, args.name, args.key)
    print(f"allowed {args.name} ({dest})")
    return 0


def _list(args: argparse.Namespace) -> int:
    own = public_key_text(args.dir)
    allowed = list_keys(args.dir)  # read everything first: an error is then the only output
    print(f"self: {own}")
    print(f"allowed ({len(allowed)}):")
    for name, key in allowed.items():
        print(f"  {name}  {key}")
    return 0
