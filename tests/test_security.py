"""Security: CurveZMQ keys and allow-list, the setting reaching every process, identity binding.

Unit tests here use real sockets in this process or a peer process; the end
to end test starts a real swarm with ``transport.security: curve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm.cli.main import main
from swarm.config import load_config, parse_config
from swarm.errors import ConfigError, PeerUnavailable, RemoteError
from swarm.runtime.local_launcher import LocalLauncher
from swarm.transport.peers import Client, Server, TransportOptions
from swarm.transport.pubsub import Publisher
from swarm.transport.security import (
    CurveSecurity,
    add_key,
    check_transport,
    exposure_warning,
    init_keys,
    list_keys,
    public_key_text,
)
from swarm.transport.settings import TransportSection
from swarm.wire.codec import Chat, Join, Leave, Status, Welcome
from tests.conftest import SMALL, free_base_port
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


def test_curve_without_usable_keys_is_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a config asking for curve, keys dirs that are missing, empty, corrupt
    assert CurveSecurity.from_config(TransportSection()) is None
    raw = {"swarm": {"name": "t"}, "agents": [{"name": "g", "count": 1, "skills": ["add"]}]}
    keys = tmp_path / "keys"

    def curve(keys_dir: str) -> dict[str, Any]:
        return {**raw, "transport": {"security": "curve", "keys_dir": keys_dir}}

    # Execute + Assert: unset and missing keys fail the config check, with the fix in the line
    for keys_dir in ("", str(keys)):
        with pytest.raises(ConfigError, match="keys init") as info:
            parse_config(curve(keys_dir))
        assert info.value.problems[0].startswith("transport:")
    config_file = tmp_path / "swarm.yaml"
    config_file.write_text(yaml.safe_dump(curve(str(keys))))
    assert main(["config", "check", str(config_file)]) == 2
    assert "keys_dir" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="keys init"):
        CurveSecurity.load(keys)
    with pytest.raises(ConfigError, match="not set"):
        CurveSecurity.load("")
    public = init_keys(keys)
    section = parse_config(curve(str(keys))).transport
    opts = TransportOptions.from_config(section)  # what every process of a swarm calls
    assert opts.security is not None and opts.security.public == public
    # a corrupt secret key, a secret that is not the public key's, an unreadable or
    # corrupt allow-list entry, an empty allow-list: each a one-line ConfigError
    secret_file, good = keys / "self.key_secret", (keys / "self.key_secret").read_text()
    cases: list[tuple[str, Callable[[], None]]] = [
        ("no valid secret", lambda: secret_file.write_text(good.replace("secret-key", "x"))),
        ("no valid secret", lambda: secret_file.write_text(
            good.replace(good.split('secret-key = "')[1][:5], "00000"))),
        ("cannot read key file", lambda: secret_file.write_text("garbage\n")),
        ("no valid CURVE public key", lambda: (keys / "allowed" / "bad.key").write_text(
            'public-key = "short"\n')),
        ("cannot read key file", lambda: (keys / "allowed" / "bad.key").write_text("")),
        ("allows no public key", lambda: (keys / "allowed" / "self.key").unlink()),
    ]
    for expected, damage in cases:
        secret_file.write_text(good)
        (keys / "allowed" / "bad.key").unlink(missing_ok=True)
        add_key(keys, "self", public.decode())
        CurveSecurity.load(keys)  # usable again before each damage
        damage()
        with pytest.raises(ConfigError, match=expected):
            TransportOptions.from_config(section)
    if os.geteuid() != 0:  # root reads a mode-0 file anyway
        secret_file.write_text(good)
        (keys / "allowed" / "bad.key").unlink(missing_ok=True)
        add_key(keys, "self", public.decode())
        secret_file.chmod(0)
        with pytest.raises(ConfigError, match="cannot read key file"):
            CurveSecurity.load(keys)
        secret_file.chmod(0o600)


def test_swarm_run_refuses_curve_without_keys_and_starts_nothing(tmp_path: Path) -> None:
    # Prepare: a curve config whose keys are then removed (the check passed earlier)
    keys = tmp_path / "keys"
    init_keys(keys)
    config = load_config(SMALL, ["transport.security=curve", f"transport.keys_dir={keys}",
                                 f"swarm.lineage={tmp_path / 'run' / 'lineage'}"])
    (keys / "self.key_secret").write_text("garbage\n")
    launcher = LocalLauncher(config)

    # Execute + Assert: refused in prepare, before any process or run file exists
    with pytest.raises(ConfigError, match="cannot read key file"):
        launcher.prepare()
    assert launcher.children == {} and not (tmp_path / "run").exists()


def test_binding_off_loopback_in_plaintext_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare
    assert exposure_warning("tcp://127.0.0.1:1", None) is None
    assert exposure_warning("tcp://localhost:1", None) is None
    assert exposure_warning(f"ipc://{tmp_path}/x.ipc", None) is None
    for exposed in ("tcp://0.0.0.0:1", "tcp://*:1", "tcp://10.1.2.3:1", "tcp://[::]:1"):
        assert "SECURITY" in (exposure_warning(exposed, None) or "")
    init_keys(tmp_path / "keys")
    assert exposure_warning("tcp://0.0.0.0:1", CurveSecurity.load(tmp_path / "keys")) is None
    config = load_config(SMALL, ["transport.host=0.0.0.0",
                                 f"swarm.lineage={tmp_path / 'run' / 'lineage'}"])
    assert "SECURITY" in (check_transport(config.transport) or "")
    port = free_base_port()

    async def bind() -> None:
        async with Server("srv", f"tcp://0.0.0.0:{port}", TransportOptions()), \
                Publisher("pub", f"tcp://0.0.0.0:{port + 1}", TransportOptions()):
            pass

    # Execute
    with caplog.at_level(logging.WARNING, logger="swarm.transport.security"):
        asyncio.run(asyncio.wait_for(bind(), 30))

    # Assert: each bound socket said so in its process's log
    warned = [r.getMessage() for r in caplog.records if "SECURITY" in r.getMessage()]
    assert len(warned) == 2 and f"tcp://0.0.0.0:{port}" in warned[0]


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


def test_one_process_with_several_curve_endpoints_serves_on_each(tmp_path: Path) -> None:
    # Prepare: as in the inline launcher, the coordinator and each host load the keys
    # themselves: several CurveSecurity instances bind servers on one ZeroMQ context
    keys = tmp_path / "keys"
    init_keys(keys)
    first, second = (TransportOptions(heartbeat_ms=200, security=CurveSecurity.load(keys))
                     for _ in range(2))
    one, two = f"ipc://{tmp_path}/one.ipc", f"ipc://{tmp_path}/two.ipc"

    async def scenario() -> list[str]:
        async with Server("one", one, first) as s1, Publisher("events", f"ipc://{tmp_path}/e.ipc",
                                                              first), \
                Server("two", two, second) as s2, Client("c1", one, second) as c1, \
                Client("c2", two, first) as c2:
            # Execute
            await c1.send(Chat(sender="x", content="to one"))
            await c2.send(Chat(sender="y", content="to two"))
            return [str((await s.recv(timeout=10)).msg.content) for s in (s1, s2)]

    # Assert: both servers authenticate their clients
    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == ["to one", "to two"]


# -- identity: a name belongs to the peer that joined with it -----------------------


def _coordinator(tmp_path: Path, port: int) -> Any:
    from swarm.runtime.coordinator import Coordinator
    from swarm.runtime.recorder import Recorder

    config = load_config(SMALL, [f"transport.base_port={port}", "transport.heartbeat_ms=200",
                                 f"swarm.lineage={tmp_path / 'lineage'}"])
    # four agents are expected: one host holding two keeps it waiting (and serving) for more
    return Coordinator(config, ["arith-0", "arith-1", "text-0", "text-1"],
                       Recorder.open(config))


async def _answer(cli: Client, msg: Any) -> Any:
    """The reply to ``msg``, or the ``RemoteError`` it raised."""
    try:
        return (await cli.request(msg, timeout=10)).msg
    except RemoteError as exc:
        return exc


def test_join_and_leave_from_another_peer_are_refused(tmp_path: Path) -> None:
    # Prepare: a real coordinator (real sockets, real lineage) and a host joined on it
    port = free_base_port()
    coordinator = _coordinator(tmp_path, port)
    address, opts = f"tcp://127.0.0.1:{port}", TransportOptions(heartbeat_ms=200)

    async def scenario() -> None:
        serving = asyncio.ensure_future(coordinator.run())
        async with Client("host-0.secret", address, opts) as host, \
                Client("intruder", address, opts) as evil:
            await host.wait_up(30)
            await evil.wait_up(30)
            joined = await _answer(host, Join(sender="host-0", agent_ids=["arith-0", "arith-1"]))
            assert isinstance(joined, Welcome)

            # Execute: a takeover of the name, of its agents, and a Leave in its name
            takeover = await _answer(evil, Join(sender="host-0", agent_ids=["arith-0"]))
            agents = await _answer(evil, Join(sender="host-9", agent_ids=["arith-1", "text-0"]))
            leave = await _answer(evil, Leave(sender="host-0"))
            status = json.loads((await _answer(evil, Status(sender="x"))).json)

            # Assert: refused with a typed error each, and nothing changed
            for refused in (takeover, agents, leave):
                assert isinstance(refused, RemoteError) and refused.remote_code == "security"
            assert status["members"] == {"host-0": ["arith-0", "arith-1"]}
            assert coordinator.members["host-0"].peer == b"host-0.secret"
            # the same peer may join again (a restart) and leave
            again = await _answer(host, Join(sender="host-0", agent_ids=["arith-0"]))
            assert isinstance(again, Welcome)
            await host.send(Leave(sender="host-0"))
            for _ in range(100):
                status = json.loads((await _answer(evil, Status(sender="x"))).json)
                if not status["members"]:
                    break
            assert status["members"] == {}
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_a_host_silent_for_a_few_heartbeats_keeps_its_name(tmp_path: Path) -> None:
    # Prepare: a host joins, then goes silent (a process the machine starves)
    port = free_base_port()
    coordinator = _coordinator(tmp_path, port)
    address, opts = f"tcp://127.0.0.1:{port}", TransportOptions(heartbeat_ms=200)

    async def scenario() -> None:
        serving = asyncio.ensure_future(coordinator.run())
        async with Client("intruder", address, opts) as evil:
            async with Client("host-0.secret", address, opts) as host:
                await host.wait_up(30)
                joined = await _answer(host, Join(sender="host-0", agent_ids=["arith-0"]))
                assert isinstance(joined, Welcome)
            await evil.wait_up(30)
            server = coordinator.server
            assert server is not None
            for _ in range(200):  # the coordinator's server has missed host-0's heartbeats
                if b"host-0.secret" not in server.peers:
                    break
                await asyncio.sleep(0.05)
            assert b"host-0.secret" not in server.peers
            assert coordinator.options.silence_s >= 30

            # Execute: another peer claims the silent host's name and agent
            takeover = await _answer(evil, Join(sender="host-0", agent_ids=["arith-0"]))
            agent = await _answer(evil, Join(sender="host-7", agent_ids=["arith-0"]))

            # Assert: refused; the seat stays with the peer that joined
            for refused in (takeover, agent):
                assert isinstance(refused, RemoteError) and refused.remote_code == "security"
            assert coordinator.members["host-0"].peer == b"host-0.secret"
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_malformed_join_gets_an_error_and_the_coordinator_keeps_answering(
        tmp_path: Path) -> None:
    # Prepare
    port = free_base_port()
    coordinator = _coordinator(tmp_path, port)
    address, opts = f"tcp://127.0.0.1:{port}", TransportOptions(heartbeat_ms=200)
    bad = [
        Join(sender="host-1", agent_ids=["text-0"] * 10_000),
        Join(sender="host-1", agent_ids=[]),
        Join(sender="host-1", agent_ids=["nobody"]),
        Join(sender="../host\n1", agent_ids=["text-0"]),
        Join(sender="host-1", agent_ids=["text-0"], process="coordinator"),
        Join(sender="host-1", agent_ids=["text-0"],
             capabilities={f"k{i}": "v" for i in range(100)}),
    ]

    async def scenario() -> None:
        serving = asyncio.ensure_future(coordinator.run())
        async with Client("host-1.secret", address, opts) as host:
            await host.wait_up(30)

            # Execute: every malformed Join, then a good one and a Status
            answers = [await _answer(host, msg) for msg in bad]
            good = await _answer(host, Join(sender="host-1", agent_ids=["text-0"]))
            status = json.loads((await _answer(host, Status(sender="x"))).json)

            # Assert: each refused with an Error, nothing stored, and the coordinator still serves
            assert [type(a).__name__ for a in answers] == ["RemoteError"] * len(bad)
            assert isinstance(good, Welcome) and status["members"] == {"host-1": ["text-0"]}
            assert coordinator.members["host-1"].agents == ["text-0"]
        assert not serving.done()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_a_forged_chat_moves_no_route(tmp_path: Path) -> None:
    # Prepare: a server (the ROUTER of a host's peer chat, or any other) and two peers
    address = f"ipc://{tmp_path}/peers.ipc"
    opts = TransportOptions(heartbeat_ms=200)

    async def scenario() -> None:
        async with Server("host-1", address, opts) as srv, Client("host-0.a", address, opts) as a, \
                Client("intruder", address, opts) as evil:
            await a.wait_up(30)
            await evil.wait_up(30)
            await a.send(Chat(sender="agent-7", recipient="b", content="mine"))
            assert (await srv.recv(timeout=10)).peer == b"host-0.a"

            # Execute: another socket sends as agent-7, then the server writes to agent-7
            await evil.send(Chat(sender="agent-7", recipient="b", content="forged"))
            forged = await srv.recv(timeout=10)
            await srv.send(Chat(sender="b", recipient="agent-7", content="for agent-7"))

            # Assert: the route stayed; agent-7's mail reaches its own peer, not the forger
            assert forged.peer == b"intruder" and srv.routes["agent-7"] == b"host-0.a"
            got = await a.recv(timeout=10)
            assert got.msg.content == "for agent-7"
            with pytest.raises(TimeoutError):
                await evil.recv(timeout=1.0)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_routing_id_taken_over_under_another_key_is_dropped(tmp_path: Path) -> None:
    # Prepare: a CURVE server allowing two keys; both clients use the same routing id
    server_dir, one_dir, two_dir = (tmp_path / n for n in ("server", "one", "two"))
    server_key = init_keys(server_dir)
    add_key(server_dir, "one", init_keys(one_dir).decode())
    add_key(server_dir, "two", init_keys(two_dir).decode())
    address = f"ipc://{tmp_path}/curve.ipc"

    def opts(keys: Path, heartbeat_ms: int = 200) -> TransportOptions:
        return TransportOptions(heartbeat_ms=heartbeat_ms,
                                security=CurveSecurity.load(keys, server_key))

    async def scenario() -> None:
        # the server holds a silent peer's key for silence_s: the takeover happens within that
        async with Server("srv", address, opts(server_dir, heartbeat_ms=1000)) as srv:
            async with Client("same-id", address, opts(one_dir)) as one:
                await one.wait_up(30)
                await one.send(Chat(sender="agent-1", content="from one"))
                first = await srv.recv(timeout=10)
            # Execute: another key connects with the routing id before it is forgotten
            async with Client("same-id", address, opts(two_dir)) as two:
                await two.send(Chat(sender="agent-1", content="from two"))
                with pytest.raises(TimeoutError):
                    await srv.recv(timeout=1.0)
                key = srv.key_of(b"same-id")
            # Control: the same key on a routing id of its own is heard
            async with Client("other-id", address, opts(two_dir)) as fresh:
                await fresh.send(Chat(sender="agent-2", content="from two, own id"))
                control = await srv.recv(timeout=10)
            # Assert: the peer stays bound to the key it authenticated with
            assert first.msg.content == "from one"
            assert key == public_key_text(one_dir).encode()
            assert control.msg.content == "from two, own id"

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_host_routing_id_is_secret_and_kept_across_restarts(tmp_path: Path) -> None:
    from swarm.runtime.process import _routing_id

    # Execute: the first start makes it, a restart in the same run dir reads it back
    first, again = _routing_id(tmp_path / "run", "host-0"), _routing_id(tmp_path / "run", "host-0")
    other = _routing_id(tmp_path / "other-run", "host-0")

    # Assert: the name plus 16 hex digits, the same after a restart, another in another run,
    # readable by its owner only
    name, _, secret = first.partition(".")
    assert name == "host-0" and len(secret) == 16 and int(secret, 16) >= 0
    assert again == first != other
    assert (tmp_path / "run" / "ids" / "host-0").stat().st_mode & 0o777 == 0o600


def test_a_torn_routing_id_file_is_made_anew(tmp_path: Path) -> None:
    from swarm.runtime.process import _routing_id

    # Prepare: a crash left the id file empty (or holding something else)
    ids = tmp_path / "run" / "ids"
    ids.mkdir(parents=True)
    for torn in ("", "host-0.", "host-1.0123456789abcdef", "\xff"):
        (ids / "host-0").write_text(torn)

        # Execute: the host starts again
        made = _routing_id(tmp_path / "run", "host-0")

        # Assert: a valid id of this host, kept from now on, and no temporary file left
        name, _, secret = made.partition(".")
        assert name == "host-0" and len(secret) == 16 and int(secret, 16) >= 0
        assert _routing_id(tmp_path / "run", "host-0") == made
        assert sorted(p.name for p in ids.iterdir()) == ["host-0"]
        assert (ids / "host-0").stat().st_mode & 0o777 == 0o600


# -- end to end: a real swarm with transport.security: curve ---------------------------


@pytest.mark.slow
def test_a_curve_swarm_completes_a_round_and_strangers_get_nothing(
        tmp_path: Path, tiny_model: Path) -> None:
    """Coordinator, model server (hf backend) and a host as real processes, all under CURVE.

    While the swarm runs, a plaintext peer and a peer whose key is not on the
    allow-list connect to each of its sockets (control ROUTER, events PUB,
    model server ROUTER, the host's peer ROUTER) and ask: none gets an answer
    or an event, membership does not change, and the round completes.
    """
    from swarm.lineage.reader import LineageReader
    from swarm.lineage.repo import round_path
    from swarm.runtime.run import ask_status
    from swarm.transport.pubsub import Subscriber
    from swarm.transport.topology import (
        CONTROL_OFFSET,
        EVENTS_OFFSET,
        MODEL_OFFSET,
        PEER_OFFSET,
        endpoint,
    )
    from swarm.wire.codec import Generate, GenRequest

    # Prepare: the swarm's keys, a stranger's keys, a curve config (one host, four agents)
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    swarm_key = init_keys(keys)
    init_keys(stranger)
    config = load_config(SMALL, [
        "transport.security=curve", f"transport.keys_dir={keys}",
        f"transport.base_port={free_base_port()}", "model.backend=hf", f"model.path={tiny_model}",
        f"model.adapter_store={tmp_path / 'store'}", f"swarm.lineage={tmp_path / 'run' / 'lineage'}",
        "swarm.rounds=1"])
    agents = ["arith-0", "arith-1", "text-0", "text-1"]
    section = config.transport
    routers = {"control": endpoint(section, CONTROL_OFFSET), "model": endpoint(section, MODEL_OFFSET),
               "host-0 peers": endpoint(section, PEER_OFFSET)}
    asks: dict[str, Any] = {
        "control": [Join(sender="host-0", agent_ids=agents), Status(sender="x"),
                    Leave(sender="host-0")],
        "model": [Generate(sender="arith-0", requests=[GenRequest(prompt="2+2=")])],
        "host-0 peers": [Chat(sender="text-0", recipient="arith-0", content="hi")],
    }
    outsiders = {"plaintext": None, "unknown key": CurveSecurity.load(stranger, swarm_key)}

    async def stranger_asks(who: str, where: str, msg: Any) -> str:
        opts = TransportOptions(heartbeat_ms=200, security=outsiders[who])
        name = f"{who}-{where}-{type(msg).__name__}".replace(" ", "-")  # one socket each
        async with Client(name, routers[where], opts) as cli:
            try:
                got = await cli.request(msg, timeout=4.0)
            except PeerUnavailable:
                return ""
            return f"{who} got {type(got.msg).__name__} from {where}"

    async def members() -> dict[str, list[str]]:
        try:  # a client with the swarm's keys, as `swarm status`
            return dict((await ask_status(config))["members"])
        except PeerUnavailable:  # `swarm status` found no swarm answering
            return {"no answer": []}

    async def scenario() -> tuple[list[Any], list[Any], list[str], list[dict[str, list[str]]]]:
        seen = []
        for _ in range(600):
            assert launcher.poll() is None, "the swarm ended before it could be probed"
            seen = [await members()]
            if seen[0] and "no answer" not in seen[0]:
                break
            await asyncio.sleep(0.5)
        events = endpoint(section, EVENTS_OFFSET)
        opts = TransportOptions.from_config(section)
        async with Subscriber("ours", events, options=opts) as ours, \
                Subscriber("plain", events, options=TransportOptions()) as plain, \
                Subscriber("unknown", events, options=TransportOptions(
                    security=outsiders["unknown key"])) as unknown:
            # Execute: every outsider asks at every router, at once, while the swarm runs
            answers = await asyncio.gather(*(stranger_asks(who, where, msg)
                                             for who in outsiders for where in asks
                                             for msg in asks[where]))
            seen.append(await members())
            got_ours: list[Any] = []
            while launcher.poll() is None and not any(
                    i.peer == b"done" for i in got_ours):
                with contextlib.suppress(TimeoutError):
                    got_ours += await ours.recv_batch(timeout=0.5)
            leaked = [i for sub in (plain, unknown) for i in sub.recv_nowait(sub.waiting)]
        return got_ours, leaked, [a for a in answers if a], seen

    launcher = LocalLauncher(config)
    launcher.prepare()
    launcher.start()
    try:
        got_ours, leaked, answered, seen = asyncio.run(asyncio.wait_for(scenario(), 1500))
        code = launcher.poll()
        for _ in range(600):
            if code is not None:
                break
            time.sleep(0.5)
            code = launcher.poll()
    finally:
        launcher.stop()

    # Assert: no outsider got an answer or an event, membership stayed the host's,
    # and the swarm under CURVE committed its round with every agent reporting
    assert answered == []
    assert leaked == []
    assert seen == [{"host-0": agents}, {"host-0": agents}]
    assert {i.peer for i in got_ours} >= {b"scores", b"done"}  # events do flow, to us
    assert code == 0
    record = json.loads(LineageReader(config.lineage_dir).show("swarm", round_path(0)))
    assert record["unavailable"] == [] and sorted(record["scores"]) == agents


@pytest.mark.slow
def test_an_inline_swarm_under_curve_runs_and_a_plaintext_peer_gets_nothing(
        tmp_path: Path, tiny_model: Path) -> None:
    """The inline launcher: coordinator and host in this process, model server a subprocess."""
    from swarm.lineage.reader import LineageReader
    from swarm.lineage.repo import round_path
    from swarm.runtime.inline_launcher import InlineLauncher
    from swarm.runtime.run import ask_status

    # Prepare
    keys = tmp_path / "keys"
    init_keys(keys)
    config = load_config(SMALL, [
        "launcher.kind=inline", "transport.security=curve", f"transport.keys_dir={keys}",
        f"transport.base_port={free_base_port()}", "model.backend=hf", f"model.path={tiny_model}",
        f"model.adapter_store={tmp_path / 'store'}", f"swarm.lineage={tmp_path / 'run' / 'lineage'}",
        "swarm.rounds=1"])
    control = f"tcp://127.0.0.1:{config.transport.base_port}"

    async def plaintext_status() -> str:
        async with Client("plain", control, TransportOptions(heartbeat_ms=200)) as cli:
            try:
                return type((await cli.request(Status(sender="x"), timeout=4.0)).msg).__name__
            except PeerUnavailable:
                return ""

    async def scenario() -> tuple[dict[str, Any], str]:
        for _ in range(600):
            assert launcher.poll() is None, "the swarm ended before it could be probed"
            with contextlib.suppress(PeerUnavailable):
                status = await ask_status(config)
                if status["members"]:
                    break
            await asyncio.sleep(0.5)
        return status, await plaintext_status()

    launcher = InlineLauncher(config)
    launcher.prepare()
    launcher.start()
    try:
        # Execute
        status, plaintext = asyncio.run(asyncio.wait_for(scenario(), 600))
        code = None
        for _ in range(1200):
            code = launcher.poll()
            if code is not None:
                break
            time.sleep(0.5)
    finally:
        launcher.stop()

    # Assert: a client with the keys was answered, a plaintext one not; the round completed
    assert list(status["members"]) == ["host-0"] and plaintext == ""
    assert code == 0
    record = json.loads(LineageReader(config.lineage_dir).show("swarm", round_path(0)))
    assert record["unavailable"] == [] and len(record["scores"]) == 4
