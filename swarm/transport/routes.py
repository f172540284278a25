"""Which peer each name is routed to, on a ``Server``: the peers it hears, the names they hold.

A peer is a ZeroMQ routing id; a name is a ``sender`` (an agent, a host). A
name's route stays with the peer that used it first for as long as that peer
holds it: while it is live, and for ``silence_s`` after it was forgotten for
missing its heartbeats (slow is not dead). Under CURVE each peer is also bound
to the public key it first authenticated with.
"""

from __future__ import annotations

import logging

__all__ = ["Routes"]

log = logging.getLogger(__name__)


class Routes:
    """The route table of one ``Server`` (``name`` is the server's, for logs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.live: dict[bytes, float] = {}  # live peer -> loop time it was last heard
        self.lapsed: dict[bytes, float] = {}  # forgotten peer -> when; its names held silence_s
        self.names: dict[str, bytes] = {}  # name -> the peer that holds it
        self.keys: dict[bytes, bytes] = {}  # peer -> CURVE public key (Z85), under CURVE
        self._warned: set[bytes] = set()  # peers already logged for a refused claim

    def heard(self, peer: bytes, now: float) -> bool:
        """Note traffic from ``peer`` at ``now``; True if it was not live before."""
        live = self.live
        new = peer not in live
        if new:
            self.lapsed.pop(peer, None)
        live[peer] = now
        return new

    def holds(self, peer: bytes) -> bool:
        """Whether ``peer`` still holds its names: live, or forgotten under ``silence_s`` ago."""
        return peer in self.live or peer in self.lapsed

    def route(self, name: str, peer: bytes) -> None:
        """Route ``name`` to ``peer``, whoever held it."""
        self.names[name] = peer

    def claim(self, name: str, peer: bytes) -> bool:
        """Route ``name`` to ``peer`` unless another peer holds it (then keep that; False)."""
        held = self.names.get(name)
        if held is None or held == peer or not self.holds(held):
            self.names[name] = peer
            return True
        if self.warn_once(peer):
            log.warning("%s: %r sent as %r, which %r holds: the route stays (further "
                        "claims from this peer are not logged)", self.name, peer, name, held)
        return False

    def bind_key(self, peer: bytes, key: bytes) -> bool:
        """Bind ``peer`` to ``key`` on first sight; False if it is bound to another key."""
        known = self.keys.setdefault(peer, key)
        if known == key:
            return True
        if self.warn_once(peer):
            log.warning("%s: dropped a message from %r under another key (%s, bound to %s)",
                        self.name, peer, key[:8].decode(), known[:8].decode())
        return False

    def key_of(self, peer: bytes) -> bytes:
        """The CURVE public key ``peer`` authenticated with (``b""`` without security)."""
        return self.keys.get(peer, b"")

    def warn_once(self, peer: bytes) -> bool:
        """True the first time ``peer`` is warned about (a flood of forgeries logs one line)."""
        if peer in self._warned or len(self._warned) >= 10_000:
            return False
        self._warned.add(peer)
        return True

    def silent(self, now: float, timeout_s: float) -> list[bytes]:
        """The live peers not heard for more than ``timeout_s``."""
        return [peer for peer, seen in self.live.items() if now - seen > timeout_s]

    def excuse(self, seconds: float) -> None:
        """This process did not run for ``seconds``: move every live peer's last-heard time on by it.

        A process that was descheduled (a loaded machine, a paused VM) reads its
        peers' traffic only after its timers ran; without this it would forget
        every peer for a silence that was its own.
        """
        for peer in self.live:
            self.live[peer] += seconds

    def forget(self, peer: bytes, now: float) -> None:
        """``peer`` missed its heartbeats: no more sends to it, but its names stay held."""
        del self.live[peer]
        self.lapsed[peer] = now

    def release_expired(self, now: float, silence_s: float) -> None:
        """Free the names and keys of peers forgotten more than ``silence_s`` ago."""
        for peer in [p for p, since in self.lapsed.items() if now - since > silence_s]:
            del self.lapsed[peer]
            self.keys.pop(peer, None)
            self._warned.discard(peer)
            for name in [n for n, p in self.names.items() if p == peer]:
                del self.names[name]
