"""The ZeroMQ transport: sockets, roles, reliable conversations, adapter transfer, topology.

``Server`` (ROUTER) and ``Client`` (DEALER) converse (requests, replies, acks,
retries, de-duplication); ``Publisher``/``Subscriber`` carry best-effort
events; ``AdapterSender``/``AdapterReceiver`` move adapter bytes, verified by
sha256. Each role is an ``Endpoint``: one socket with its reader, inbox and
write queue. ``swarm.transport.peers`` has the overview; ``topology`` the
ports and addresses; ``loop`` the event loop every process runs on.
"""

from swarm.transport.loop import loop_factory, run_loop
from swarm.transport.options import TransportOptions
from swarm.transport.peers import Client, Server
from swarm.transport.pubsub import Publisher, Subscriber
from swarm.transport.reliable import DOWN, Conversations, down_signal
from swarm.transport.routes import Routes
from swarm.transport.security import CurveSecurity
from swarm.transport.socket import Endpoint, Hook, Incoming
from swarm.transport.topology import AddressBook, address_book, endpoint, new_routing_id
from swarm.transport.transfer import AdapterReceiver, AdapterSender, ReceivedAdapter

__all__ = [
    "TransportOptions",
    "Incoming",
    "Hook",
    "Endpoint",
    "Conversations",
    "Routes",
    "Server",
    "Client",
    "Publisher",
    "Subscriber",
    "DOWN",
    "down_signal",
    "CurveSecurity",
    "AdapterSender",
    "AdapterReceiver",
    "ReceivedAdapter",
    "AddressBook",
    "address_book",
    "endpoint",
    "new_routing_id",
    "run_loop",
    "loop_factory",
]
