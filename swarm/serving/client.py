"""The model server's interface for callers: generate, chat, structured answers, train, merge.

A ``ModelClient`` wraps one transport ``Client`` connected to a model server
(a host holds one for all its agents; a notebook or script opens its own)::

    async with ModelClient.connect("tcp://127.0.0.1:47002") as model:
        text = await model.chat("What is the capital of France?", max_tokens=32)

        class City(msgspec.Struct):
            name: str
            country: str

        city = await model.chat("Name a city in Italy, as JSON.", schema=City)  # a City

Every request waits for as long as the server is heard (its heartbeats
arrive), however long the engine takes, and is sent reliably (the server
runs it once). An ``Error`` answer is raised as the typed error its code
names: ``RequestError`` (out-of-bounds sampling, a bad schema),
``StructuredOutputError`` (an answer off its schema), ``AdapterError``...;
``PeerUnavailable`` once the server is silent for ``silence_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, overload

from swarm.errors import PeerUnavailable, RemoteError, SwarmError, error_for_code
from swarm.serving.structured import decode_output, schema_for
from swarm.transport.peers import Client, Incoming, TransportOptions
from swarm.wire.codec import ChatTurn, Generate, Generated, GenOutput, GenRequest, Message

__all__ = ["ModelClient", "ChatInput", "as_turns"]

T = TypeVar("T")

#: A chat as a caller may give it: one user message, ``ChatTurn``s, or ``{"role", "content"}`` dicts.
ChatInput = str | Sequence[ChatTurn | dict[str, str]]


def as_turns(chat: ChatInput) -> list[ChatTurn]:
    """``chat`` as ``ChatTurn``s (a string is one user turn)."""
    if isinstance(chat, str):
        return [ChatTurn(role="user", content=chat)]
    turns = []
    for turn in chat:
        if isinstance(turn, ChatTurn):
            turns.append(turn)
        else:
            turns.append(ChatTurn(role=turn["role"], content=turn["content"]))  # type: ignore[arg-type]
    return turns


class ModelClient:
    """Requests to one model server over ``client``.

    Args:
        client: a started transport ``Client`` connected to the server.
        sender: the ``sender`` of the requests (an agent or host id).
        silence_s: how long the server may go unheard before a request fails.
    """

    def __init__(self, client: Client, sender: str = "", silence_s: float = 30.0) -> None:
        self.client = client
        self.sender = sender or client.name
        self.silence_s = silence_s

    @classmethod
    @asynccontextmanager
    async def connect(cls, address: str, name: str = "model-client",
                      options: TransportOptions | None = None,
                      timeout: float = 60.0) -> AsyncIterator[ModelClient]:
        """Connect to the server at ``address`` (waiting up to ``timeout`` for it)."""
        async with Client(name, address, options or TransportOptions()) as client:
            await client.wait_up(timeout)
            yield cls(client, silence_s=max(timeout, client.options.silence_s))

    async def generate(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        """One ``GenOutput`` per request, in order (one ``Generate`` message)."""
        reply = await self.ask(Generate(sender=self.sender, requests=list(requests)))
        if not isinstance(reply.msg, Generated):
            raise SwarmError(f"model server answered Generate with {type(reply.msg).__name__}")
        if len(reply.msg.outputs) != len(requests):
            raise SwarmError(f"model server answered {len(reply.msg.outputs)} outputs for "
                             f"{len(requests)} requests")
        return list(reply.msg.outputs)

    @overload
    async def chat(self, chat: ChatInput, *, schema: None = None, **sampling: Any) -> str: ...

    @overload
    async def chat(self, chat: ChatInput, *, schema: type[T], **sampling: Any) -> T: ...

    async def chat(self, chat: ChatInput, *, schema: type[T] | None = None,
                   **sampling: Any) -> str | T:
        """The model's answer to ``chat``, rendered with its chat template.

        Args:
            chat: a user message, or the turns of a conversation.
            schema: a msgspec type (a ``Struct``...): the answer is generated to its
                JSON schema and returned decoded as that type.
            sampling: ``GenRequest`` fields: ``adapter``, ``max_tokens``,
                ``temperature``, ``top_p``, ``seed``, ``stop``.

        Raises:
            StructuredOutputError: the answer does not match ``schema``.
            RequestError: a sampling value out of bounds.
        """
        request = GenRequest(messages=as_turns(chat),
                             json_schema=None if schema is None else schema_for(schema), **sampling)
        text = (await self.generate([request]))[0].texts[0]
        return text if schema is None else decode_output(text, schema)

    async def complete(self, prompt: str, **sampling: Any) -> str:
        """The model's continuation of the raw text ``prompt`` (no chat template)."""
        return (await self.generate([GenRequest(prompt=prompt, **sampling)]))[0].texts[0]

    async def ask(self, msg: Message) -> Incoming:
        """Send ``msg`` reliably and wait for its answer while the server is heard.

        Each wait lasts one liveness timeout; while the server's heartbeats
        arrive the same request (same ``msg_id``: the server runs it once) is
        waited for again.

        Raises:
            PeerUnavailable: the server was not heard for ``silence_s``.
            SwarmError: the typed error of the server's ``Error`` answer.
        """
        client = self.client
        loop = asyncio.get_running_loop()
        silent_since: float | None = None
        while True:
            try:
                return await client.request(msg, timeout=client.options.timeout_s, reliable=True)
            except RemoteError as exc:
                raise error_for_code(exc.remote_code, exc.reason) from None
            except PeerUnavailable:
                if client.up:  # heard since its last (re)connect, not declared dead
                    silent_since = None
                    continue
                now = loop.time()
                silent_since = now if silent_since is None else silent_since
                if now - silent_since >= self.silence_s:
                    raise
