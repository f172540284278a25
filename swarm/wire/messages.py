"""The message types of the wire format: frozen ``msgspec.Struct``s of one tagged union.

Every message carries the envelope fields of ``Message`` (``version, msg_id,
correlation_id, sender, recipient, round, sent_at, ack``) followed by the flat
body of its type; the tag field ``type`` holds the class name. How they are
framed, encoded and decoded is ``swarm.wire.codec``, which also re-exports every
name here (import them from either).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Annotated, Any, Literal, Union

import msgspec

__all__ = [
    "VERSION",
    "MAX_ID",
    "MAX_TEXT",
    "MAX_AGENTS",
    "MAX_ENTRIES",
    "MAX_PAYLOAD_FRAMES",
    "MAX_BATCH",
    "MAX_REQUESTS",
    "MAX_EXAMPLES",
    "MAX_TOKENS",
    "MAX_TEMPERATURE",
    "MAX_SAMPLES",
    "MAX_STOPS",
    "MAX_STOP_CHARS",
    "MAX_SCHEMA",
    "MAX_TURNS",
    "MAX_SEED",
    "MAX_BYTES",
    "MAX_CREDIT",
    "MAX_BODY",
    "MAX_ROUND",
    "MAX_CLOCK",
    "MAX_REAL",
    "HYPER_BOUNDS",
    "Message",
    "Join",
    "Welcome",
    "Leave",
    "Heartbeat",
    "Ack",
    "Profile",
    "Pairing",
    "Choose",
    "Reward",
    "AdapterOffer",
    "AdapterRequest",
    "AdapterChunk",
    "AdapterAck",
    "Chat",
    "AgentMsg",
    "Locate",
    "Located",
    "LogEntry",
    "AgentState",
    "KGNode",
    "KGEdge",
    "KGDelta",
    "Commit",
    "Committed",
    "ChatTurn",
    "GenRequest",
    "GenOutput",
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
    "Event",
    "MESSAGE_TYPES",
    "AnyMessage",
    "new_id",
]

#: Wire protocol version; a message with any other version is refused.
#: 2: ``Generated`` carries ``outputs`` (samples, finish reasons, token counts).
VERSION = 2

# -- bounds -----------------------------------------------------------------------
# Every field a peer sends is bounded, so that no message can ask a process for
# unbounded work or memory: a message outside them is refused as it is decoded
# (``WireError(kind="invalid")``, answered with ``Error(code="wire.invalid")``).
# The bounds are generous for real use; each is named here and in the docstrings.

#: Characters of an id or a name (agent, host, branch, sha256, message id, key).
MAX_ID = 256
#: Characters of a text field (chat content, prompt, completion, generated text,
#: a capability).
MAX_TEXT = 16 << 20
#: Entries of a list or map naming agents (agent ids, pairs, steps, reports).
MAX_AGENTS = 100_000
#: Entries of a small map or list (metrics, capabilities, skills, parents, attrs).
MAX_ENTRIES = 1024
#: Payload frames of one message (``Commit`` files); the reader stops at one more.
MAX_PAYLOAD_FRAMES = 10_000
#: Messages in one batch frame (the coalescing writer sends at most ``max_batch``).
MAX_BATCH = 4096
#: Requests of one ``Generate`` and texts of one ``Generated``.
MAX_REQUESTS = 65_536
#: Examples of one ``Train``.
MAX_EXAMPLES = 1_000_000
#: ``GenRequest.max_tokens``: tokens one request may ask for.
MAX_TOKENS = 32_768
#: ``GenRequest.temperature``: the sampling temperature, ``0 <= t <= MAX_TEMPERATURE``.
MAX_TEMPERATURE = 100.0
#: ``GenRequest.n``: samples one request may ask for.
MAX_SAMPLES = 16
#: ``GenRequest.stop``: stop strings of one request, and characters of each.
MAX_STOPS = 16
MAX_STOP_CHARS = 256
#: ``GenRequest.json_schema``: characters of the JSON schema an answer must match.
MAX_SCHEMA = 64 << 10
#: ``GenRequest.messages``: turns of one chat.
MAX_TURNS = 1024
#: ``GenRequest.seed``: the largest sampling seed.
MAX_SEED = 2**63 - 1
#: A byte count or offset (adapter size, transfer offset): 1 TiB.
MAX_BYTES = 1 << 40
#: Chunks of credit one ``AdapterRequest``/``AdapterAck`` may grant.
MAX_CREDIT = 65_536
#: Bytes of one agent message's body (``AgentMsg.body``, a msgpack-encoded Struct).
MAX_BODY = 16 << 20
#: A round number.
MAX_ROUND = 1_000_000_000
#: A knowledge graph's Lamport clock (``KGDelta.clock``).
MAX_CLOCK = 2**62
#: Magnitude of any other float (scores, rewards, metrics, profile vectors, times):
#: finite, ``-MAX_REAL <= x <= MAX_REAL`` (NaN and infinities are refused).
MAX_REAL = 1e15
#: Bounds of the numeric ``Train.hyper`` settings the trainer reads.
HYPER_BOUNDS: dict[str, tuple[float, float]] = {
    "steps": (1, 100_000),
    "batch_size": (1, 4096),
    "rank": (1, 256),
    "alpha": (1e-6, 4096.0),
    "dropout": (0.0, 1.0),
    "learning_rate": (1e-12, 10.0),
    "seed": (0, 2**63 - 1),
}

_Count = Annotated[int, msgspec.Meta(ge=0)]
_Bytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)]
_Credit = Annotated[int, msgspec.Meta(ge=0, le=MAX_CREDIT)]
_Round = Annotated[int, msgspec.Meta(ge=-1, le=MAX_ROUND)]
_Real = Annotated[float, msgspec.Meta(ge=-MAX_REAL, le=MAX_REAL)]
_Id = Annotated[str, msgspec.Meta(max_length=MAX_ID)]
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_Ids = Annotated[list[_Id], msgspec.Meta(max_length=MAX_AGENTS)]
_Metrics = Annotated[dict[_Id, _Real], msgspec.Meta(max_length=MAX_ENTRIES)]
_Tags = Annotated[dict[_Id, _Text], msgspec.Meta(max_length=MAX_ENTRIES)]  # names -> text
_Book = Annotated[dict[_Id, _Id], msgspec.Meta(max_length=MAX_AGENTS)]
_Attrs = Annotated[  # names -> text, integer, finite float or boolean
    dict[_Id, Union[bool, Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)], _Real, _Text]],  # noqa: UP007
    msgspec.Meta(max_length=MAX_ENTRIES),
]
_Hyper = Annotated[
    dict[_Id, Union[Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)], _Real, _Text]],  # noqa: UP007
    msgspec.Meta(max_length=MAX_ENTRIES),
]


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

    Bounds (every message): ids and names up to ``MAX_ID`` characters, ``round``
    from -1 to ``MAX_ROUND``, ``sent_at`` finite; each body's bounds are in its
    docstring and the constants above.
    """

    version: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = VERSION
    msg_id: _Id = msgspec.field(default_factory=new_id)
    correlation_id: _Id | None = None
    sender: _Id = ""
    recipient: _Id = ""
    round: _Round = -1
    sent_at: _Real = msgspec.field(default_factory=time.time)
    ack: bool = False


