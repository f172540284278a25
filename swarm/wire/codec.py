"""The wire format: typed, versioned messages encoded as msgpack.

A ZeroMQ message is multipart ``[envelope][payload]*``. The envelope frame is
one msgpack map: a frozen ``msgspec.Struct`` from the tagged union ``Message``
(tag field ``type``, the class name), whose fields are the envelope
(``version, msg_id, correlation_id, sender, recipient, round, sent_at, ack``)
followed by the flat body of that type. Large binary payloads (adapter bytes,
committed files) never go inside msgpack; they travel as separate zero-copy
frames after the envelope, and ``payload_frames(msg)`` says how many a message
carries. The message types themselves are in ``swarm.wire.messages``. An envelope
frame may also hold a msgpack array of up to ``MAX_BATCH`` payload-free
messages (a batch), which is how the hot path coalesces small messages; a
batch holding a payload type is refused whole.

Every field is bounded (``swarm.wire.messages``, "bounds"): a message asking for
unbounded work or memory fails to decode like a malformed one.

``decode`` takes untrusted frames and raises nothing but ``WireError``, whose
``kind`` (``garbage, truncated, unknown_type, bad_version, invalid, frames,
oversize``) becomes the ``code`` of the ``Error`` reply.

Versions: every envelope carries ``version`` (``VERSION``, today 2). A message
of any other version is refused with ``wire.bad_version``, whose reason names
the version this side speaks; the version is checked first, so a peer of
another version learns that even where its message would not decode here at
all (a type or a field this version does not know).

Example::

    msg = Chat(sender="a1", recipient="b7", role="user", content="hi")
    frames = encode(msg)                  # [envelope]
    decoded, payload = decode(frames)     # (Chat(...), [])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Union

import msgspec

from swarm.errors import WireError
from swarm.wire import messages as _messages
from swarm.wire.messages import *  # noqa: F403  (the message types, re-exported: import them from either)
from swarm.wire.messages import (
    MAX_BATCH,
    MAX_ID,
    MAX_ROUND,
    VERSION,
    AdapterChunk,
    AnyMessage,
    Commit,
    Error,
    Message,
)

__all__ = [
    "Frame",
    "encode",
    "encode_batch",
    "decode",
    "decode_envelope",
    "envelope_of",
    "payload_frames",
    "PAYLOAD_TYPES",
    "error_reply",
]
__all__ += _messages.__all__

#: A frame as the transport hands it around: bytes, a memoryview, or a zmq.Frame.
Frame = Any

_ENCODER = msgspec.msgpack.Encoder()
# A batch is bounded in length before msgspec decodes its items: a small frame of
# tiny messages must not expand into millions of objects.
_DECODER: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
    Union[AnyMessage, Annotated[list[AnyMessage], msgspec.Meta(max_length=MAX_BATCH)]]  # noqa: UP007
)


#: Message types that carry payload frames after the envelope.
PAYLOAD_TYPES: frozenset[type[Message]] = frozenset({AdapterChunk, Commit})


def payload_frames(msg: Message) -> int:
    """How many payload frames follow the envelope of ``msg``."""
    if isinstance(msg, AdapterChunk):
        return 1
    if isinstance(msg, Commit):
        return len(msg.paths)
    return 0


def encode(msg: Message, payload: Sequence[Frame] = ()) -> list[Frame]:
    """The frames of one message: ``[envelope, *payload]``.

    Raises:
        WireError: the number of payload frames does not match the message type.
    """
    if len(payload) != payload_frames(msg):
        raise WireError(
            f"{type(msg).__name__} carries {payload_frames(msg)} payload frame(s), "
            f"got {len(payload)}",
            kind="frames",
        )
    return [_ENCODER.encode(msg), *payload]


def encode_batch(msgs: Sequence[Message]) -> bytes:
    """One envelope frame holding several payload-free messages."""
    return _ENCODER.encode(list(msgs))


def decode_envelope(data: Frame) -> Message | list[Message]:
    """Decode one envelope frame (a message or a batch) from untrusted bytes.

    Raises:
        WireError: and nothing else, whatever the bytes.
    """
    try:
        result: Message | list[Message] = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        other = _foreign_version(data)
        if other is not None:  # another version's message: say so, not what failed in it
            raise _bad_version(other) from None
        text = str(exc)
        kind = "unknown_type" if text.endswith(".type`") else "invalid"
        raise WireError(f"invalid envelope: {text}", kind=kind) from None
    except msgspec.DecodeError as exc:
        text = str(exc)
        kind = "truncated" if "truncated" in text else "garbage"
        raise WireError(f"undecodable envelope: {text}", kind=kind) from None
    except Exception as exc:  # a decoder must never leak another type
        raise WireError(f"undecodable envelope: {exc!r}", kind="garbage") from None
    if isinstance(result, list):
        for item in result:
            if item.version != VERSION:
                _check(item)
            if type(item) in PAYLOAD_TYPES:  # its payload frames cannot be in a batch
                raise WireError(f"a {type(item).__name__} inside a batch (it carries payload "
                                "frames, so it travels alone)", kind="frames")
        return result
    _check(result)
    return result


class _Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The envelope fields alone, read leniently (other fields, ``type`` included, ignored)."""

    msg_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
    correlation_id: Annotated[str, msgspec.Meta(max_length=MAX_ID)] | None = None
    sender: Annotated[str, msgspec.Meta(max_length=MAX_ID)] = ""
    recipient: Annotated[str, msgspec.Meta(max_length=MAX_ID)] = ""
    round: Annotated[int, msgspec.Meta(ge=-1, le=MAX_ROUND)] = -1


