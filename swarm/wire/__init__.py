"""The wire format: typed, versioned messages (``messages``) and their msgpack envelope (``codec``).

Every message is a frozen ``msgspec.Struct`` of the tagged union ``Message``;
``encode``/``decode`` turn it into ZeroMQ frames and back, and a decoder given
untrusted bytes raises nothing but ``WireError``. Import from here or from the
defining module.
"""

from swarm.wire import messages as _messages
from swarm.wire.codec import (
    PAYLOAD_TYPES,
    Frame,
    decode,
    decode_envelope,
    encode,
    encode_batch,
    envelope_of,
    error_reply,
    payload_frames,
)
from swarm.wire.messages import *  # noqa: F403  (every message type and bound)

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
