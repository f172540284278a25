"""The message types of the wire format: frozen ``msgspec.Struct``s of one tagged union.

Every message carries the envelope fields of ``Message`` (``version, msg_id,
correlation_id, sender, recipient, round, sent_at, ack``) followed by the flat
body of its type; the tag field ``type`` holds the class name. How they are
framed, encoded and decoded is ``swarm.wire``, which also re-exports every
name here (import them from either).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Annotated, Any, Union

import msgspec

__all__ = [
    "VERSION",
    "Message",
    "Join",
    "Welcome",
    "Leave",
    "Heartbeat",
    "Ack",
    "Profile",
    "Pairing",
    "Reward",
    "AdapterOffer",
    "AdapterRequest",
    "AdapterChunk",
    "AdapterAck",
    "Chat",
    "KGNode",
    "KGEdge",
    "KGDelta",
    "Commit",
    "Committed",
    "GenRequest",
    "Generate",
    "Generated",
    "Example",
    "Train",
    "Trained",
    "Merge",
    "Merged",
    "Error",
    "AgentReport",
    "Assignment",
    "PairOutcome",
    "Step",
    "StepDone",
    "Status",
    "StatusReport",
    "MESSAGE_TYPES",
    "AnyMessage",
    "new_id",
]

#: Wire protocol version; a message with any other version is refused.
VERSION = 1



_Count = Annotated[int, msgspec.Meta(ge=0)]


# Message ids: 64 random bits per process (redrawn after a fork) plus a counter;
# unique across processes with overwhelming probability and 4x cheaper than
# drawing 96 random bits per message on the hot path.
_ID_STATE: list[Any] = []


def _reset_ids() -> None:
    _ID_STATE[:] = [os.urandom(8).hex(), itertools.count()]


_reset_ids()
os.register_at_fork(after_in_child=_reset_ids)


def new_id() -> str:
    """A fresh message id (hex)."""
    return f"{_ID_STATE[0]}{next(_ID_STATE[1]):x}"


class Message(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True, gc=False
):
    """The envelope every message carries; subclasses add a flat typed body.

    ``ack=True`` asks the receiving transport to acknowledge the message with an
    ``Ack`` and to deliver it at most once (de-duplicated by ``msg_id``); the
    sending transport retries it until acknowledged.
    """

    version: int = VERSION
    msg_id: str = msgspec.field(default_factory=new_id)
    correlation_id: str | None = None
    sender: str = ""
    recipient: str = ""
    round: int = -1
    sent_at: float = msgspec.field(default_factory=time.time)
    ack: bool = False


# -- membership ---------------------------------------------------------------


class Join(Message, frozen=True, kw_only=True):
    """A process announces itself and the agents it hosts."""

    agent_ids: list[str] = []
    role: str = ""
    endpoint: str = ""
    capabilities: dict[str, str] = {}


class Welcome(Message, frozen=True, kw_only=True):
    """The coordinator accepts a ``Join``: swarm name, peers' endpoints, heartbeat period."""

    swarm: str = ""
    peers: dict[str, str] = {}
    heartbeat_ms: int = 1000


class Leave(Message, frozen=True, kw_only=True):
    """Agents (or a whole process) leave the swarm."""

    agent_ids: list[str] = []
    reason: str = ""


class Heartbeat(Message, frozen=True, kw_only=True):
    """Liveness signal (Paranoid Pirate); handled by the transport, never delivered."""


class Ack(Message, frozen=True, kw_only=True):
    """Transport-level acknowledgement of the message whose id is ``correlation_id``."""


# -- matchmaking ----------------------------------------------------------------


class Profile(Message, frozen=True, kw_only=True):
    """An agent's profile vector (and the named metrics it was built from)."""

    agent_id: str = ""
    vector: list[float] = []
    metrics: dict[str, float] = {}


class Pairing(Message, frozen=True, kw_only=True):
    """The pairs chosen for a round, each ``(teacher, student)``."""

    pairs: list[tuple[str, str]] = []


class Reward(Message, frozen=True, kw_only=True):
    """The reward a student reports for a pairing."""

    teacher: str = ""
    student: str = ""
    value: float = 0.0
    metrics: dict[str, float] = {}


# -- adapters -------------------------------------------------------------------


class AdapterOffer(Message, frozen=True, kw_only=True):
    """A sender offers an adapter (content hash, size) to a receiver."""

    sha256: str = ""
    size: _Count = 0
    agent_id: str = ""
    meta: dict[str, str] = {}


class AdapterRequest(Message, frozen=True, kw_only=True):
    """Receiver asks for the bytes from ``offset`` and grants ``credit`` chunks."""

    sha256: str = ""
    offset: _Count = 0
    credit: _Count = 0
    chunk_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1 << 20


class AdapterChunk(Message, frozen=True, kw_only=True):
    """Bytes ``[offset, offset+len)`` of an adapter; the bytes are the one payload frame."""

    sha256: str = ""
    offset: _Count = 0


class AdapterAck(Message, frozen=True, kw_only=True):
    """Receiver progress: bytes held, more credit, and at the end whether sha256 matched."""

    sha256: str = ""
    received: _Count = 0
    credit: _Count = 0
    done: bool = False
    ok: bool = True


# -- agents, knowledge, lineage -----------------------------------------------------


class Chat(Message, frozen=True, kw_only=True):
    """One chat turn between agents."""

    role: str = "user"
    content: str = ""
    in_reply_to: str | None = None


