"""swarm: a runtime for swarms of LLM agents that learn from each other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarm.errors import SwarmError

if TYPE_CHECKING:
    from swarm.config.schema import SwarmConfig

__version__ = "0.1.0"
__all__ = ["SwarmError", "__version__", "run_swarm", "load_config"]


def run_swarm(config: SwarmConfig, resume: bool = False) -> dict[str, Any] | None:
    """Launch a swarm, show its progress, and return its summary (None if interrupted).

    The same as ``swarm run``; see ``swarm.cli.run.run_swarm``.
    """
    from swarm.cli.run import run_swarm as run

    return run(config, resume=resume)


def load_config(path: str, overrides: tuple[str, ...] | list[str] = ()) -> SwarmConfig:
    """Read and validate a swarm config (see ``swarm.config.loader.load_config``)."""
    from swarm.config import load_config as load

    return load(path, overrides)
