"""What the coordinator accepts in a ``Join``: every field is checked where it enters.

A ``Join`` comes from any peer that reaches the control socket, so its host
name, agent ids and capabilities are bounded and checked before anything is
stored; a bad one is refused with an ``Error`` reply and changes nothing.
Which peer may use a name is the coordinator's side (``Coordinator._join``).
What the config says of an agent (role, skills, data) is not in a ``Join``:
the coordinator derives it from the config, as the host does.
"""

from __future__ import annotations

import re

from swarm.errors import SwarmError
from swarm.wire.codec import Join

__all__ = ["check_join"]

_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
_MAX_CAPABILITY = 1 << 20  # bytes of one capability value


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
    if len(msg.capabilities) > 16 or any(len(v) > _MAX_CAPABILITY
                                         for v in msg.capabilities.values()):
        raise SwarmError(f"Join from {msg.sender!r}: at most 16 capabilities of "
                         f"{_MAX_CAPABILITY} bytes each")
