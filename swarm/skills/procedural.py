"""Procedurally generated skills: the synthetic data agents learn and are scored on.

A ``Skill`` turns a seeded ``numpy.random.Generator`` into ``Example``s
(prompt, completion). The formats are chosen for the tiny model's tokenizer:
letters are separated by spaces, so each letter is one token (``" a"``), and
digits are always one token each. Every prompt ends with ``" ="`` and every
completion starts with a space, so the prompt and completion token sequences
concatenate exactly as the prompt and the generated answer do at serving time::

    reverse: c a f =   ->  " f a c"
    sort: c a f =      ->  " a c f"
    add: 12 + 7 =      ->  " 19"
    count a: c a b a = ->  " 2"

Skills live in a registry (``register_skill``, ``get_skill``); a name
registered twice is an error. The same seed always gives the same data.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from swarm.errors import RegistryError
from swarm.wire.messages import Example

__all__ = [
    "Example",
    "Skill",
    "LETTERS",
    "register_skill",
    "get_skill",
    "skill_names",
    "make_dataset",
    "split_iid",
    "split_by_skill",
    "split_dirichlet",
    "train_test_split",
    "exact_match",
    "evaluate",
    "evaluate_by_skill",
]

LETTERS = "abcdefgh"
"""The alphabet of the letter skills: small enough for a tiny model to learn fast."""


@dataclass(frozen=True)
class Skill:
    """A named generator of examples: ``make(rng) -> (prompt, completion)``."""

    name: str
    make: Callable[[np.random.Generator], tuple[str, str]]
    description: str = ""

    def example(self, rng: np.random.Generator) -> Example:
        """Draw one example."""
        prompt, completion = self.make(rng)
        return Example(prompt, completion, self.name)

    def examples(self, n: int, rng: np.random.Generator) -> list[Example]:
        """Draw ``n`` examples."""
        return [self.example(rng) for _ in range(n)]


_SKILLS: dict[str, Skill] = {}


def register_skill(skill: Skill) -> Skill:
    """Add ``skill`` to the registry.

    Raises:
        RegistryError: the name is taken by another skill or is not an identifier.
    """
    if not skill.name.isidentifier():
        raise RegistryError(f"skill name {skill.name!r} must be a Python identifier")
    known = _SKILLS.get(skill.name)
    if known is not None and known is not skill:
        raise RegistryError(f"skill {skill.name!r} is already registered")
    _SKILLS[skill.name] = skill
    return skill


def get_skill(name: str) -> Skill:
    """The skill registered as ``name``.

    Raises:
        RegistryError: unknown name (the message names a close one and lists the known ones).
    """
    try:
        return _SKILLS[name]
    except KeyError:
        close = difflib.get_close_matches(name, skill_names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RegistryError(
            f"unknown skill {name!r}{hint} (known: {', '.join(skill_names())})"
        ) from None


def skill_names() -> list[str]:
    """Every registered skill name, sorted."""
    return sorted(_SKILLS)


def _letters(rng: np.random.Generator, low: int = 3, high: int = 5) -> list[str]:
    count = int(rng.integers(low, high + 1))
    return [LETTERS[i] for i in rng.integers(0, len(LETTERS), size=count)]


def _spaced(items: Iterable[str]) -> str:
    return "".join(" " + item for item in items)


def _reverse(rng: np.random.Generator) -> tuple[str, str]:
    word = _letters(rng)
    return f"reverse:{_spaced(word)} =", _spaced(reversed(word))


def _sort(rng: np.random.Generator) -> tuple[str, str]:
    word = _letters(rng)
    return f"sort:{_spaced(word)} =", _spaced(sorted(word))


def _add(rng: np.random.Generator) -> tuple[str, str]:
    a, b = (int(x) for x in rng.integers(0, 50, size=2))
    return f"add: {a} + {b} =", f" {a + b}"


def _count(rng: np.random.Generator) -> tuple[str, str]:
    word = _letters(rng, 3, 6)
    # Mostly a letter that occurs; sometimes any letter, so 0 is a possible answer.
    pool = word if rng.random() < 0.8 else list(LETTERS)
    target = pool[int(rng.integers(0, len(pool)))]
    return f"count {target}:{_spaced(word)} =", f" {word.count(target)}"


for _skill in (
    Skill("reverse", _reverse, "reverse 3-5 spaced letters"),
    Skill("sort", _sort, "sort 3-5 spaced letters alphabetically"),
    Skill("add", _add, "add two numbers below 50"),
    Skill("count", _count, "count one letter's occurrences in 3-6 letters"),
):
    register_skill(_skill)


def make_dataset(skills: Sequence[str], n: int, rng: np.random.Generator) -> list[Example]:
    """``n`` examples drawn round-robin from ``skills`` (by name), in a seeded order.

    Raises:
        RegistryError: a skill name is unknown.
        ValueError: ``skills`` is empty or ``n`` is negative.
    """
    if not skills:
        raise ValueError("make_dataset needs at least one skill")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    resolved = [get_skill(name) for name in skills]
    return [resolved[i % len(resolved)].example(rng) for i in range(n)]


def train_test_split(
    examples: Sequence[Example], test_fraction: float, rng: np.random.Generator
) -> tuple[list[Example], list[Example]]:
    """Shuffle and split; test examples whose prompt also occurs in train are dropped.

    So a held-out score measures generalisation, never memorisation.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = rng.permutation(len(examples))
    cut = len(examples) - int(round(len(examples) * test_fraction))
    train = [examples[i] for i in order[:cut]]
    seen = {ex.prompt for ex in train}
    test = [examples[i] for i in order[cut:] if examples[i].prompt not in seen]
    return train, test


