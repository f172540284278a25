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
        ConfigError: a keypair exists and ``force`` is false, ``keys_dir`` is not a
            directory, or it cannot be written (the message names the path and why).
    """
    root = Path(keys_dir).expanduser()
    _check_dir(root)
    if (root / "self.key_secret").exists() and not force:
        raise ConfigError(f"{root} already holds a keypair (use --force to replace it)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        for suffix in ("self.key", "self.key_secret"):
            (root / suffix).unlink(missing_ok=True)
        public_file, secret_file = zmq.auth.create_certificates(root, "self")
        os.chmod(secret_file, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write a keypair to {root}: {_why(exc)}") from None
    public = _read_public(Path(public_file))
    add_key(root, "self", public)
    return public.encode()


def add_key(keys_dir: str | Path, name: str, key: str) -> Path:
    """Put a public key (40 Z85 characters, or a ``.key`` certificate file) on the allow-list.

    Raises:
        ConfigError: bad name, not a CURVE public key, an unreadable key file, or an
            allow-list that cannot be written.
    """
    if not _NAME.match(name) or name.startswith("."):
        raise ConfigError(
            f"key name {name[:64]!r}: use letters, digits, '_', '.', '-' (max 64, no leading '.')"
        )
    if not _Z85.match(key):
        path = Path(key).expanduser()
        if not (path.exists() or "/" in key or key.endswith(".key")):
            raise ConfigError(f"key {key[:64]!r}: not a CURVE public key (40 Z85 characters)")
        key = _read_public(path)
    root = Path(keys_dir).expanduser()
    _check_dir(root)
    allowed = root / "allowed"
    dest = allowed / f"{name}.key"
    try:
        allowed.mkdir(parents=True, exist_ok=True)
        dest.write_text(
            "#   ZeroMQ CURVE public key, allowed by swarm\n"
            "metadata\ncurve\n"
            f'    public-key = "{key}"\n'
        )
    except OSError as exc:
        raise ConfigError(f"cannot write {dest}: {_why(exc)}") from None
    return dest


def list_keys(keys_dir: str | Path) -> dict[str, str]:
    """The allow-list as ``{name: public key}``.

    Raises:
        ConfigError: the allow-list is not a readable directory, or a file on it is
            not a public key (the message names the file).
    """
    allowed = Path(keys_dir).expanduser() / "allowed"
    if not allowed.exists():
        return {}
    if not allowed.is_dir():
        raise ConfigError(f"{allowed}: not a directory (it should hold the allowed .key files)")
    try:
        paths = sorted(allowed.glob("*.key"))
    except OSError as exc:
        raise ConfigError(f"cannot list {allowed}: {_why(exc)}") from None
    return {path.stem: _read_public(path) for path in paths}


_MAX_KEY_FILE = 64 * 1024


def _read_public(path: Path) -> str:
    """The Z85 public key of a ZeroMQ certificate file, or a one-line ``ConfigError``."""
    try:
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"key file {path} {what}")
        if path.stat().st_size > _MAX_KEY_FILE:
            raise ConfigError(f"key file {path} is larger than {_MAX_KEY_FILE} bytes")
        public, _ = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {_why(exc)}") from None
    except ValueError:
        raise ConfigError(f"key file {path} holds no public key (a ZeroMQ certificate)") from None
    text = public.decode("ascii", errors="replace")
    if not _Z85.match(text):
        raise ConfigError(
            f"key file {path}: its public key is not 40 Z85 characters (corrupt certificate)"
        )
    return text


def _check_dir(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: not a directory (a keys directory is expected there)")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def public_key_text(keys_dir: str | Path) -> str:
    """This node's public key (Z85), to hand to peers.

    Raises:
        ConfigError: no keypair.
    """
    root = Path(keys_dir).expanduser()
    if not (root / "self.key").exists():
        raise ConfigError(f"no keypair in {root} (run `swarm keys init --dir {root}`)")
    return _read_public(root / "self.key")
