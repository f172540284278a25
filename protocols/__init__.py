"""Interaction protocols and the protocol registry (installed as ``swarm.protocols``).

Importing the package registers the built-in protocols, ``knexa``, ``local`` and
``cooperative`` (with its ``cooperator`` role).
"""

from swarm.protocols.base import Protocol, orient
from swarm.protocols.cooperative import Cooperative, Cooperator
from swarm.protocols.knexa import Knexa
from swarm.protocols.local import Local
from swarm.protocols.registry import PROTOCOLS, get_protocol, protocol
from swarm.protocols.settings import ExchangeSettings, ProtocolSection

__all__ = [
    "Protocol", "orient", "PROTOCOLS", "get_protocol", "protocol", "Knexa", "Local",
    "Cooperative", "Cooperator",
    "ExchangeSettings", "ProtocolSection",
]
