"""A seeded world of facts, sharded across agents so that no agent can answer alone.

Entities are made-up names (people, cities, countries, companies) and four
relations link them::

    lives_in(person, city)      "Ilsa Vorn lives in Tarsk."
    located_in(city, country)   "Tarsk is a city in Quenmar."
    works_for(person, company)  "Ilsa Vorn works for Brightwell."
    based_in(company, city)     "Brightwell is based in Tarsk."

Questions take one hop (``lives_in``: "Which city does Ilsa Vorn live in?")
or two (``lives_in`` then ``located_in``: "In which country does Ilsa Vorn
live?"). The facts are dealt out non-IID: each agent holds facts of one
relation (agents ``i`` and ``i + 4`` share a relation), and within a
relation each of its agents holds the facts of its own subjects. An agent's
held-out questions always need at least one fact another agent holds.

Everything is a pure function of ``(seed, agents)``, so every host and the
bench derive the same world without any message carrying it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Fact", "Question", "World", "RELATIONS", "make_world"]

RELATIONS = ("lives_in", "located_in", "works_for", "based_in")
#: Relation -> (subject kind, object kind, the fact's sentence).
_SHAPES = {
    "lives_in": ("person", "city", "{s} lives in {o}."),
    "located_in": ("city", "country", "{s} is a city in {o}."),
    "works_for": ("person", "company", "{s} works for {o}."),
    "based_in": ("company", "city", "{s} is based in {o}."),
}
#: Question kinds: the hops (relations) and the question's text.
_QUESTIONS = {
    "city_of_person": (("lives_in",), "Which city does {e} live in?"),
    "country_of_city": (("located_in",), "In which country is {e}?"),
    "company_of_person": (("works_for",), "Which company does {e} work for?"),
    "city_of_company": (("based_in",), "In which city is {e} based?"),
    "country_of_person": (("lives_in", "located_in"), "In which country does {e} live?"),
    "hq_city_of_employer": (("works_for", "based_in"),
                            "In which city is the company that {e} works for based?"),
}
_SYLLABLES = ("ka", "ri", "to", "mel", "zan", "or", "vi", "qu", "sel", "dra", "mon", "thi",
              "bel", "ur", "fen", "lo", "gar", "nys", "pal", "cor", "eth", "wen", "sto", "ix")


@dataclass(frozen=True)
class Fact:
    """One true statement: ``relation(subject, object)`` and its sentence."""

    relation: str
    subject: str
    object: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question about ``entity`` answered by following ``hops``; its answer and kind."""

    kind: str
    entity: str
    hops: tuple[str, ...]
    text: str
    answer: str
    answer_kind: str


@dataclass(frozen=True)
class World:
    """Every fact, each agent's shard, and the entities of each kind."""

    facts: tuple[Fact, ...]
    shards: dict[str, tuple[Fact, ...]]
    entities: dict[str, tuple[str, ...]]

    def fact(self, relation: str, subject: str) -> Fact | None:
        """The fact of ``relation`` about ``subject`` (every subject has exactly one)."""
        for f in self.facts:
            if f.relation == relation and f.subject == subject:
                return f
        return None

    def holder(self, relation: str, subject: str) -> str:
        """The agent whose shard holds that fact."""
        return next(a for a, shard in self.shards.items()
                    if any(f.relation == relation and f.subject == subject for f in shard))

    def questions(self, agent: str, count: int, seed: int, round: int = 0) -> list[Question]:
        """``count`` questions for ``agent`` in ``round`` (fresh ones each round), each
        needing a fact it does not hold."""
        rng = np.random.default_rng([seed, 7, sorted(self.shards).index(agent), round])
        own = {(f.relation, f.subject) for f in self.shards[agent]}
        out: list[Question] = []
        kinds = sorted(_QUESTIONS)
        for _ in range(count * 50):
            if len(out) == count:
                break
            kind = kinds[int(rng.integers(len(kinds)))]
            hops, template = _QUESTIONS[kind]
            first = _SHAPES[hops[0]][0]
            entity = self.entities[first][int(rng.integers(len(self.entities[first])))]
            chain, subject = [], entity
            for rel in hops:
                fact = self.fact(rel, subject)
                assert fact is not None
                chain.append(fact)
                subject = fact.object
            if all((f.relation, f.subject) in own for f in chain):
                continue  # it could answer alone
            text = template.format(e=entity)
            if any(q.text == text for q in out):
                continue
            out.append(Question(kind, entity, hops, text, chain[-1].object,
                                _SHAPES[hops[-1]][1]))
        return out


def _names(rng: np.random.Generator, count: int, parts: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        words = []
        for _ in range(parts):
            n = int(rng.integers(2, 4))
            word = "".join(_SYLLABLES[int(rng.integers(len(_SYLLABLES)))] for _ in range(n))
            words.append(word.capitalize())
        name = " ".join(words)
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def make_world(agents: list[str], seed: int, people: int = 24, cities: int = 8,
               countries: int = 4, companies: int = 8) -> World:
    """The world of ``seed``, dealt out to ``agents`` (sorted; at least 4).

    Each agent holds one relation's facts: agent ``i`` (in sorted order) holds
    relation ``i % 4``, and the agents of one relation split its subjects
    between them round-robin.
    """
    if len(agents) < len(RELATIONS):
        raise ValueError(f"the cooperative world needs at least {len(RELATIONS)} agents, "
                         f"got {len(agents)}")
    rng = np.random.default_rng([seed, 3])
    taken: set[str] = set()
    entities = {"person": tuple(_names(rng, people, 2, taken)),
                "city": tuple(_names(rng, cities, 1, taken)),
                "country": tuple(_names(rng, countries, 1, taken)),
                "company": tuple(_names(rng, companies, 1, taken))}
    facts = []
    for rel in RELATIONS:
        skind, okind, template = _SHAPES[rel]
        for s in entities[skind]:
            o = entities[okind][int(rng.integers(len(entities[okind])))]
            facts.append(Fact(rel, s, o, template.format(s=s, o=o)))
    order = sorted(agents)
    shards: dict[str, list[Fact]] = {a: [] for a in order}
    for r, rel in enumerate(RELATIONS):
        holders = [a for i, a in enumerate(order) if i % len(RELATIONS) == r]
        subjects = entities[_SHAPES[rel][0]]
        for j, s in enumerate(subjects):
            fact = next(f for f in facts if f.relation == rel and f.subject == s)
            shards[holders[j % len(holders)]].append(fact)
    return World(tuple(facts), {a: tuple(f) for a, f in shards.items()}, entities)