def split_iid(
    examples: Sequence[Example], parts: int, rng: np.random.Generator
) -> list[list[Example]]:
    """Shuffle and deal ``examples`` into ``parts`` near-equal shards."""
    _check_parts(parts)
    order = rng.permutation(len(examples))
    return [[examples[i] for i in order[k::parts]] for k in range(parts)]


def split_by_skill(
    skills: Sequence[str], parts: int, n_per_part: int, rng: np.random.Generator
) -> list[list[Example]]:
    """Non-IID shards: part ``k`` holds only skill ``skills[k % len(skills)]``."""
    _check_parts(parts)
    return [make_dataset([skills[k % len(skills)]], n_per_part, rng) for k in range(parts)]


def split_dirichlet(
    skills: Sequence[str],
    parts: int,
    n_per_part: int,
    alpha: float,
    rng: np.random.Generator,
) -> list[list[Example]]:
    """Non-IID shards whose skill mix is drawn from Dirichlet(``alpha``) per part.

    Small ``alpha`` (0.1) gives each part mostly one skill; large (100) is near IID.
    """
    _check_parts(parts)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    resolved = [get_skill(name) for name in skills]
    shards = []
    for _ in range(parts):
        mix = rng.dirichlet(np.full(len(resolved), alpha))
        picks = rng.choice(len(resolved), size=n_per_part, p=mix)
        shards.append([resolved[int(i)].example(rng) for i in picks])
    return shards


def _check_parts(parts: int) -> None:
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")


def exact_match(pred: str, target: str) -> bool:
    """Whether a generated answer equals the reference, ignoring surrounding and repeated spaces."""
    return pred.split() == target.split()


def evaluate(
    generate_fn: Callable[[list[str]], list[str]], examples: Sequence[Example]
) -> float:
    """Exact-match accuracy of ``generate_fn`` (prompts -> completions) on ``examples``.

    Returns 0.0 for no examples.
    """
    if not examples:
        return 0.0
    preds = generate_fn([ex.prompt for ex in examples])
    if len(preds) != len(examples):
        raise ValueError(f"generate_fn returned {len(preds)} answers for {len(examples)} prompts")
    hits = sum(exact_match(p, ex.completion) for p, ex in zip(preds, examples, strict=True))
    return hits / len(examples)


def evaluate_by_skill(
    generate_fn: Callable[[list[str]], list[str]], examples: Sequence[Example]
) -> dict[str, float]:
    """Exact-match accuracy per skill name."""
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.skill, []).append(ex)
    return {name: evaluate(generate_fn, group) for name, group in sorted(groups.items())}
