"""The built-in skills: procedurally generated, seeded tasks a tiny model learns fast.

The formats are chosen for the tiny model's tokenizer: letters are separated
by spaces, so each letter is one token (``" a"``), and digits are always one
token each. Every prompt ends with ``" ="`` and every completion starts with a
space, so the prompt and completion token sequences concatenate exactly as the
prompt and the generated answer do at serving time::

    reverse: c a f =   ->  " f a c"
    sort: c a f =      ->  " a c f"
    add: 12 + 7 =      ->  " 19"
    count a: c a b a = ->  " 2"

Importing this module registers the four (``swarm.skills`` does so).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from swarm.skills.registry import Skill, register_skill

__all__ = ["LETTERS", "BUILTIN_SKILLS"]

LETTERS = "abcdefgh"
"""The alphabet of the letter skills: small enough for a tiny model to learn fast."""


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


BUILTIN_SKILLS: tuple[Skill, ...] = (
    Skill("reverse", _reverse, "reverse 3-5 spaced letters"),
    Skill("sort", _sort, "sort 3-5 spaced letters alphabetically"),
    Skill("add", _add, "add two numbers below 50"),
    Skill("count", _count, "count one letter's occurrences in 3-6 letters"),
)
"""The four built-in skills, registered under their names."""

for _skill in BUILTIN_SKILLS:
    register_skill(_skill)
