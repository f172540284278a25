"""Typed messages between agents: a registry of msgspec Structs and typed handlers.

A role declares the messages it sends as ``msgspec.Struct`` classes and
registers each by name; the name travels on the wire (``AgentMsg.kind``) and
the receiving host decodes the body with the class registered under it, so
both sides must have registered it (a package does it on import, or through
the entry-point group ``swarm.messages``)::

    @message("Question")
    class Question(msgspec.Struct, frozen=True):
        text: str

    @message("Answer")
    class Answer(msgspec.Struct, frozen=True):
        text: str
        facts: list[str] = []

    @role("asker")
    class Asker(Agent):
        @handles(Question)
        async def on_question(self, ctx: AgentContext, sender: str, q: Question) -> Answer:
            return Answer(text="...")

Delivery, per message kind (``@message(name, delivery=...)``):

- ``at_most_once`` (the default): ``ctx.send`` and ``ctx.publish`` send once;
  a message lost with a dying host is lost, and never delivered twice.
- ``at_least_once``: the sending transport retries until the receiving host
  acknowledges; the receiver de-duplicates by ``msg_id``, so a handler runs
  once per message unless the receiving host itself restarts in between.

``ctx.ask`` is always a request sent at-least-once with de-duplication: the
recipient's host runs the handler once and answers a resend with its cached
answer.

The de-duplication remembers the last ``TransportOptions.dedup_window``
message ids per socket (100,000): a resend that arrives after that many newer
messages (about 1.5 s of asks at 68,000 asks/s, ``bench/scale.py``) is taken
for a new message and its handler runs again. Handlers of messages that may
be resent under such load should be idempotent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import msgspec

from swarm.errors import MessageTypeError, RegistryError
from swarm.registry import Registry
from swarm.wire.messages import KGDelta

__all__ = ["MESSAGES", "LOG_BODY_BYTES", "Delivery", "message", "handles", "kind_of", "delivery_of",
           "encode_body", "decode_body", "handlers_of"]

Delivery = Literal["at_most_once", "at_least_once"]

#: Bodies up to this size are kept in the round's message log as JSON; larger
#: ones by their sha256 and size (agent messages and tool calls alike).
LOG_BODY_BYTES = 4096

MESSAGES: Registry[type[msgspec.Struct]] = Registry("agent message", "swarm.messages")
_KINDS: dict[type[msgspec.Struct], str] = {}
_DELIVERY: dict[str, Delivery] = {}
_ENCODER = msgspec.msgpack.Encoder()

S = TypeVar("S", bound=type[msgspec.Struct])
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def message(name: str | None = None, *, delivery: Delivery = "at_most_once") -> Callable[[S], S]:
    """Class decorator registering a ``msgspec.Struct`` as the agent message ``name``.

    Args:
        name: the name on the wire (default: the class name).
        delivery: ``at_most_once`` or ``at_least_once`` for ``send`` and ``publish``.

    Raises:
        RegistryError: not a Struct class, the name is taken, or an unknown delivery.
    """
    if delivery not in ("at_most_once", "at_least_once"):
        raise RegistryError(f"delivery {delivery!r} is not 'at_most_once' or 'at_least_once'")

    def wrap(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            raise RegistryError(f"agent message {name or cls!r}: {cls!r} is not a msgspec.Struct")
        kind = name or cls.__name__
        MESSAGES.register(kind, cls, settings=None)
        _KINDS[cls] = kind
        _DELIVERY[kind] = delivery
        return cls

    return wrap


def kind_of(msg: msgspec.Struct) -> str:
    """The registered name of ``msg``'s type.

    Raises:
        MessageTypeError: the type is not registered (``@message``).
    """
    kind = _KINDS.get(type(msg))
    if kind is None:
        raise MessageTypeError(f"{type(msg).__qualname__} is not a registered agent message: "
                               f"decorate it with @message(\"{type(msg).__name__}\")")
    return kind


def delivery_of(kind: str) -> Delivery:
    """How ``send``/``publish`` deliver messages of ``kind``."""
    return _DELIVERY.get(kind, "at_most_once")


def encode_body(msg: msgspec.Struct) -> tuple[str, bytes]:
    """``(kind, msgpack body)`` of a registered message.

    Raises:
        MessageTypeError: the type is not registered (``@message``).
    """
    kind = _KINDS.get(type(msg))
    return kind if kind is not None else kind_of(msg), _ENCODER.encode(msg)


def decode_body(kind: str, body: bytes) -> msgspec.Struct:
    """The message of ``kind`` encoded in ``body``.

    Raises:
        MessageTypeError: ``kind`` is not registered here, or ``body`` is not one.
    """
    try:
        cls = MESSAGES.get(kind)
    except RegistryError:
        raise MessageTypeError(f"no agent message type {kind[:80]!r} is registered on this "
                               f"host (known: {', '.join(MESSAGES.names()) or 'none'})") from None
    try:
        decoded: msgspec.Struct = msgspec.msgpack.decode(body, type=cls)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise MessageTypeError(f"body of a {kind} message does not decode: {exc}") from None
    return decoded


def handles(*types: type[msgspec.Struct]) -> Callable[[F], F]:
    """Mark a role method as the handler of messages of ``types``.

    The method is ``async def on_x(self, ctx, sender, msg)``; what it returns is the
    answer to an ``ask`` (a registered Struct, or ``None`` for no answer).
    """
    if not types:
        raise RegistryError("@handles needs at least one message type")

    def wrap(fn: F) -> F:
        fn.__swarm_handles__ = types  # type: ignore[attr-defined]
        return fn

    return wrap


def handlers_of(cls: type) -> dict[type[msgspec.Struct], str]:
    """The handler method name of each message type a class handles (its MRO's too)."""
    found: dict[type[msgspec.Struct], str] = {}
    for klass in reversed(cls.__mro__):
        for attr, fn in vars(klass).items():
            for t in getattr(fn, "__swarm_handles__", ()):
                found[t] = attr
    return found


# The knowledge-graph delta travels as an agent message too; the host merges it into
# the recipient's graph before any handler the role has for it runs.
message("KGDelta", delivery="at_least_once")(KGDelta)
