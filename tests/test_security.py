"""CurveZMQ: the allow-list admits known keys and refuses unknown keys and plaintext peers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarm.cli import main
from swarm.config import TransportSection
from swarm.errors import ConfigError, PeerUnavailable
from swarm.security import CurveSecurity, add_key, init_keys, list_keys, public_key_text
from swarm.transport import Client, TransportOptions
from swarm.wire import Chat
from tests.transport_peer import Peer


def test_keys_cli_init_add_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    assert main(["keys", "init", "--dir", str(keys)]) == 0
    assert main(["keys", "init", "--dir", str(other)]) == 0
    assert main(["keys", "init", "--dir", str(keys)]) == 2  # refuses to overwrite
    peer_key = public_key_text(other)
    assert main(["keys", "add", "peer-1", peer_key, "--dir", str(keys)]) == 0
    assert main(["keys", "add", "peer-2", str(other / "self.key"), "--dir", str(keys)]) == 0
    assert main(["keys", "add", "bad", "not-a-key", "--dir", str(keys)]) == 2
    dash_key = "-" + peer_key[1:]  # Z85 has '-': about one key in 85 starts with it
    assert main(["keys", "add", "peer-3", dash_key, "--dir", str(keys)]) == 0
    for name, key in (("peer-4", "-h" + peer_key[2:]), ("peer-5", "--" + peer_key[2:])):
        assert main(["keys", "add", "--dir", str(keys), name, key]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--dir", str(keys)]) == 0
    out = capsys.readouterr().out
    assert f"peer-1  {peer_key}" in out and f"self: {public_key_text(keys)}" in out
    assert list_keys(keys) == {"peer-1": peer_key, "peer-2": peer_key, "peer-3": dash_key,
                               "peer-4": "-h" + peer_key[2:], "peer-5": "--" + peer_key[2:],
                               "self": public_key_text(keys)}
    assert (keys / "self.key_secret").stat().st_mode & 0o777 == 0o600


def test_security_from_config(tmp_path: Path) -> None:
    assert CurveSecurity.from_config(TransportSection()) is None
    with pytest.raises(ConfigError, match="keys init"):
        CurveSecurity.from_config(TransportSection(security="curve", keys_dir=str(tmp_path)))
    init_keys(tmp_path)
    sec = CurveSecurity.from_config(TransportSection(security="curve", keys_dir=str(tmp_path)))
    assert sec is not None and sec.public.decode() == public_key_text(tmp_path)


def test_curve_allow_list(tmp_path: Path) -> None:
    server_dir, known_dir, unknown_dir = (tmp_path / n for n in ("server", "known", "unknown"))
    server_key = init_keys(server_dir)
    add_key(server_dir, "known", init_keys(known_dir).decode())
    init_keys(unknown_dir)
    address = f"ipc://{tmp_path}/curve.ipc"

    async def ask(name: str, security: CurveSecurity | None) -> str:
        opts = TransportOptions(heartbeat_ms=100, liveness=3, security=security)
        async with Client(name, address, opts) as cli:
            inc = await cli.request(Chat(sender=name, content="hi"), timeout=2)
            return str(inc.msg.content)

    async def scenario() -> None:
        known = CurveSecurity.load(known_dir, server_key=server_key)
        assert await ask("known", known) == "hi"
        with pytest.raises(PeerUnavailable):
            await ask("unknown", CurveSecurity.load(unknown_dir, server_key=server_key))
        with pytest.raises(PeerUnavailable):
            await ask("plaintext", None)
        assert await ask("known-again", known) == "hi"  # the server kept serving

    with Peer("echo", address, "--curve", str(server_dir)) as peer:
        asyncio.run(asyncio.wait_for(scenario(), 60))
        assert peer.alive
