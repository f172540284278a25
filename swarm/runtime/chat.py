"""Talk to a live agent: find its host through the coordinator, then chat to it directly.

``chat_with`` (what ``swarm chat RUN AGENT "..."`` calls) asks the coordinator
of the running swarm where the agent lives (``Locate`` -> ``Located``:
placement agent -> host, peers host -> peer endpoint), connects a transport
``Client`` to that host's peer ROUTER with the run's own transport options
(CURVE keys included, as every process of the run builds them) and sends
``Chat(sender="user:<name>", recipient=AGENT, content=...)``. The host answers
with the agent's ``on_chat`` reply (by default its LLM's answer, with its own
adapter). The coordinator only says where the agent is; the chat itself goes
to the host, like every agent message.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import msgspec

from swarm.config.schema import SwarmConfig
from swarm.errors import (
    AskTimeout,
    PeerUnavailable,
    RemoteError,
    SwarmError,
    UnknownAgent,
    error_for_code,
)
from swarm.transport.peers import Client, TransportOptions
from swarm.transport.topology import address_book, new_routing_id
from swarm.wire.messages import AgentMsg, Chat, Locate, Located, Status, StatusReport

__all__ = ["ask_service", "chat_with"]

#: Seconds to wait for the coordinator and for a host's first sound.
_REACH_S = 10.0


async def chat_with(config: SwarmConfig, agent_id: str, content: str, *, user: str = "cli",
                    timeout: float = 120.0) -> str:
    """Send ``content`` to agent ``agent_id`` of the running swarm of ``config``; its reply.

    Args:
        config: the config the swarm was started with (its transport settings).
        agent_id: the agent to talk to.
        content: the message.
        user: who is writing: the chat's sender is ``user:<user>``.
        timeout: seconds to wait for the reply (an LLM's answer takes a while).

    Raises:
        PeerUnavailable: no swarm answers at the config's control address, or the
            agent's host cannot be reached.
        UnknownAgent: no live host of the swarm holds ``agent_id``.
        AskTimeout: no reply within ``timeout`` (or the agent sends none).
        SwarmError: the error the agent's host answered with (its ``on_chat`` raised).
    """
    options = TransportOptions.from_config(config.transport)
    control = address_book(config.transport, config.launcher.hosts, config.model.server).control
    host, address = await _locate(config, control, options, agent_id)
    async with Client(new_routing_id("chat-cli"), address, options) as peer:
        try:
            await peer.wait_up(min(timeout, _REACH_S))
        except PeerUnavailable:
            raise PeerUnavailable(f"{agent_id}'s host {host} does not answer at {address} "
                                  f"(it may have stopped; see swarm status)") from None
        try:
            reply = await peer.request(Chat(sender=f"user:{user}", recipient=agent_id,
                                            content=content), timeout=timeout)
        except RemoteError as exc:
            raise error_for_code(exc.remote_code, exc.reason) from None
        except PeerUnavailable:
            raise AskTimeout(f"{agent_id} (on {host}) did not reply within {timeout:g} s "
                             f"(--timeout to wait longer)") from None
    if not isinstance(reply.msg, Chat):
        raise SwarmError(f"{agent_id} answered with {type(reply.msg).__name__}, not a Chat")
    return reply.msg.content


async def ask_service(config: SwarmConfig, msg: msgspec.Struct, *, user: str = "cli",
                      timeout: float = 60.0) -> Any:
    """Send ``msg`` (a registered agent message) to the running swarm's protocol service, as
    ``user:<user>``; its answer (``swarm artifact ...`` steering an evolution).

    Raises:
        PeerUnavailable: no swarm answers at the config's control address.
        SwarmError: the error the service answered with.
    """
    from swarm.agents.talk import decode_body, encode_body

    options = TransportOptions.from_config(config.transport)
    control = address_book(config.transport, config.launcher.hosts, config.model.server).control
    kind, body = encode_body(msg)
    wire = AgentMsg(sender=f"user:{user}", recipient="coordinator", kind=kind, body=body,
                    asks=True, ack=True)
    async with Client(new_routing_id("steer-cli"), control, options) as coord:
        try:
            await coord.wait_up(min(timeout, _REACH_S))
        except PeerUnavailable:
            raise PeerUnavailable(f"no swarm answers at {control}: is swarm "
                                  f"{config.swarm.name!r} running?") from None
        try:
            reply = await coord.request(wire, timeout=timeout, reliable=True)
        except RemoteError as exc:
            raise error_for_code(exc.remote_code, exc.reason) from None
        except PeerUnavailable:
            raise AskTimeout(f"the swarm's coordinator did not answer within {timeout:g} s") \
                from None
    if not isinstance(reply.msg, AgentMsg):
        raise SwarmError(f"the coordinator answered with {type(reply.msg).__name__}")
    return decode_body(reply.msg.kind, reply.msg.body)


async def _locate(config: SwarmConfig, control: str, options: TransportOptions,
                  agent_id: str) -> tuple[str, str]:
    """``(host, peer endpoint)`` of ``agent_id``, from the coordinator."""
    async with Client(new_routing_id("chat-cli"), control, options) as coord:
        try:
            reply = await coord.request(Locate(sender="chat-cli", agent_ids=[agent_id]),
                                        timeout=_REACH_S)
        except SwarmError:
            raise PeerUnavailable(f"no swarm answers at {control}: is swarm "
                                  f"{config.swarm.name!r} running? (start it with swarm run; "
                                  f"swarm status shows a running one)") from None
        if not isinstance(reply.msg, Located):
            raise SwarmError(f"the coordinator answered Locate with {type(reply.msg).__name__}")
        host = reply.msg.placement.get(agent_id)
        if host is None:
            raise UnknownAgent(_unknown(agent_id, config.swarm.name, await _agents(coord)))
    address = reply.msg.peers.get(host)
    if not address:
        raise PeerUnavailable(f"{agent_id}'s host {host} gave the swarm no peer address")
    return host, address


async def _agents(coord: Client) -> list[str]:
    """Every agent on a live host (``Status``), for the message about an unknown one."""
    try:
        reply = await coord.request(Status(sender="chat-cli"), timeout=_REACH_S)
    except SwarmError:
        return []
    if not isinstance(reply.msg, StatusReport):
        return []
    members = json.loads(reply.msg.json).get("members", {})
    return sorted(a for agents in members.values() for a in agents)


def _unknown(agent_id: str, swarm: str, agents: list[str]) -> str:
    close = difflib.get_close_matches(agent_id, agents, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(agents[:8]) + (f" ... ({len(agents)} in all)" if len(agents) > 8 else "")
    return (f"no agent {agent_id[:80]!r} on any live host of swarm {swarm!r}{hint} "
            f"(its agents: {shown or 'none yet'})")
