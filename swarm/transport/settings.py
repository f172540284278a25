"""The config's ``transport`` section: addresses, limits and security of the data plane.

Every process turns it into the options of its sockets with
``swarm.transport.socket.TransportOptions.from_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from swarm.settings import Port, Settings

__all__ = ["TransportSection"]


class TransportSection(Settings, frozen=True):
    """Addresses, limits and security of the ZeroMQ data plane."""

    host: str = "127.0.0.1"
    base_port: Port = 47000
    security: Literal["none", "curve"] = "none"
    keys_dir: str = "~/.swarm/keys"
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 32)] = 256 * 1024 * 1024
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 1000
    liveness: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    # A client with one request in flight polls its socket this long before sleeping
    # (trades a little CPU for a shorter round trip; 0 = never spin)
    busy_poll_us: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 300
    # Slow is not dead: a peer silent this long (and at least ten liveness timeouts)
    # is taken for dead: the coordinator drops a host from the round, and its
    # names (host name, agent routes, key) are free for others. Raise it on a
    # machine so loaded that processes go unscheduled for longer.
    silence_s: Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)] = 30.0

    def __post_init__(self) -> None:
        # curve without keys would fail in every process at start: say so at check time
        # (the keys themselves are read and checked by swarm.transport.security.CurveSecurity.load)
        if self.security != "curve":
            return
        if not self.keys_dir.strip():
            raise ValueError("security 'curve' needs keys_dir, which is empty "
                             "(create keys with `swarm keys init --dir DIR`)")
        keys = Path(self.keys_dir).expanduser()
        if not (keys / "self.key_secret").is_file():
            raise ValueError(f"security 'curve' needs a keypair in keys_dir {self.keys_dir!r}, "
                             f"which holds none (run `swarm keys init --dir {self.keys_dir}`)")