# -- membership ---------------------------------------------------------------


class Join(Message, frozen=True, kw_only=True):
    """A process announces itself and the agents it hosts (up to ``MAX_AGENTS``).

    ``process`` is the kind of process joining (``host``, the only one the
    coordinator admits). What the config says of the agents (role, skills,
    data) is not sent: the coordinator derives it from the config as the host does.
    """

    agent_ids: _Ids = []
    process: _Id = ""
    endpoint: _Id = ""
    capabilities: _Tags = {}  # what the process offers beyond the config (none is read today)


class Welcome(Message, frozen=True, kw_only=True):
    """The coordinator accepts a ``Join``: swarm name, peers' endpoints, heartbeat period.

    ``peers`` maps each host it knows to its peer-message endpoint, ``placement``
    each agent to its host: where agent messages go, host to host.

    ``heartbeat_ms`` is 10 to 60,000 (the config's range).
    """

    swarm: _Id = ""
    peers: _Book = {}
    placement: _Book = {}
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 1000


class Leave(Message, frozen=True, kw_only=True):
    """Agents (or a whole process) leave the swarm."""

    agent_ids: _Ids = []
    reason: _Text = ""


class Heartbeat(Message, frozen=True, kw_only=True):
    """Liveness signal (Paranoid Pirate); handled by the transport, never delivered."""


