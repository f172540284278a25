"""The coordinator's registry: which host holds which agents, bound to the peer that joined.

A ``Join`` comes from any peer that reaches the control socket, so its host
name, agent ids and capabilities are bounded and checked before anything is
stored; a bad one is refused with an ``Error`` reply and changes nothing.
Which peer may use a name is the coordinator's side (``Coordinator._join``).
What the config says of an agent (role, skills, data) is not in a ``Join``:
the coordinator derives it from the config, as the host does. ``Membership`` keeps the seats: a host name and its agents
belong to the peer (routing id, CURVE key) that joined with them while the
server holds that peer, also while the host is dropped from rounds for
silence (a starved host keeps its name and agents and is readmitted when it
is heard again).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from swarm.errors import SecurityError, SwarmError
from swarm.wire.codec import Join

__all__ = ["Member", "Membership", "check_join"]

_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
_MAX_CAPABILITY = 1 << 20  # bytes of one capability value
_ENDPOINT = re.compile(r"^(tcp://[A-Za-z0-9_.:\[\]*-]{1,200}:[0-9]{1,5}|ipc://[^\x00]{1,200})$")


def check_join(msg: Join, expected: list[str]) -> None:
    """Validate a ``Join`` from the wire.

    Raises:
        SwarmError: naming the first problem (host name, agents, capabilities).
    """
    if not _HOST_NAME.match(msg.sender):
        raise SwarmError(f"Join: host name {msg.sender[:80]!r} is not 1-64 of [A-Za-z0-9_.-]")
    if msg.process not in ("", "host"):
        raise SwarmError(f"Join from {msg.sender!r}: process {msg.process[:40]!r} is not 'host'")
    known = set(expected)
    if not msg.agent_ids or len(msg.agent_ids) > len(known) or \
            len(set(msg.agent_ids)) != len(msg.agent_ids):
        raise SwarmError(f"Join from {msg.sender!r}: agent_ids must be 1-{len(known)} "
                         f"distinct agents, got {len(msg.agent_ids)}")
    unknown = [a for a in msg.agent_ids if a not in known]
    if unknown:
        raise SwarmError(f"host {msg.sender!r} joined with unknown agents "
                         f"{[a[:80] for a in unknown[:5]]}")
    if msg.endpoint and not _ENDPOINT.match(msg.endpoint):
        raise SwarmError(f"Join from {msg.sender!r}: endpoint {msg.endpoint[:80]!r} is not "
                         f"tcp://HOST:PORT or ipc://PATH")
    if len(msg.capabilities) > 16 or any(len(v) > _MAX_CAPABILITY
                                         for v in msg.capabilities.values()):
        raise SwarmError(f"Join from {msg.sender!r}: at most 16 capabilities of "
                         f"{_MAX_CAPABILITY} bytes each")


@dataclass
class Member:
    """A connected host and the agents it holds."""

    host: str
    peer: bytes
    agents: list[str]
    joined_at: float = field(default_factory=time.time)
    key: bytes = b""  # the CURVE public key it joined with (empty without security)
    endpoint: str = ""  # where it serves agent messages (empty: it serves none)
    fresh: bool = True  # not stepped yet: its next step restores its agents from the lineage


class Membership:
    """The hosts stepped each round (``members``) and those dropped for silence (``gone``)."""

    def __init__(self, expected: list[str]) -> None:
        self.expected = list(expected)
        self.members: dict[str, Member] = {}
        self.gone: dict[str, Member] = {}  # dropped for silence; readmitted when heard again

    def admit(self, msg: Join, peer: bytes, key: bytes, holds: Callable[[bytes], bool]) -> Member:
        """Seat the host of ``msg`` for ``peer``, replacing its earlier incarnation.

        A seat stays with its peer while ``holds(peer)`` (live, or silent for
        under ``silence_s``).

        Raises:
            SecurityError: the name or one of the agents belongs to another held peer.
            SwarmError: a malformed ``Join`` (bad name, unknown agents, bad capabilities).
        """
        check_join(msg, self.expected)
        for host, member in [*self.members.items(), *self.gone.items()]:
            if (member.peer, member.key) == (peer, key) or not holds(member.peer):
                continue  # the same peer joining again, or a released seat
            taken = sorted(set(msg.agent_ids) & set(member.agents))
            if host == msg.sender or taken:
                raise SecurityError(f"host {msg.sender!r} from {peer!r}: "
                                    f"{'its name' if host == msg.sender else taken[:5]} "
                                    f"belongs to {host!r}, joined from another peer")
        for seats in (self.members, self.gone):  # released seats (checked above)
            for host in [h for h, m in seats.items() if set(m.agents) & set(msg.agent_ids)]:
                del seats[host]
        self.gone.pop(msg.sender, None)
        member = Member(msg.sender, peer, list(msg.agent_ids), key=key, endpoint=msg.endpoint)
        self.members[msg.sender] = member
        return member

    def leave(self, host: str, peer: bytes) -> bool:
        """Remove ``host`` at the request of ``peer``; False if it holds no seat.

        Raises:
            SecurityError: ``peer`` is not the peer the host joined from.
        """
        member = self.members.get(host)
        if member is None:
            return False
        if member.peer != peer:
            raise SecurityError(f"Leave for host {host!r} from {peer!r}, "
                                f"not the peer it joined from")
        del self.members[host]
        return True

    def set_aside(self, host: str, member: Member) -> None:
        """Drop ``member`` from the rounds (it went silent), unless it joined again meanwhile."""
        if self.members.get(host) is member:
            self.gone[host] = self.members.pop(host)

    def readmit(self, heard: Collection[bytes]) -> list[str]:
        """Take back dropped hosts whose peer is in ``heard``; returns those that came back."""
        back = []
        for host, member in list(self.gone.items()):
            if host in self.members:  # it joined again meanwhile
                del self.gone[host]
            elif member.peer in heard:
                self.members[host] = self.gone.pop(host)
                back.append(host)
        return back

    def placed(self) -> set[str]:
        """Every agent a seated host holds."""
        return {a for m in self.members.values() for a in m.agents}

    def host_of(self, agent: str) -> str | None:
        """The seated host that holds ``agent``."""
        return next((h for h, m in self.members.items() if agent in m.agents), None)

    def directory(self, agents: Collection[str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """``(placement, peers)``: agent -> host (of ``agents``, default all), host -> endpoint."""
        placement = {a: h for h, m in self.members.items() for a in m.agents
                     if agents is None or a in agents}
        peers = {h: m.endpoint for h, m in self.members.items() if m.endpoint}
        return placement, peers

    def host_at(self, peer: bytes) -> str | None:
        """The seated host that joined from ``peer``."""
        return next((h for h, m in self.members.items() if m.peer == peer), None)
