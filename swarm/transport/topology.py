"""Where every process of a swarm listens: ports, addresses and the address book.

One module owns the port plan, so the coordinator, hosts, model server,
launchers and CLI never compute an address themselves. On one machine every
role listens at ``transport.host`` on ``transport.base_port`` plus its offset:

=============  =======================================
offset         role
=============  =======================================
0              coordinator control (ROUTER)
1              coordinator events (PUB)
2              the machine's model server (ROUTER), unless ``model.server`` names one
10 + i         host ``i``'s direct peer messages (ROUTER)
=============  =======================================

A launcher that places processes elsewhere (on other machines) hands out an
``AddressBook`` instead of relying on the plan.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Protocol

import msgspec

__all__ = [
    "CONTROL_OFFSET", "EVENTS_OFFSET", "MODEL_OFFSET", "PEER_OFFSET", "MAX_PORT",
    "Listen", "AddressBook", "endpoint", "address_book", "swarm_ports", "last_port", "new_routing_id",
]

CONTROL_OFFSET = 0
EVENTS_OFFSET = 1
MODEL_OFFSET = 2
PEER_OFFSET = 10  # host i serves direct peer messages at base_port + PEER_OFFSET + i
MAX_PORT = 65535


class Listen(Protocol):
    """What the port plan reads from the transport settings."""

    @property
    def host(self) -> str: ...

    @property
    def base_port(self) -> int: ...


class AddressBook(msgspec.Struct, frozen=True):
    """Every address a swarm's processes connect to."""

    control: str
    events: str
    model: str
    peers: tuple[str, ...]

    def peer(self, index: int) -> str:
        """The peer-message address of host ``index``."""
        return self.peers[index]


def endpoint(listen: Listen, offset: int) -> str:
    """The TCP endpoint ``tcp://host:(base_port + offset)`` of one role."""
    return f"tcp://{listen.host}:{listen.base_port + offset}"


def address_book(listen: Listen, hosts: int, model_server: str | None = None) -> AddressBook:
    """The one-machine address book: every role at its offset from ``base_port``.

    Args:
        listen: the transport settings (``host``, ``base_port``).
        hosts: how many host processes the swarm runs.
        model_server: an external model server's address (``model.server``), if any.
    """
    return AddressBook(
        control=endpoint(listen, CONTROL_OFFSET),
        events=endpoint(listen, EVENTS_OFFSET),
        model=model_server or endpoint(listen, MODEL_OFFSET),
        peers=tuple(endpoint(listen, PEER_OFFSET + i) for i in range(hosts)),
    )


def swarm_ports(listen: Listen, hosts: int, own_model_server: bool = True) -> Iterator[int]:
    """Every port a one-machine swarm binds (to check that they are free)."""
    yield listen.base_port + CONTROL_OFFSET
    yield listen.base_port + EVENTS_OFFSET
    if own_model_server:
        yield listen.base_port + MODEL_OFFSET
    for i in range(hosts):
        yield listen.base_port + PEER_OFFSET + i


def last_port(base_port: int, hosts: int) -> int:
    """The highest port a one-machine swarm with ``hosts`` hosts binds."""
    return base_port + PEER_OFFSET + hosts - 1


def new_routing_id(host_id: str) -> str:
    """``host_id`` plus 64 random bits: a routing id no other peer can guess."""
    return f"{host_id}.{secrets.token_hex(8)}"