class Ack(Message, frozen=True, kw_only=True):
    """Transport-level acknowledgement of the message whose id is ``correlation_id``."""


# -- matchmaking ----------------------------------------------------------------


class Profile(Message, frozen=True, kw_only=True):
    """An agent's profile vector (and the named metrics it was built from).

    Up to ``MAX_REQUESTS`` finite components and ``MAX_ENTRIES`` metrics.
    """

    agent_id: _Id = ""
    vector: Annotated[list[_Real], msgspec.Meta(max_length=MAX_REQUESTS)] = []
    metrics: _Metrics = {}


class Pairing(Message, frozen=True, kw_only=True):
    """Pairs the matchmaker chose, each ``(teacher, student)`` or ``(answerer, asker)``.

    The answer to a ``Choose`` carries each pair's score in ``scores``, best first.
    """

    pairs: Annotated[list[tuple[_Id, _Id]], msgspec.Meta(max_length=MAX_AGENTS)] = []
    scores: Annotated[list[_Real], msgspec.Meta(max_length=MAX_AGENTS)] = []


class Choose(Message, frozen=True, kw_only=True):
    """An agent asks the coordinator's matchmaker whom to ask (``Matchmaker.choose``).

    ``asker`` is the agent (one of the sending host's); ``candidates`` limit the
    choice (empty: any agent with a profile); ``context`` is the query's vector
    (up to ``MAX_REQUESTS`` finite numbers, in the profiles' space); ``k`` 1 to
    ``MAX_ENTRIES`` partners. Answered with a ``Pairing``.
    """

    asker: _Id = ""
    candidates: _Ids = []
    context: Annotated[list[_Real], msgspec.Meta(max_length=MAX_REQUESTS)] = []
    k: Annotated[int, msgspec.Meta(ge=1, le=MAX_ENTRIES)] = 1


class Reward(Message, frozen=True, kw_only=True):
    """What a pairing earned (finite, like every float): ``teacher`` taught ``student``,
    or answered its query when ``context`` (the query's vector) is given."""

    teacher: _Id = ""
    student: _Id = ""
    value: _Real = 0.0
    metrics: _Metrics = {}
    context: Annotated[list[_Real], msgspec.Meta(max_length=MAX_REQUESTS)] = []


# -- adapters -------------------------------------------------------------------


class AdapterOffer(Message, frozen=True, kw_only=True):
    """A sender offers an adapter (content hash, size up to ``MAX_BYTES``) to a receiver."""

    sha256: _Id = ""
    size: _Bytes = 0
    agent_id: _Id = ""
    meta: _Tags = {}


class AdapterRequest(Message, frozen=True, kw_only=True):
    """Receiver asks for the bytes from ``offset`` and grants ``credit`` chunks.

    ``credit`` is at most ``MAX_CREDIT``, ``chunk_bytes`` 1 byte to 1 GiB.
    """

    sha256: _Id = ""
    offset: _Bytes = 0
    credit: _Credit = 0
    chunk_bytes: Annotated[int, msgspec.Meta(ge=1, le=1 << 30)] = 1 << 20


class AdapterChunk(Message, frozen=True, kw_only=True):
    """Bytes ``[offset, offset+len)`` of an adapter; the bytes are the one payload frame."""

    sha256: _Id = ""
    offset: _Bytes = 0


