"""The port plan: every process reads its addresses from one address book."""

from __future__ import annotations

import re

from swarm.transport.settings import TransportSection
from swarm.transport.topology import (
    PEER_OFFSET,
    address_book,
    last_port,
    new_routing_id,
    swarm_ports,
)


def test_address_book_puts_every_role_at_its_offset() -> None:
    # Prepare
    section = TransportSection(host="127.0.0.1", base_port=47000)
    # Execute
    book = address_book(section, hosts=3)
    # Assert
    assert (book.control, book.events, book.model) == (
        "tcp://127.0.0.1:47000", "tcp://127.0.0.1:47001", "tcp://127.0.0.1:47002")
    assert [book.peer(i) for i in range(3)] == [
        f"tcp://127.0.0.1:{47000 + PEER_OFFSET + i}" for i in range(3)]


def test_an_external_model_server_replaces_the_planned_one() -> None:
    section = TransportSection(host="127.0.0.1", base_port=47000)
    book = address_book(section, hosts=1, model_server="tcp://10.0.0.5:9000")
    assert book.model == "tcp://10.0.0.5:9000"
    # ... and the swarm does not bind the model server's port itself
    assert 47002 not in set(swarm_ports(section, 1, own_model_server=False))


def test_the_ports_a_swarm_binds_end_at_last_port() -> None:
    section = TransportSection(host="127.0.0.1", base_port=50000)
    ports = list(swarm_ports(section, hosts=4))
    assert len(ports) == len(set(ports)) == 7
    assert max(ports) == last_port(50000, 4) == 50000 + PEER_OFFSET + 3


def test_routing_ids_are_the_host_name_and_64_secret_bits() -> None:
    ids = {new_routing_id("host-0") for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"host-0\.[0-9a-f]{16}", i) for i in ids)
