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

import hashlib
import ipaddress
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from swarm.errors import ConfigError
from swarm.transport.settings import TransportSection

__all__ = [
    "CurveSecurity", "init_keys", "add_key", "list_keys", "public_key_text", "is_loopback",
    "exposure_warning", "warn_if_exposed", "check_transport",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
_Z85 = re.compile(r"^[0-9A-Za-z.:+=^!/*?&<>()\[\]{}@%$#-]{40}\Z")


class CurveSecurity:
    """This node's keypair plus the allow-list, applied to sockets of one process.

    Load it with ``load`` (or ``from_config``): both refuse a missing, unreadable
    or corrupt key before any socket exists, so a swarm configured as secure
    never starts in plaintext. The ZAP authenticator a server socket needs is
    one per ZeroMQ context (libzmq binds one ZAP handler per context), so it is
    shared by every ``CurveSecurity`` of the process and lives as long as the
    context; ``close()`` stops the ones of contexts that are gone. Each allow-list
    is a ZAP domain of its own, so two allow-lists in one process do not mix.
    """

    def __init__(
        self, public: bytes, secret: bytes, allowed_dir: Path, server_key: bytes | None = None
    ) -> None:
        self.public = public
        self.secret = secret
        self.allowed_dir = allowed_dir
        self.server_key = server_key or public

    @classmethod
    def load(cls, keys_dir: str | Path, server_key: bytes | str | None = None) -> CurveSecurity:
        """Load ``keys_dir`` (see module docstring); ``server_key`` defaults to our own key.

        Raises:
            ConfigError: no keys dir, no keypair there (run ``swarm keys init``), a key
                file that cannot be read or holds no valid CURVE key, or an empty allow-list.
        """
        if not str(keys_dir).strip():
            raise ConfigError("transport.keys_dir: not set (security: curve needs a keys dir; "
                              "create one with `swarm keys init --dir DIR`)")
        root = Path(keys_dir).expanduser()
        secret_file = root / "self.key_secret"
        if not root.is_dir() or not secret_file.exists():
            raise ConfigError(
                f"transport.keys_dir: no keypair in {root} (run `swarm keys init --dir {root}`)"
            )
        public, secret = _read_key(secret_file)
        if secret is None or not _valid_key(secret) or zmq.curve_public(secret) != public:
            raise ConfigError(f"transport.keys_dir: {secret_file} holds no valid secret key "
                              f"for its public key (recreate it with `swarm keys init --force`)")
        allowed = root / "allowed"
        if not any(_read_key(path)[0] for path in _allowed_files(allowed)):
            raise ConfigError(f"transport.keys_dir: {allowed} allows no public key "
                              f"(add one with `swarm keys add NAME KEY --dir {root}`)")
        server = server_key.encode() if isinstance(server_key, str) else server_key
        if server is not None and not _valid_key(server):
            raise ConfigError(f"server key {server!r}: not a CURVE public key (40 Z85 characters)")
        return cls(public, secret, allowed, server)

    @classmethod
    def from_config(cls, section: TransportSection) -> CurveSecurity | None:
        """The security the config asks for: ``None`` for ``none``, keys for ``curve``.

        Raises:
            ConfigError: ``curve`` without usable keys (see ``load``).
        """
        return cls.load(section.keys_dir) if section.security == "curve" else None

    def server_socket(self, sock: zmq.Socket[Any], context: zmq.Context[Any]) -> None:
        """Make ``sock`` a CURVE server guarded by the allow-list (its own ZAP domain)."""
        sock.zap_domain = _authenticator(context, self.allowed_dir).encode()
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def client_socket(self, sock: zmq.Socket[Any], server_key: bytes | None = None) -> None:
        """Make ``sock`` a CURVE client of the server with ``server_key``."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key or self.server_key

    def reload(self) -> None:
        """Re-read the allow-list (after ``swarm keys add``) in every authenticator using it."""
        with _ZAP_LOCK:
            for auth in _ZAP.values():
                auth.configure_curve(domain=_domain(self.allowed_dir),
                                     location=str(self.allowed_dir))

    def close(self) -> None:
        """Stop the authenticators of contexts that have been closed."""
        with _ZAP_LOCK:
            for key, auth in list(_ZAP.items()):
                if auth.context.closed:
                    auth.stop()
                    del _ZAP[key]


# One ZAP handler per libzmq context (keyed by its address): a second bind of the
# ZAP endpoint in one context fails. Each allow-list is a ZAP domain of its own, so
# servers of one process with different allow-lists (tests do that) do not mix them.
_ZAP: dict[int, ThreadAuthenticator] = {}
_ZAP_LOCK = threading.Lock()


def _domain(allowed_dir: Path) -> str:
    return "swarm-" + hashlib.sha256(str(allowed_dir.resolve()).encode()).hexdigest()[:16]


def _authenticator(context: zmq.Context[Any], allowed_dir: Path) -> str:
    """Start the context's ZAP handler if needed, admitting ``allowed_dir``; returns its domain."""
    domain = _domain(allowed_dir)
    with _ZAP_LOCK:
        auth = _ZAP.get(context.underlying)
        if auth is None or auth.context.closed:
            auth = _ZAP[context.underlying] = ThreadAuthenticator(
                zmq.Context.shadow(context.underlying))
            auth.start()
        if domain not in auth.certs:
            auth.configure_curve(domain=domain, location=str(allowed_dir))
    return domain


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ address can only be reached from this machine (ipc, inproc, loopback)."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or "*": reachable from the network


def exposure_warning(address: str, security: CurveSecurity | None) -> str | None:
    """The warning for binding ``address`` off loopback without security, else ``None``."""
    if security is not None or is_loopback(address):
        return None
    return (f"SECURITY: {address} is bound without encryption or authentication: any machine "
            f"that reaches it can join the swarm, take unused names and read its traffic "
            f"(set transport.security: curve, see `swarm keys init`)")


def warn_if_exposed(address: str, security: CurveSecurity | None) -> None:
    """Log a warning when ``address`` is bound off loopback without security."""
    text = exposure_warning(address, security)
    if text is not None:
        log.warning(text)


def check_transport(section: TransportSection) -> str | None:
    """Check a swarm's security before any process starts; returns a warning to show, if any.

    Raises:
        ConfigError: ``security: curve`` without usable keys (see ``CurveSecurity.load``).
    """
    security = CurveSecurity.from_config(section)
    return exposure_warning(f"tcp://{section.host}:{section.base_port}", security)


def _allowed_files(allowed: Path) -> list[Path]:
    try:
        return sorted(allowed.glob("*.key")) if allowed.is_dir() else []
    except OSError as exc:
        raise ConfigError(f"transport.keys_dir: cannot read {allowed} ({exc.strerror})") from None


def _read_key(path: Path) -> tuple[bytes, bytes | None]:
    """The (public, secret) keys of a certificate file, checked.

    Raises:
        ConfigError: the file cannot be read or holds no valid public key.
    """
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError, IndexError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "no public key"
        raise ConfigError(f"transport.keys_dir: cannot read key file {path} ({reason})") from None
    if not _valid_key(public):
        raise ConfigError(f"transport.keys_dir: {path} holds no valid CURVE public key")
    return public, secret


def _valid_key(key: bytes) -> bool:
    try:
        return _Z85.match(key.decode("ascii")) is not None and len(z85.decode(key)) == 32
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        return False


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
