"""swarm: a runtime for swarms of LLM agents that learn from each other."""

from swarm.errors import SwarmError

__version__ = "0.1.0"
__all__ = ["SwarmError", "__version__"]