_ENVELOPE = msgspec.msgpack.Decoder(_Envelope)


def envelope_of(data: Frame) -> Message | None:
    """The envelope fields of a refused message, or ``None`` where they are unreadable.

    The ``Error`` reply then names the refused message (``correlation_id``), so
    a request waiting for it fails at once. Never raises.
    """
    try:
        env = _ENVELOPE.decode(data)
    except Exception:  # anything at all: this only addresses an error reply
        return None
    return Message(msg_id=env.msg_id, correlation_id=env.correlation_id, sender=env.sender,
                   recipient=env.recipient, round=env.round)


def decode(frames: Sequence[Frame]) -> tuple[Message, list[Frame]]:
    """Decode ``[envelope, *payload]`` of one (non-batch) message from untrusted frames.

    Raises:
        WireError: and nothing else, whatever the frames.
    """
    if not frames:
        raise WireError("empty message", kind="truncated")
    msg = decode_envelope(frames[0])
    if isinstance(msg, list):
        raise WireError("a batch where one message was expected", kind="invalid")
    payload = list(frames[1:])
    if len(payload) != payload_frames(msg):
        raise WireError(
            f"{type(msg).__name__} needs {payload_frames(msg)} payload frame(s), "
            f"got {len(payload)}",
            kind="frames",
        )
    return msg, payload


def _check(msg: Message) -> None:
    if msg.version != VERSION:
        raise _bad_version(msg.version)


def _bad_version(version: int) -> WireError:
    return WireError(f"wire version {version} is not supported: this side speaks "
                     f"version {VERSION}", kind="bad_version")


class _Version(msgspec.Struct, frozen=True, gc=False):
    """The ``version`` field alone, read leniently (every other field ignored)."""

    version: int = VERSION


_VERSIONS: msgspec.msgpack.Decoder[_Version | list[_Version]] = msgspec.msgpack.Decoder(
    Union[_Version, list[_Version]]  # noqa: UP007
)


def _foreign_version(data: Frame) -> int | None:
    """The version an undecodable envelope (or an item of its batch) declares, if not ours."""
    try:
        found = _VERSIONS.decode(data)
    except Exception:  # anything at all: this only names the refusal
        return None
    for item in found if isinstance(found, list) else [found]:
        if item.version != VERSION:
            return item.version
    return None


def error_reply(exc: Exception, to: Message | None, sender: str = "") -> Error:
    """The ``Error`` message answering ``to`` (or an unreadable message) with ``exc``.

    The code is ``wire.<kind>`` for a ``WireError``, otherwise the error's ``code``.
    """
    kind = getattr(exc, "kind", None)
    code = f"wire.{kind}" if isinstance(exc, WireError) else str(getattr(exc, "code", "error"))
    reason = str(exc)[:500]
    if to is None:
        return Error(sender=sender, code=code, reason=reason)
    return Error(
        sender=sender,
        recipient=to.sender,
        round=to.round,
        correlation_id=to.msg_id,
        in_reply_to=to.msg_id,
        code=code,
        reason=reason,
    )
