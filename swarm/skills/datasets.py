"""Datasets drawn from skills: seeded mixtures, train/test splits, IID and non-IID shards.

The same seed always gives the same data. A skill is named (a registered one)
or given as a ``Skill`` (a config's file skill, ``swarm.skills.files``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swarm.skills.registry import Skill, get_skill
from swarm.wire.messages import Example

__all__ = ["make_dataset", "train_test_split", "split_iid", "split_by_skill", "split_dirichlet"]


def make_dataset(skills: Sequence[str | Skill], n: int, rng: np.random.Generator
                 ) -> list[Example]:
    """``n`` examples drawn round-robin from ``skills`` (names or ``Skill``s), in a seeded order.

    Raises:
        RegistryError: a skill name is unknown.
        ValueError: ``skills`` is empty or ``n`` is negative.
    """
    if not skills:
        raise ValueError("make_dataset needs at least one skill")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    resolved = _resolve(skills)
    return [resolved[i % len(resolved)].example(rng) for i in range(n)]


def _resolve(skills: Sequence[str | Skill]) -> list[Skill]:
    """Each of ``skills`` as a ``Skill``: a name is looked up in the registry.

    Raises:
        RegistryError: a name is unknown.
    """
    return [s if isinstance(s, Skill) else get_skill(s) for s in skills]


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
    skills: Sequence[str | Skill], parts: int, n_per_part: int, rng: np.random.Generator
) -> list[list[Example]]:
    """Non-IID shards: part ``k`` holds only skill ``skills[k % len(skills)]``."""
    _check_parts(parts)
    return [make_dataset([skills[k % len(skills)]], n_per_part, rng) for k in range(parts)]


def split_dirichlet(
    skills: Sequence[str | Skill],
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
    resolved = _resolve(skills)
    shards = []
    for _ in range(parts):
        mix = rng.dirichlet(np.full(len(resolved), alpha))
        picks = rng.choice(len(resolved), size=n_per_part, p=mix)
        shards.append([resolved[int(i)].example(rng) for i in picks])
    return shards


def _check_parts(parts: int) -> None:
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