class AdapterAck(Message, frozen=True, kw_only=True):
    """Receiver progress: bytes held, more credit, and at the end whether sha256 matched."""

    sha256: _Id = ""
    received: _Bytes = 0
    credit: _Credit = 0
    done: bool = False
    ok: bool = True


# -- agents, knowledge, lineage -----------------------------------------------------


class Chat(Message, frozen=True, kw_only=True):
    """One chat turn between agents."""

    role: _Id = "user"
    content: _Text = ""
    in_reply_to: _Id | None = None


class AgentMsg(Message, frozen=True, kw_only=True):
    """A typed message between agents, host to host: ``kind`` names a registered Struct.

    ``body`` is that Struct msgpack-encoded (up to ``MAX_BODY`` bytes); the receiving
    host decodes it with the type registered under ``kind``
    (``swarm.agents.talk.MESSAGES``) and hands it to the recipient's handler. An
    ``ask`` is sent as a request (the answer is another ``AgentMsg`` or an
    ``Error``); ``topic`` is set on a message published to a topic (``recipient``
    is then empty: every subscriber on the receiving host gets it).
    """

    kind: _Id = ""
    body: Annotated[bytes, msgspec.Meta(max_length=MAX_BODY)] = b""
    topic: _Id = ""
    in_reply_to: _Id | None = None
    asks: bool = False  # the sender waits for an answer (``ctx.ask``)


class Locate(Message, frozen=True, kw_only=True):
    """A host asks the coordinator where agents live (an agent it has no address for)."""

    agent_ids: _Ids = []


class Located(Message, frozen=True, kw_only=True):
    """Where agents live: ``placement`` agent -> host, ``peers`` host -> peer endpoint."""

    placement: _Book = {}
    peers: _Book = {}


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One agent message as the round's log keeps it (``rounds/<n>/messages.json``).

    ``body`` is the message as JSON text, or empty with ``body_sha256`` set when the
    body was larger than the log keeps; ``error`` is the code of a failed ask.
    """

    msg_id: _Id
    correlation_id: _Id | None = None
    sender: _Id
    recipient: _Id = ""
    topic: _Id = ""
    kind: _Id
    body: _Text = ""
    body_sha256: _Id = ""
    size: _Bytes = 0
    error: _Id = ""
    at: _Real = 0.0


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's knowledge graph (``KnowledgeGraph.to_json``) and role state, as JSON text.

    ``None`` means unchanged (in ``StepDone``) or absent (in ``Step.restore``).
    """

    kg: _Text | None = None
    state: _Text | None = None


class KGNode(msgspec.Struct, frozen=True, kw_only=True):
    """A knowledge-graph node: its id, its level in the hierarchy and its attributes.

    ``level`` is one of ``goal``, ``subgoal``, ``step``, ``fact``
    (``swarm.knowledge.LEVELS``, checked where a delta is applied); attribute
    values are text, integers, finite floats or booleans (up to ``MAX_ENTRIES``).
    """

    id: _Id
    level: _Id = "fact"
    attrs: _Attrs = {}


class KGEdge(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A knowledge-graph edge from a node down to its child."""

    parent: _Id
    child: _Id


class KGDelta(Message, frozen=True, kw_only=True):
    """Nodes and edges added to a knowledge graph, stamped ``(clock, origin)``.

    The one type of a delta: ``swarm.knowledge`` makes, applies and merges
    these, and an agent sends them as they are. ``origin`` is the agent whose
    graph made the change, ``clock`` its Lamport clock (0 to ``MAX_CLOCK``); up
    to ``MAX_AGENTS`` nodes and edges.
    """

    origin: _Id = ""
    clock: Annotated[int, msgspec.Meta(ge=0, le=MAX_CLOCK)] = 0
    nodes: Annotated[list[KGNode], msgspec.Meta(max_length=MAX_AGENTS)] = []
    edges: Annotated[list[KGEdge], msgspec.Meta(max_length=MAX_AGENTS)] = []


class Commit(Message, frozen=True, kw_only=True):
    """Ask the lineage writer to commit files on a branch; file ``i`` is payload frame ``i``.

    Up to ``MAX_PAYLOAD_FRAMES`` files; paths up to 4,096 characters.
    """

    branch: _Id = ""
    paths: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=4096)]],
        msgspec.Meta(max_length=MAX_PAYLOAD_FRAMES),
    ] = []
    message: _Text = ""


class Committed(Message, frozen=True, kw_only=True):
    """The commit a ``Commit`` produced."""

    branch: _Id = ""
    commit: _Id = ""


# -- serving and training ------------------------------------------------------------


class ChatTurn(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One turn of a chat: who speaks (``system``, ``user`` or ``assistant``) and what."""

    role: Literal["system", "user", "assistant"]
    content: _Text


_Stop = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STOP_CHARS)]


class GenRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One generation: a prompt or chat, an adapter by content hash (``None`` = base model),
    sampling, and optionally the JSON schema the answer must match.

    Give ``prompt`` (raw text, continued as it is) or ``messages`` (a chat, rendered
    with the model's chat template, ending with the assistant's turn to speak), not
    both. Sampling: ``max_tokens`` 1 to ``MAX_TOKENS``; ``temperature`` 0 (greedy) to
    ``MAX_TEMPERATURE``; ``top_p`` in (0, 1]; ``seed`` 0 to ``MAX_SEED`` (``None``:
    the engine's); up to ``MAX_STOPS`` stop strings of 1 to ``MAX_STOP_CHARS``
    characters (not part of the answer); ``n`` samples, 1 to ``MAX_SAMPLES``.
    ``json_schema`` is a JSON schema as JSON text (up to ``MAX_SCHEMA`` characters;
    ``swarm.serving.structured.schema_for`` makes one from a msgspec type): every
    sample is then a JSON document matching it, or the request fails.
    """

    prompt: _Text = ""
    messages: Annotated[list[ChatTurn], msgspec.Meta(max_length=MAX_TURNS)] = []
    adapter: _Id | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS)] = 64
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TEMPERATURE)] = 0.0
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    seed: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEED)] | None = None
    stop: Annotated[list[_Stop], msgspec.Meta(max_length=MAX_STOPS)] = []
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_SAMPLES)] = 1
    json_schema: Annotated[str, msgspec.Meta(max_length=MAX_SCHEMA)] | None = None
    agent_id: _Id = ""


class GenOutput(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What one request produced: its ``n`` samples, why each stopped (``"stop"``,
    ``"length"`` or ``None``) and how many tokens were generated in all."""

    texts: Annotated[list[_Text], msgspec.Meta(min_length=1, max_length=MAX_SAMPLES)]
    finish_reasons: Annotated[list[_Id | None], msgspec.Meta(max_length=MAX_SAMPLES)] = []
    tokens: _Count = 0


class Generate(Message, frozen=True, kw_only=True):
    """A batch of generation requests for the model server (up to ``MAX_REQUESTS``)."""

    requests: Annotated[list[GenRequest], msgspec.Meta(max_length=MAX_REQUESTS)] = []


class Generated(Message, frozen=True, kw_only=True):
    """The outputs of a ``Generate``, one per request, in order."""

    outputs: Annotated[list[GenOutput], msgspec.Meta(max_length=MAX_REQUESTS)] = []

    @property
    def texts(self) -> list[str]:
        """The first sample of each request."""
        return [out.texts[0] for out in self.outputs]


class Example(msgspec.Struct, frozen=True, gc=False):
    """One example: a prompt, its reference completion, and the skill that made it.

    The one type of an example everywhere: what a skill draws (``swarm.skills``),
    an agent's training and held-out data, and an item of ``Train``. ``skill`` is
    empty for an example no skill made; a teacher's distilled answers say ``distill``.
    """

    prompt: _Text
    completion: _Text
    skill: _Id = ""


class Train(Message, frozen=True, kw_only=True):
    """Fine-tune an agent's LoRA adapter on examples, starting from ``base_adapter``.

    Up to ``MAX_EXAMPLES`` examples and ``MAX_ENTRIES`` settings; the settings the
    trainer reads are bounded by ``HYPER_BOUNDS`` (``steps`` up to 100,000, ...).
    """

    agent_id: _Id = ""
    base_adapter: _Id | None = None
    examples: Annotated[list[Example], msgspec.Meta(max_length=MAX_EXAMPLES)] = []
    hyper: _Hyper = {}

    def __post_init__(self) -> None:
        # msgspec turns this ValueError into the ValidationError of the decode
        for key, (low, high) in HYPER_BOUNDS.items():
            value = self.hyper.get(key)
            if value is None:
                continue
            if isinstance(value, str) or not low <= value <= high:
                raise ValueError(f"Train.hyper[{key!r}] must be a number in [{low}, {high}], "
                                 f"got {str(value)[:40]!r}")


class Trained(Message, frozen=True, kw_only=True):
    """The adapter (content hash) a ``Train`` produced, with training metrics."""

    agent_id: _Id = ""
    adapter: _Id = ""
    metrics: _Metrics = {}


_Weight = Annotated[float, msgspec.Meta(ge=-100.0, le=100.0)]


class Merge(Message, frozen=True, kw_only=True):
    """Merge adapters on the model server: ``student + weight * teacher`` (task arithmetic) or many.

    Adapters are content hashes in the machine's store; a weight is -100 to 100.
    With ``adapters`` (and one weight per adapter in ``weights``) the merge takes
    them all and ignores ``student_adapter``/``teacher_adapter``/``weight``.
    ``method``: one of peft's (``swarm.serving.merging.PEFT_METHODS``) or a
    robust rule over the adapters' updates (``mean``, ``median``,
    ``trimmed_mean``, ``clipped_mean``: ``ROBUST_RULES``; weights unused);
    ``density``: the share kept by ``ties``/``dare``/``magnitude_prune``.
    """

    agent_id: _Id = ""
    student_adapter: _Id = ""
    teacher_adapter: _Id = ""
    weight: _Weight = 1.0
    method: _Id = "svd"
    adapters: Annotated[tuple[_Id, ...], msgspec.Meta(max_length=MAX_ENTRIES)] = ()
    weights: Annotated[tuple[_Weight, ...], msgspec.Meta(max_length=MAX_ENTRIES)] = ()
    density: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.5


class Merged(Message, frozen=True, kw_only=True):
    """The adapter (content hash) a ``Merge`` produced."""

    agent_id: _Id = ""
    adapter: _Id = ""


class Error(Message, frozen=True, kw_only=True):
    """An error crossing a process boundary as data."""

    code: _Id = "error"
    reason: _Text = ""
    in_reply_to: _Id | None = None


# -- rounds: the coordinator drives hosts through the phases of a round ------


class AgentReport(msgspec.Struct, frozen=True):
    """One agent's state after its local step: adapter, held-out score, metrics.

    The one type of a report: ``Agent.local_update`` returns it, a host sends it
    in ``StepDone``, the coordinator, the protocol and the profiles read it.
    """

    agent_id: _Id
    adapter: _Id | None = None
    score: _Real = 0.0
    metrics: _Metrics = {}


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """One pair of an exchange step: who teaches whom, and the teacher's adapter."""

    teacher: _Id
    student: _Id
    teacher_adapter: _Id | None = None


class PairOutcome(msgspec.Struct, frozen=True):
    """What a student made of its teacher: scores before/after, adapter kept, parents.

    The one type of an outcome: ``Agent.learn_from`` and a protocol's ``exchange``
    return it, a host sends it in ``StepDone``, the coordinator records it.
    ``adapter`` is the student's adapter after the exchange (the candidate if
    ``accepted``, else the one it kept); ``parents`` (up to ``MAX_ENTRIES``
    content hashes) are what the candidate was made from. With several
    teachers a student sends one outcome per teacher: ``after`` is the score of
    that teacher's lesson alone (its reward), ``accepted`` whether the lesson
    went into what the student kept, ``adapter``/``kept_score`` what it kept.
    """

    student: _Id
    teacher: _Id
    before: _Real = 0.0
    after: _Real = 0.0
    adapter: _Id | None = None
    accepted: bool = False
    parents: Annotated[tuple[_Id, ...], msgspec.Meta(max_length=MAX_ENTRIES)] = ()
    #: the held-out score per skill of ``adapter`` (what the student holds afterwards)
    skills: _Metrics = {}
    #: the held-out score of ``adapter`` when it is neither ``after`` nor ``before``
    #: (several teachers: ``after`` is this teacher's lesson alone, the student kept a mix)
    kept_score: _Real | None = None

    @property
    def reward(self) -> float:
        """The student's change in held-out score."""
        return self.after - self.before


class Step(Message, frozen=True, kw_only=True):
    """Coordinator -> host: run ``phase`` (``local`` or ``exchange``) of ``round``.

    ``restore`` holds the knowledge graph and role state the lineage has of agents
    this host incarnation has not run yet; the host loads them before the step.
    """

    phase: _Id = "local"
    agent_ids: _Ids = []
    assignments: Annotated[list[Assignment], msgspec.Meta(max_length=MAX_AGENTS)] = []
    adapters: _Book = {}
    # what the lineage holds of agents the host has not run yet (a restarted host)
    restore: Annotated[dict[_Id, AgentState], msgspec.Meta(max_length=MAX_AGENTS)] = {}


class StepDone(Message, frozen=True, kw_only=True):
    """Host -> coordinator: the reports and outcomes of a step, and agents that failed.

    ``log`` is what the host's agents said during the step (the asker's side of each
    conversation); ``states`` the knowledge graphs and role states that changed.
    """

    phase: _Id = "local"
    reports: Annotated[list[AgentReport], msgspec.Meta(max_length=MAX_AGENTS)] = []
    outcomes: Annotated[list[PairOutcome], msgspec.Meta(max_length=MAX_AGENTS)] = []
    failed: Annotated[dict[_Id, _Text], msgspec.Meta(max_length=MAX_AGENTS)] = {}
    # messages the host sent and received since its last StepDone
    messages: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = 0
    # the agent messages its agents sent during the step, and what changed of their state
    log: Annotated[list[LogEntry], msgspec.Meta(max_length=MAX_AGENTS)] = []
    states: Annotated[dict[_Id, AgentState], msgspec.Meta(max_length=MAX_AGENTS)] = {}


class Status(Message, frozen=True, kw_only=True):
    """A client asks the coordinator for the swarm's status."""


class StatusReport(Message, frozen=True, kw_only=True):
    """The coordinator's status: members, round, last pairings and rewards, as JSON text."""

    json: Annotated[str, msgspec.Meta(max_length=64 << 20)] = "{}"


class Event(Message, frozen=True, kw_only=True):
    """What the coordinator publishes on its event stream: a topic and a JSON body.

    ``topic`` is the one subscribers filter on (``round``, ``pairs``,
    ``scores``, ``done``); it is also the message's first frame on the stream.
    """

    topic: _Id = ""
    json: Annotated[str, msgspec.Meta(max_length=64 << 20)] = "{}"


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Join, Welcome, Leave, Heartbeat, Ack, Profile, Pairing, Reward,
    AdapterOffer, AdapterRequest, AdapterChunk, AdapterAck, Chat, KGDelta,
    Commit, Committed, Generate, Generated, Train, Trained, Error,
    Step, StepDone, Status, StatusReport, Event, Merge, Merged, AgentMsg, Locate, Located, Choose,
)  # fmt: skip

AnyMessage = Union[  # noqa: UP007 (msgspec needs a real Union object here)
    Join, Welcome, Leave, Heartbeat, Ack, Profile, Pairing, Reward,
    AdapterOffer, AdapterRequest, AdapterChunk, AdapterAck, Chat, KGDelta,
    Commit, Committed, Generate, Generated, Train, Trained, Error,
    Step, StepDone, Status, StatusReport, Event, Merge, Merged, AgentMsg, Locate, Located, Choose,
]  # fmt: skip
