"""The swarm config: one YAML file, validated completely before anything starts.

``load_config`` (``swarm.config.loader``) reads a file (strictly:
``swarm.config.reader``), applies ``--set`` overrides and returns a frozen
``SwarmConfig`` (``swarm.config.schema``), or raises one ``ConfigError``
naming every problem. The schema is assembled from the
sections each part declares next to its code (``swarm.serving.settings``,
``swarm.transport.settings``, ``swarm.matching.settings``,
``swarm.protocols.settings``); ``model.backend``, ``matchmaker.kind`` and
``protocol.name`` are checked against their registries, and the rest of those
sections against the settings schema the chosen entry registered
(``swarm.config.choices``). Rules across fields live in ``swarm.config.rules``.
"""

from swarm.config.loader import apply_override, load_config, parse_config, to_dict
from swarm.config.schema import (
    AgentGroup,
    BanditSettings,
    EngineSettings,
    ExchangeSettings,
    LauncherSection,
    LoraSection,
    MatchmakerSection,
    ModelSection,
    ProtocolSection,
    SwarmConfig,
    SwarmSection,
    TinyModelSection,
    TransportSection,
)

__all__ = [
    "SwarmConfig",
    "SwarmSection",
    "ModelSection",
    "EngineSettings",
    "TinyModelSection",
    "AgentGroup",
    "LoraSection",
    "MatchmakerSection",
    "BanditSettings",
    "ProtocolSection",
    "ExchangeSettings",
    "TransportSection",
    "LauncherSection",
    "load_config",
    "parse_config",
    "apply_override",
    "to_dict",
]
