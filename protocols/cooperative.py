"""``cooperative``: LLM agents that answer questions no one of them can answer alone.

After DAMCS (hierarchical knowledge-graph memory and structured communication
between cooperating LLM agents). A seeded world of facts
(``swarm.protocols.world``) is dealt out non-IID: each agent knows one
relation's facts about some subjects. Every round each ``cooperator`` agent
answers its held-out questions (one or two hops):

1. for each hop it looks the fact up in its knowledge graph; missing, it
   asks partners with a typed ``FactQuery`` and merges their ``FactReply``
   into its graph (goal ``world`` -> subgoal ``relation:<r>`` / ``learned`` ->
   fact nodes);
2. whom to ask is the role setting ``partners``: ``matchmaker`` (the
   coordinator's matchmaker chooses ``k`` partners for the hop's query from
   the profiles agents publish: what each knows, embedded with the real
   all-MiniLM-L6-v2 model plus its subjects' names hashed; ``matchmaker.kind:
   random`` makes it the random-partners baseline), ``broadcast`` (everyone)
   or ``none`` (no sharing);
3. it answers with its LLM from the facts it found, as structured output: a
   JSON object whose ``answer`` is one of the entities of the answer's kind
   that it knows of.

A partner's answer is rewarded 1 if it held the fact asked for, else 0, with
the query's context: the matchmaker's query model learns whom to ask. The
round's score is the share of questions answered right. Questions are drawn
afresh each round; what an agent learnt stays in its graph (and in the
lineage), so later rounds need fewer messages.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import numpy as np

from swarm.agents.base import Agent
from swarm.agents.registry import role
from swarm.agents.talk import handles, message
from swarm.matching.query import unit
from swarm.models.embedding import EMBEDDING_DIM
from swarm.protocols.base import Protocol
from swarm.protocols.registry import protocol
from swarm.protocols.world import Fact, Question, World, make_world
from swarm.settings import Settings
from swarm.wire.messages import AgentReport

if TYPE_CHECKING:
    from swarm.agents.context import AgentContext

__all__ = ["Cooperative", "Cooperator", "CooperatorSettings", "FactQuery", "FactReply",
           "PROFILE_DIM", "profile_vector", "query_vector"]

HASH_DIM = 256
PROFILE_DIM = EMBEDDING_DIM + HASH_DIM
_HOP_TEXT = {"lives_in": "Which city does {s} live in?", "located_in": "In which country is {s}?",
             "works_for": "Which company does {s} work for?",
             "based_in": "In which city is {s} based?"}
_KIND_OF = {("lives_in", 0): "person", ("lives_in", 1): "city", ("located_in", 0): "city",
            ("located_in", 1): "country", ("works_for", 0): "person",
            ("works_for", 1): "company", ("based_in", 0): "company", ("based_in", 1): "city"}


@message("FactQuery")
class FactQuery(msgspec.Struct, frozen=True):
    """What does the recipient know of ``relation(subject, ?)``; ``text`` is the hop's question."""

    relation: str
    subject: str
    text: str = ""


@message("FactReply")
class FactReply(msgspec.Struct, frozen=True):
    """The facts the recipient knows that answer a ``FactQuery`` (none: it does not know)."""

    facts: list[tuple[str, str, str, str]] = []  # (relation, subject, object, text)


class CooperatorSettings(Settings, frozen=True):
    """The ``cooperator`` role's settings (``agents[*].settings``)."""

    partners: Literal["matchmaker", "broadcast", "none"] = "matchmaker"
    k: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    questions: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    world_seed: Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)] = 0
    people: Annotated[int, msgspec.Meta(ge=4, le=10_000)] = 24
    max_tokens: Annotated[int, msgspec.Meta(ge=4, le=256)] = 32
    ask_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 120.0


@protocol("cooperative")
class Cooperative(Protocol):
    """No adapter exchange: agents talk inside their local step; profiles are theirs."""

    settings_schema = None

    def profile_dim(self) -> int | None:
        return PROFILE_DIM


def _hashed(names: Sequence[str]) -> np.ndarray:
    out = np.zeros(HASH_DIM)
    for name in names:
        out[int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % HASH_DIM] += 1
    return unit(out)


def profile_vector(texts: Sequence[str], subjects: Sequence[str], embed: Any) -> np.ndarray:
    """What an agent knows: its facts' mean embedding and its subjects' hashed names."""
    emb = unit(np.asarray(embed(list(texts))).mean(axis=0)) if texts else np.zeros(EMBEDDING_DIM)
    out: np.ndarray = np.concatenate([emb, _hashed(subjects)]) / np.sqrt(2.0)
    return out


def query_vector(text: str, subject: str, embed: Any) -> np.ndarray:
    """A hop's query in the profiles' space: its question embedded, its subject hashed."""
    out: np.ndarray = np.concatenate([np.asarray(embed([text]))[0], _hashed([subject])])
    out /= np.sqrt(2.0)
    return out


