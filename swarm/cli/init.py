"""CLI command ``swarm init DIR``: a starter folder with the configs, their seed artifacts and
skill files, and the notebooks.

The starter files ship inside the package (``swarm/cli/starter/``: in a
checkout, links to ``configs/`` and ``notebooks/``), so an installed swarm
can write them anywhere. ``DIR`` then looks like the checkout's top folder:
``swarm run configs/quickstart.yaml`` and the notebooks work from it unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from swarm.errors import SwarmError

__all__ = ["register", "starter_files", "write_starter"]

# The starter's folders and the kind of file each holds.
_FOLDERS = (("configs", ".yaml"), ("notebooks", ".ipynb"))
_ARTIFACT_SUFFIXES = (".py", ".txt")


def register(sub: Any) -> None:
    """Add the ``init`` command."""
    init = sub.add_parser(
        "init",
        help="write a starter folder: the quickstart config and the notebooks",
        description="Write DIR/configs/quickstart.yaml (8 agents on a tiny model; a CPU is "
        "enough) and the notebooks DIR/notebooks/*.ipynb. DIR may exist already; a file "
        "that is already there is never overwritten (then nothing is written).",
    )
    init.add_argument("dir", type=Path, help="the folder to write into (made if missing)")
    init.set_defaults(handler=_init)


def starter_files() -> list[tuple[str, Traversable]]:
    """The files ``swarm init`` writes: their path inside DIR and the packaged file.

    Raises:
        SwarmError: the installed package lacks its starter files.
    """
    root = resources.files("swarm.cli") / "starter"
    files = []
    for folder, suffix in _FOLDERS:
        if not (root / folder).is_dir():
            raise SwarmError(f"this swarm installation has no starter files ({root / folder} "
                             "is missing): reinstall the package")
        for entry in sorted((root / folder).iterdir(), key=lambda e: e.name):
            if entry.is_file() and entry.name.endswith(suffix):
                files.append((f"{folder}/{entry.name}", entry))
    artifacts = root / "configs" / "artifacts"  # the evogit configs' seed artifacts
    if artifacts.is_dir():
        for seed in sorted(artifacts.iterdir(), key=lambda e: e.name):
            for entry in sorted(seed.iterdir(), key=lambda e: e.name) if seed.is_dir() else ():
                if entry.is_file() and entry.name.endswith(_ARTIFACT_SUFFIXES):
                    files.append((f"configs/artifacts/{seed.name}/{entry.name}", entry))
    skills = root / "configs" / "skills"  # the file skills of configs/skills.yaml
    for entry in sorted(skills.iterdir(), key=lambda e: e.name) if skills.is_dir() else ():
        if entry.is_file() and entry.name.endswith(".jsonl"):
            files.append((f"configs/skills/{entry.name}", entry))
    return files


def write_starter(dest: Path) -> list[Path]:
    """Write the starter files into ``dest``; nothing at all if one of them exists.

    Returns:
        The files written.

    Raises:
        SwarmError: ``dest`` is not a folder, or a file to write is already there.
        OSError: a folder cannot be made or a file written.
    """
    files = starter_files()
    if dest.exists() and not dest.is_dir():
        raise SwarmError(f"{dest} is not a folder: swarm init writes into a folder")
    for rel, _ in files:
        target = dest / rel
        if target.exists() or target.is_symlink():
            raise SwarmError(f"{target} already exists: swarm init overwrites nothing "
                             "(move it away, or choose another folder)")
    written = []
    for rel, source in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:  # "x": never over a file that appeared meanwhile
            out.write(source.read_bytes())
        written.append(target)
    return written


def _init(args: argparse.Namespace) -> int:
    dest: Path = args.dir
    written = write_starter(dest)
    names = ", ".join(str(path.relative_to(dest)) for path in written)
    print(f"wrote {len(written)} files into {dest}: {names}")
    print("next:")
    print(f"  cd {shlex.quote(str(dest))}")
    print("  swarm config check configs/quickstart.yaml   # the config with every default")
    print("  swarm run configs/quickstart.yaml            # 8 agents learning, a few minutes")
    print("  jupyter lab notebooks/                       # the same from Python (with jupyter)")
    if importlib.util.find_spec("vllm") is None:
        print("The quickstart's model server needs vLLM: install swarm with its `cpu` extra "
              "on a CPU machine, its `gpu` extra on an NVIDIA GPU.")
    return 0
