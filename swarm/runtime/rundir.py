"""Run directories: which ones swarm made, and which it may therefore move.

The run directory is the lineage directory's parent (``runs/<name>/`` by
default), but ``swarm.lineage`` may point anywhere: ``~/lineage`` makes it the
home directory, ``lineage`` the working directory. A new run keeps an earlier
run by renaming its directory aside, so that rename must only ever touch a
directory swarm created: ``claim_run_dir`` writes a marker file (``.swarm-run``)
into each directory it creates, and ``make_room`` moves only a marked directory
that is not ``/``, the home directory, the working directory or one of their
ancestors, and that holds only what runs write (a file a person put there keeps
the directory where it is). In any other directory a new run that would overwrite an earlier
run's files is refused with a sentence saying what to do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from swarm.config.schema import SwarmConfig
from swarm.errors import SwarmError

__all__ = ["RUN_MARKER", "claim_run_dir", "is_swarm_made", "protected", "make_room",
           "model_cache"]

RUN_MARKER = ".swarm-run"
_RUN_FILES = ("config.json", "hosts.json", "model.txt", "summary.json", "logs", "ids")


def is_swarm_made(path: Path) -> bool:
    """Whether swarm created the directory ``path`` (it holds the run marker)."""
    return (path / RUN_MARKER).is_file()


def protected(path: Path) -> str | None:
    """Why ``path`` may never be moved (``/``, home, the working directory or above), or None."""
    real = path.resolve()
    for name, place in (("the home directory", Path.home()), ("the working directory",
                                                               Path.cwd())):
        place = place.resolve()
        if real == place:
            return f"it is {name}"
        if real in place.parents:
            return f"it holds {name}"
    if real == Path(real.anchor):
        return "it is the root directory"
    return None


def claim_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` if it is missing and mark it as swarm's; leave an existing one unmarked.

    Raises:
        SwarmError: it cannot be created (a file in the way, read-only or full disk).
    """
    if run_dir.exists():
        return
    try:
        run_dir.mkdir(parents=True)
        (run_dir / RUN_MARKER).write_text(
            f"made by swarm on {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()}); "
            "a new run may move this directory aside\n")
    except OSError as exc:
        raise SwarmError(f"swarm.lineage: cannot create the run directory {run_dir}: "
                         f"{exc.strerror or exc}") from None


def _held_run_files(config: SwarmConfig) -> list[str]:
    run_dir = config.run_dir
    held = [name for name in _RUN_FILES if (run_dir / name).exists()]
    lineage = config.lineage_dir
    if lineage.is_dir() and any(lineage.iterdir()):
        held.append(lineage.name)
    store = config.adapter_store
    if store.parent == run_dir and store.is_dir() and any(store.iterdir()):
        held.append(store.name)
    return held


def _foreign_entries(config: SwarmConfig) -> list[str]:
    """Entries of a swarm-made run directory that no run writes (a person's files)."""
    own = {RUN_MARKER, *_RUN_FILES, config.lineage_dir.name, "adapters", ".models"}
    if config.adapter_store.parent == config.run_dir:
        own.add(config.adapter_store.name)
    return sorted(p.name for p in config.run_dir.iterdir() if p.name not in own)


def make_room(config: SwarmConfig) -> Path | None:
    """Before a new run: move an earlier run in a swarm-made run directory aside.

    Returns where it was moved, or None when nothing was moved.

    Raises:
        SwarmError: the run directory was not made by swarm (or is protected)
            and already holds an earlier run's files.
    """
    run_dir = config.run_dir
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    reason = protected(run_dir)
    foreign = _foreign_entries(config) if reason is None and is_swarm_made(run_dir) else []
    if foreign:  # files put there later: moving the folder would move them too
        reason = f"it also holds {', '.join(foreign[:5])}, which swarm did not write"
    if reason is None and is_swarm_made(run_dir):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept, n = run_dir.with_name(f"{run_dir.name}.{stamp}"), 1
        while kept.exists():
            n += 1
            kept = run_dir.with_name(f"{run_dir.name}.{stamp}.{n}")
        try:
            run_dir.rename(kept)
        except OSError as exc:
            raise SwarmError(f"cannot move the earlier run {run_dir} aside to {kept}: "
                             f"{exc.strerror or exc}") from None
        return kept
    held = _held_run_files(config)
    if held:
        why = reason or "swarm did not create it"
        raise SwarmError(
            f"{run_dir} already holds {', '.join(held)}, and {why}, so a new run will not "
            f"move or overwrite it: continue that run with --resume, or point swarm.lineage "
            f"at a new directory (e.g. runs/{{name}}/lineage)")
    return None


def model_cache(run_dir: Path) -> Path:
    """Where the tiny model is built: beside a run directory swarm made, else inside it.

    Beside (``runs/.models``) lets the runs under one folder share it; a folder
    swarm did not make gets it inside, so nothing is written above it.
    """
    if is_swarm_made(run_dir) and not protected(run_dir):
        return run_dir.parent / ".models"
    return run_dir / ".models"
