"""swarm: a runtime for swarms of LLM agents that learn from each other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarm.errors import SwarmError

if TYPE_CHECKING:
    from swarm.config.schema import SwarmConfig
    from swarm.runtime.events import Progress, RunSummary

__version__ = "0.1.0"
__all__ = ["SwarmError", "__version__", "run_swarm", "load_config"]


def run_swarm(config: SwarmConfig, resume: bool = False,
              progress: Progress | None = None) -> RunSummary | None:
    """Launch a swarm, wait for it, and return its summary (None if interrupted).

    Prints nothing: ``progress``, if given, is called with each event of the
    run (``swarm.runtime.events``); ``swarm.cli.run.ConsoleProgress()`` prints
    them as ``swarm run`` does. See ``swarm.runtime.run.run_swarm``.
    """
    from swarm.runtime.run import run_swarm as run

    return run(config, resume=resume, progress=progress)


def load_config(path: str, overrides: tuple[str, ...] | list[str] = ()) -> SwarmConfig:
    """Read and validate a swarm config (see ``swarm.config.loader.load_config``)."""
    from swarm.config import load_config as load

    return load(path, overrides)
