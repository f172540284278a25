"""Interaction protocols and the protocol registry (installed as ``swarm.protocols``).

Importing the package registers the built-in protocols, ``knexa``, ``local``,
``cooperative`` (with its ``cooperator`` role) and ``evogit`` (with its ``evolver``
role and the ``command`` evaluator).
"""

from swarm.protocols.base import Protocol, orient
from swarm.protocols.cooperative import Cooperative, Cooperator
from swarm.protocols.evaluators import EVALUATORS, evaluator
from swarm.protocols.evogit import Evogit, Evolver
from swarm.protocols.knexa import Knexa
from swarm.protocols.local import Local
from swarm.protocols.registry import PROTOCOLS, get_protocol, protocol
from swarm.protocols.settings import ExchangeSettings, ProtocolSection

__all__ = [
    "Protocol", "orient", "PROTOCOLS", "get_protocol", "protocol", "Knexa", "Local",
    "Cooperative", "Cooperator", "Evogit", "Evolver", "EVALUATORS", "evaluator",
    "ExchangeSettings", "ProtocolSection",
]
