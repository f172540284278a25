"""CurveZMQ keys and the ZAP allow-list.

Layout of a keys directory (``transport.keys_dir``)::

    <keys_dir>/self.key           this node's public key (ZeroMQ certificate file)
    <keys_dir>/self.key_secret    this node's secret key (mode 0600)
    <keys_dir>/allowed/<name>.key public keys allowed to connect (the allow-list)

``swarm keys init`` writes the keypair and puts its own public key on the
allow-list (processes of one swarm on one machine share a keys dir);
``swarm keys add NAME KEY`` allows a peer; ``swarm keys list`` shows them.

With ``security: curve`` every bound socket is a CURVE server, every
connecting socket a CURVE client, and a ZAP authenticator (one per ZeroMQ
context) admits only the public keys found on the allow-list: an unknown key
or a plaintext peer never completes the handshake.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from swarm.config import TransportSection
from swarm.errors import ConfigError

__all__ = ["CurveSecurity", "init_keys", "add_key", "list_keys", "public_key_text"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_Z85 = re.compile(r"^[0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40}$")


class CurveSecurity:
    """This node's keypair plus the allow-list, applied to sockets of one process.

    The instance holds the ZAP authenticators it started (one per context);
    pass the same instance to every endpoint of a process and ``close()`` it last.
    """

    def __init__(
        self, public: bytes, secret: bytes, allowed_dir: Path, server_key: bytes | None = None
    ) -> None:
        self.public = public
        self.secret = secret
        self.allowed_dir = allowed_dir
        self.server_key = server_key or public
        self._auth: dict[int, AsyncioAuthenticator] = {}

    @classmethod
    def load(cls, keys_dir: str | Path, server_key: bytes | str | None = None) -> CurveSecurity:
        """Load ``keys_dir`` (see module docstring); ``server_key`` defaults to our own key.

        Raises:
            ConfigError: no keypair there (run ``swarm keys init``).
        """
        root = Path(keys_dir).expanduser()
        secret_file = root / "self.key_secret"
        if not secret_file.exists():
            raise ConfigError(
                f"transport.keys_dir: no keypair in {root} (run `swarm keys init --dir {root}`)"
            )
        public, secret = zmq.auth.load_certificate(secret_file)
        if secret is None:
            raise ConfigError(f"transport.keys_dir: {secret_file} holds no secret key")
        server = server_key.encode() if isinstance(server_key, str) else server_key
        return cls(public, secret, root / "allowed", server)

    @classmethod
    def from_config(cls, section: TransportSection) -> CurveSecurity | None:
        """The security the config asks for: ``None`` for ``none``, keys for ``curve``."""
        return cls.load(section.keys_dir) if section.security == "curve" else None

    def server_socket(self, sock: zmq.Socket[Any], context: zmq.Context[Any]) -> None:
        """Make ``sock`` a CURVE server guarded by the allow-list."""
        self._authenticator(context)
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def client_socket(self, sock: zmq.Socket[Any], server_key: bytes | None = None) -> None:
        """Make ``sock`` a CURVE client of the server with ``server_key``."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key or self.server_key

    def reload(self) -> None:
        """Re-read the allow-list (after ``swarm keys add``) in every authenticator."""
        for auth in self._auth.values():
            auth.configure_curve(domain="*", location=str(self.allowed_dir))

    def close(self) -> None:
        """Stop the authenticators this instance started."""
        for auth in self._auth.values():
            auth.stop()
        self._auth.clear()

    def _authenticator(self, context: zmq.Context[Any]) -> None:
        if id(context) in self._auth:
            return
        actx = context if isinstance(context, zmq.asyncio.Context) else zmq.asyncio.Context.shadow(
            context.underlying
        )
        auth = AsyncioAuthenticator(actx)
        auth.start()
        self.allowed_dir.mkdir(parents=True, exist_ok=True)
        auth.configure_curve(domain="*", location=str(self.allowed_dir))
        self._auth[id(context)] = auth


def init_keys(keys_dir: str | Path, force: bool = False) -> bytes:
    """Create this node's keypair and allow its own public key; returns the public key.

    Raises:
        ConfigError: a keypair exists and ``force`` is false.
    """
    root = Path(keys_dir).expanduser()
    if (root / "self.key_secret").exists() and not force:
        raise ConfigError(f"{root} already holds a keypair (use --force to replace it)")
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for suffix in ("self.key", "self.key_secret"):
        (root / suffix).unlink(missing_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(root, "self")
    os.chmod(secret_file, 0o600)
    public, _ = zmq.auth.load_certificate(public_file)
    add_key(root, "self", public.decode())
    return public


def add_key(keys_dir: str | Path, name: str, key: str) -> Path:
    """Put a public key (40 Z85 characters, or a ``.key`` certificate file) on the allow-list.

    Raises:
        ConfigError: bad name or not a CURVE public key.
    """
    if not _NAME.match(name):
        raise ConfigError(f"key name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    if Path(key).is_file():
        public, _ = zmq.auth.load_certificate(key)
        key = public.decode()
    if not _Z85.match(key):
        raise ConfigError(f"key {key!r}: not a CURVE public key (40 Z85 characters)")
    allowed = Path(keys_dir).expanduser() / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    dest = allowed / f"{name}.key"
    dest.write_text(
        "#   ZeroMQ CURVE public key, allowed by swarm\n"
        "metadata\ncurve\n"
        f'    public-key = "{key}"\n'
    )
    return dest


def list_keys(keys_dir: str | Path) -> dict[str, str]:
    """The allow-list as ``{name: public key}``."""
    allowed = Path(keys_dir).expanduser() / "allowed"
    result: dict[str, str] = {}
    for path in sorted(allowed.glob("*.key")) if allowed.is_dir() else []:
        public, _ = zmq.auth.load_certificate(path)
        result[path.stem] = public.decode()
    return result


def public_key_text(keys_dir: str | Path) -> str:
    """This node's public key (Z85), to hand to peers.

    Raises:
        ConfigError: no keypair.
    """
    root = Path(keys_dir).expanduser()
    try:
        public, _ = zmq.auth.load_certificate(root / "self.key")
    except OSError:
        raise ConfigError(f"no keypair in {root} (run `swarm keys init`)") from None
    return public.decode()