class KGNode(msgspec.Struct, frozen=True, kw_only=True):
    """A knowledge-graph node (goal, subgoal, step, fact, ...)."""

    id: str
    kind: str = "fact"
    label: str = ""
    attrs: dict[str, str] = {}


class KGEdge(msgspec.Struct, frozen=True, kw_only=True):
    """A directed knowledge-graph edge."""

    src: str
    dst: str
    kind: str = "related"


class KGDelta(Message, frozen=True, kw_only=True):
    """Nodes and edges an agent added to its knowledge graph."""

    agent_id: str = ""
    nodes: list[KGNode] = []
    edges: list[KGEdge] = []


class Commit(Message, frozen=True, kw_only=True):
    """Ask the lineage writer to commit files on a branch; file ``i`` is payload frame ``i``."""

    branch: str = ""
    paths: list[str] = []
    message: str = ""


class Committed(Message, frozen=True, kw_only=True):
    """The commit a ``Commit`` produced."""

    branch: str = ""
    commit: str = ""


# -- serving and training ------------------------------------------------------------


class GenRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One generation: prompt, adapter by content hash (``None`` = base model), sampling."""

    prompt: str
    adapter: str | None = None
    max_tokens: int = 64
    temperature: float = 0.0
    agent_id: str = ""


class Generate(Message, frozen=True, kw_only=True):
    """A batch of generation requests for the model server."""

    requests: list[GenRequest] = []


class Generated(Message, frozen=True, kw_only=True):
    """Completions, one per request of the ``Generate`` it answers, in order."""

    texts: list[str] = []


class Example(msgspec.Struct, frozen=True, kw_only=True):
    """One training example."""

    prompt: str
    completion: str


class Train(Message, frozen=True, kw_only=True):
    """Fine-tune an agent's LoRA adapter on examples, starting from ``base_adapter``."""

    agent_id: str = ""
    base_adapter: str | None = None
    examples: list[Example] = []
    hyper: dict[str, float | int | str] = {}


class Trained(Message, frozen=True, kw_only=True):
    """The adapter (content hash) a ``Train`` produced, with training metrics."""

    agent_id: str = ""
    adapter: str = ""
    metrics: dict[str, float] = {}


class Merge(Message, frozen=True, kw_only=True):
    """Merge a teacher's adapter into a student's: ``student + weight * teacher`` (task arithmetic)."""

    agent_id: str = ""
    student: str = ""
    teacher: str = ""
    weight: float = 1.0
    method: str = "svd"


class Merged(Message, frozen=True, kw_only=True):
    """The adapter (content hash) a ``Merge`` produced."""

    agent_id: str = ""
    adapter: str = ""


class Error(Message, frozen=True, kw_only=True):
    """An error crossing a process boundary as data."""

    code: str = "error"
    reason: str = ""
    in_reply_to: str | None = None


# -- rounds: the coordinator drives hosts through the phases of a round ------


class AgentReport(msgspec.Struct, frozen=True, kw_only=True):
    """One agent's state after a step: adapter, held-out score, metrics."""

    agent_id: str
    adapter: str | None = None
    score: float = 0.0
    metrics: dict[str, float] = {}
    skills: list[str] = []


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """One pair of an exchange step: who teaches whom, and the teacher's adapter."""

    teacher: str
    student: str
    teacher_adapter: str | None = None
    teacher_skills: list[str] = []


class PairOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a student made of its teacher: scores before/after, adapter kept, parents."""

    teacher: str
    student: str
    before: float = 0.0
    after: float = 0.0
    accepted: bool = False
    adapter: str | None = None
    parents: list[str] = []


class Step(Message, frozen=True, kw_only=True):
    """Coordinator -> host: run ``phase`` (``local`` or ``exchange``) of ``round``."""

    phase: str = "local"
    agent_ids: list[str] = []
    assignments: list[Assignment] = []
    adapters: dict[str, str] = {}


class StepDone(Message, frozen=True, kw_only=True):
    """Host -> coordinator: the reports and outcomes of a step, and agents that failed."""

    phase: str = "local"
    reports: list[AgentReport] = []
    outcomes: list[PairOutcome] = []
    failed: dict[str, str] = {}
    messages: int = 0  # messages the host sent and received since its last StepDone


class Status(Message, frozen=True, kw_only=True):
    """A client asks the coordinator for the swarm's status."""


class StatusReport(Message, frozen=True, kw_only=True):
    """The coordinator's status: members, round, last pairings and rewards, as JSON text."""

    json: str = "{}"


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Join, Welcome, Leave, Heartbeat, Ack, Profile, Pairing, Reward,
    AdapterOffer, AdapterRequest, AdapterChunk, AdapterAck, Chat, KGDelta,
    Commit, Committed, Generate, Generated, Train, Trained, Error,
    Step, StepDone, Status, StatusReport, Merge, Merged,
)  # fmt: skip

AnyMessage = Union[  # noqa: UP007 (msgspec needs a real Union object here)
    Join, Welcome, Leave, Heartbeat, Ack, Profile, Pairing, Reward,
    AdapterOffer, AdapterRequest, AdapterChunk, AdapterAck, Chat, KGDelta,
    Commit, Committed, Generate, Generated, Train, Trained, Error,
    Step, StepDone, Status, StatusReport, Merge, Merged,
]  # fmt: skip