@role("cooperator")
class Cooperator(Agent):
    """Answers world questions with facts from its graph and from the partners it asks."""

    __slots__ = ("world", "asked", "right")
    settings_schema = CooperatorSettings
    trains = False
    learns = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.world: World | None = None
        self.asked = 0  # agent messages sent this round
        self.right: list[str] = []

    # -- the round -------------------------------------------------------------------

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        settings: CooperatorSettings = self.settings or CooperatorSettings()
        world = self._world(ctx, settings)
        self._learn_own(world)
        embed = await _embedder()
        facts = self._facts(lambda attrs: attrs.get("source") == self.id)
        await ctx.set_profile(profile_vector([f.text for f in facts],
                                             [f.subject for f in facts], embed).tolist())
        self.asked = 0
        questions = world.questions(self.id, settings.questions, settings.world_seed,
                                    max(ctx.round, 0))
        answers = await asyncio.gather(*(self._solve(ctx, settings, q, embed)
                                         for q in questions))
        self.right = [q.text for q, a in zip(questions, answers, strict=True) if a == q.answer]
        self.score = len(self.right) / len(questions)
        self.history.append(self.score)
        return AgentReport(agent_id=self.id, score=self.score,
                           metrics={"score": self.score, "asked": float(self.asked),
                                    "facts": float(len(self._facts(lambda a: True)))})

    async def _solve(self, ctx: AgentContext, settings: CooperatorSettings, q: Question,
                     embed: Any) -> str | None:
        found: list[Fact] = []
        subject = q.entity
        for rel in q.hops:
            fact = self._lookup(rel, subject) or await self._ask(ctx, settings, rel, subject,
                                                                 embed)
            if fact is None:
                break
            found.append(fact)
            subject = fact.object
        return await self._answer(ctx, settings, q, found)

    async def _ask(self, ctx: AgentContext, settings: CooperatorSettings, rel: str,
                   subject: str, embed: Any) -> Fact | None:
        text = _HOP_TEXT[rel].format(s=subject)
        context: list[float] = []
        if settings.partners == "none":
            return None
        if settings.partners == "broadcast":
            partners = [a for a in ctx.swarm_agents if a != self.id]
        else:
            context = query_vector(text, subject, embed).tolist()
            partners = await ctx.choose(context=context, k=settings.k)
        replies = await asyncio.gather(
            *(ctx.ask(p, FactQuery(relation=rel, subject=subject, text=text),
                      timeout=settings.ask_timeout_s) for p in partners),
            return_exceptions=True)
        self.asked += 2 * len(partners)
        best: Fact | None = None
        for partner, reply in zip(partners, replies, strict=True):
            got = [Fact(*f) for f in reply.facts] if isinstance(reply, FactReply) else []
            hit = next((f for f in got if (f.relation, f.subject) == (rel, subject)), None)
            if hit is not None:
                self._remember(hit, partner)
                best = best or hit
            if context:
                await ctx.reward(partner, 1.0 if hit else 0.0, context=context)
        return best

    async def _answer(self, ctx: AgentContext, settings: CooperatorSettings, q: Question,
                      found: list[Fact]) -> str | None:
        options = sorted(self._entities(q.answer_kind))
        if not options:
            return None
        schema = msgspec.defstruct("WorldAnswer", [("answer", Literal[tuple(options)])])
        facts = "\n".join(f"- {f.text}" for f in found) or "- (none)"
        chat = [{"role": "system", "content": "Answer the question from the facts. Reply with "
                                              "JSON: {\"answer\": NAME}."},
                {"role": "user", "content": f"Facts:\n{facts}\n\nQuestion: {q.text}"}]
        reply: Any = await ctx.generate(chat, schema=schema, max_tokens=settings.max_tokens)
        return str(reply.answer)

    # -- the knowledge graph ---------------------------------------------------------

    def _world(self, ctx: AgentContext, settings: CooperatorSettings) -> World:
        if self.world is None:
            self.world = make_world(sorted(ctx.swarm_agents), settings.world_seed,
                                    people=settings.people)
        return self.world

    def _learn_own(self, world: World) -> None:
        if "world" not in self.kg.graph:
            self.kg.add("world", "goal", text="answer questions about the world")
        for fact in world.shards[self.id]:
            if _fact_id(fact) not in self.kg.graph:
                self._remember(fact, self.id)

    def _remember(self, fact: Fact, source: str) -> None:
        parent = f"relation:{fact.relation}" if source == self.id else "learned"
        if parent not in self.kg.graph:
            self.kg.add(parent, "subgoal", parent="world")
        if _fact_id(fact) not in self.kg.graph:
            self.kg.add(_fact_id(fact), "fact", parent=parent, relation=fact.relation,
                        subject=fact.subject, object=fact.object, text=fact.text, source=source)

    def _facts(self, keep: Any) -> list[Fact]:
        return [Fact(a["relation"], a["subject"], a["object"], a["text"])
                for _, a in sorted(self.kg.graph.nodes(data=True))
                if a.get("level") == "fact" and keep(a)]

    def _lookup(self, rel: str, subject: str) -> Fact | None:
        attrs = self.kg.graph.nodes.get(f"{rel}|{subject}")
        if attrs is None:
            return None
        return Fact(attrs["relation"], attrs["subject"], attrs["object"], attrs["text"])

    def _entities(self, kind: str) -> set[str]:
        out: set[str] = set()
        for f in self._facts(lambda a: True):
            for pos, name in ((0, f.subject), (1, f.object)):
                if _KIND_OF[(f.relation, pos)] == kind:
                    out.add(name)
        return out

    @handles(FactQuery)
    async def on_query(self, ctx: AgentContext, sender: str, q: FactQuery) -> FactReply:
        fact = self._lookup(q.relation, q.subject)
        if fact is None:
            return FactReply()
        return FactReply(facts=[(fact.relation, fact.subject, fact.object, fact.text)])

    def save_state(self) -> Any:
        return {"score": self.score, "history": self.history}

    def load_state(self, state: Any) -> None:
        self.score = float(state.get("score", 0.0))
        self.history = [float(x) for x in state.get("history", [])]


def _fact_id(fact: Fact) -> str:
    return f"{fact.relation}|{fact.subject}"


async def _embedder() -> Any:
    """The process's embedder's ``embed`` (loaded in a thread: the loop keeps serving)."""
    from swarm.models.embedding import Embedder

    model = await asyncio.to_thread(Embedder.shared)
    return model.embed
