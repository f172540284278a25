"""The agents of a swarm, built deterministically from its config.

Coordinator and hosts read the same config, so both derive what they need of
an agent from it here and nothing of it travels: a host builds its agents
(``build_population``) and the skills a protocol draws from
(``resolve_skills``), the coordinator and the hosts look up any agent's skills
(``agent_skills``: profiles, distillation from a teacher).

Agent ids are ``<group>-<i>``. Each agent's local training data is drawn from
its group's skills with a generator seeded by the swarm seed and the agent's
index, so the same config always gives the same data (non-IID when groups
have different skills). Every agent is scored on one shared held-out mixture
of all the swarm's skills, with any prompt that occurs in some agent's
training data removed, so a score measures generalisation.

A file skill (the config's ``skills`` section, ``swarm.skills.files``) is a
finite pool: shuffled with the swarm seed, its held-out share (its even part
of ``swarm.heldout``) is set aside first, and the rest is dealt to the agents
whose groups name it, disjoint runs in population order, one example per
round-robin slot of the skill. A pool too small for what the config asks is a
``ConfigError`` (``swarm config check`` names the numbers), never a silently
smaller data set. Built-in skills draw exactly as they do without file skills.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from swarm.agents.base import AgentSpec
from swarm.config.rules import role_settings
from swarm.config.schema import SwarmConfig
from swarm.errors import ConfigError, RegistryError
from swarm.skills import (
    Example,
    FileSkill,
    Skill,
    deal,
    get_skill,
    heldout_quota,
    make_dataset,
    slot_counts,
)

__all__ = ["build_population", "agent_skills", "resolve_skills", "assign_hosts", "byzantine_ids"]


class _Pool(NamedTuple):
    """A file skill of the swarm, split: its held-out and its training share."""

    skill: FileSkill
    heldout: list[Example]
    train: list[Example]


def build_population(config: SwarmConfig) -> list[AgentSpec]:
    """Every agent of the swarm with its role, skills, data and LoRA settings.

    Raises:
        ConfigError: a group names an unknown skill or no skill at all; a file
            skill's pool is too small or its file unreadable (``config check``
            says so first).
    """
    _check_skills(config)
    seed = config.swarm.seed
    pools = _pools(config)
    runs = _dealt(config, pools)
    specs: list[tuple[str, str, str, list[str], list[Example]]] = []
    for index, (agent_id, g) in enumerate(_agents(config)):
        group = config.agents[g]
        rng = np.random.default_rng([seed, 1, index])
        data = _draw(group.skills, group.examples, rng, runs[index])
        specs.append((agent_id, group.role, group.name, group.skills, data))
    seen = {ex.prompt for *_, data in specs for ex in data}
    heldout = tuple(_heldout(config, pools, seen))
    lora = {g.name: asdict_lora(g.lora) for g in config.agents}
    settings = {g.name: role_settings(g) for g in config.agents}
    attackers = set(byzantine_ids(config))
    attack = config.byzantine.settings
    return [
        AgentSpec(agent_id=aid, role="byzantine" if aid in attackers else role, group=name,
                  skills=tuple(skills), train=tuple(data), heldout=heldout, hyper=lora[name],
                  settings=attack if aid in attackers else settings[name])
        for aid, role, name, skills, data in specs
    ]


def resolve_skills(config: SwarmConfig) -> dict[str, Skill]:
    """Every skill the agents name, by name; a file skill draws from its training share only.

    What a protocol draws fresh prompts of a skill from (``ctx.swarm_skills``:
    knexa's distillation), so it never asks for a held-out prompt.

    Raises:
        ConfigError: as ``build_population``.
    """
    _check_skills(config)
    pools = _pools(config)
    return {name: pools[name].skill.drawing(pools[name].train) if name in pools
            else get_skill(name) for name in _swarm_skills(config)}


def _check_skills(config: SwarmConfig) -> None:
    """Every group names a skill, each a file skill or a registered one (as the rules say)."""
    files = {s.name for s in config.skills}
    for i, group in enumerate(config.agents):
        if not group.skills:
            raise ConfigError(f"agents.{i}.skills: no skills")
        for name in group.skills:
            if name not in files:
                try:
                    get_skill(name)
                except RegistryError as exc:
                    raise ConfigError(f"agents.{i}.skills: {exc}") from None


def _swarm_skills(config: SwarmConfig) -> list[str]:
    return sorted({s for g in config.agents for s in g.skills})


def _pools(config: SwarmConfig) -> dict[str, _Pool]:
    """The file skills the agents name, each read and split with the swarm seed."""
    used = _swarm_skills(config)
    quota = heldout_quota(used, config.swarm.heldout)
    pools = {}
    for section in config.skills:
        if section.name in quota:
            skill = FileSkill.read(section.name, Path(section.file), section.description)
            pools[section.name] = _Pool(skill, *skill.split(quota[section.name],
                                                              config.swarm.seed))
    return pools


def _dealt(config: SwarmConfig, pools: dict[str, _Pool]) -> list[dict[str, Iterator[Example]]]:
    """Each agent's run of each file skill's training share, in population order."""
    demands: dict[str, list[int]] = {name: [] for name in pools}
    for _, g in _agents(config):
        counts = slot_counts(config.agents[g].skills, config.agents[g].examples)
        for name, wanted in demands.items():
            wanted.append(counts[name])
    dealt = {}
    for name, wanted in demands.items():
        try:
            dealt[name] = deal(pools[name].train, wanted)
        except ValueError as exc:
            raise ConfigError(f"skill {name!r}: {exc} (swarm config check says what fits)"
                              ) from None
    return [{name: iter(runs[i]) for name, runs in dealt.items()}
            for i in range(config.agent_count)]


def _draw(skills: list[str], n: int, rng: np.random.Generator,
          runs: dict[str, Iterator[Example]]) -> list[Example]:
    """``n`` examples round-robin over ``skills``, as ``make_dataset`` draws them; a file
    skill's slots take the agent's run of its pool (so built-in skills draw as before)."""
    made = {name: get_skill(name) for name in skills if name not in runs}
    order = (skills[i % len(skills)] for i in range(n))
    return [next(runs[name]) if name in runs else made[name].example(rng) for name in order]


def _heldout(config: SwarmConfig, pools: dict[str, _Pool], seen: set[str]) -> list[Example]:
    """The shared held-out mixture: built-in skills drawn as before, file skills' held-out shares.

    Prompts that occur in some agent's training data are dropped.
    """
    count = config.swarm.heldout - sum(len(p.heldout) for p in pools.values())
    builtin = [s for s in _swarm_skills(config) if s not in pools]
    drawn = make_dataset(builtin, count * 3, np.random.default_rng([config.swarm.seed, 2])
                         ) if builtin and count > 0 else []
    heldout = [ex for ex in drawn if ex.prompt not in seen][:count]
    heldout += [ex for name in sorted(pools) for ex in pools[name].heldout
                if ex.prompt not in seen]
    return heldout


def byzantine_ids(config: SwarmConfig) -> list[str]:
    """The agents ``byzantine.count`` turns into attackers: one per group in turn, last first.

    Raises:
        ConfigError: more attackers than agents.
    """
    count = config.byzantine.count
    if count > config.agent_count:
        raise ConfigError(f"byzantine.count: {count} attackers in a swarm of "
                          f"{config.agent_count} agents")
    left = [[f"{g.name}-{k}" for k in reversed(range(g.count))] for g in config.agents]
    chosen: list[str] = []
    while len(chosen) < count:
        for ids in left:
            if ids and len(chosen) < count:
                chosen.append(ids.pop(0))
    return chosen


def agent_skills(config: SwarmConfig) -> dict[str, tuple[str, ...]]:
    """Every agent's skills by id, as ``build_population`` gives them (without drawing data)."""
    return {agent_id: tuple(config.agents[g].skills) for agent_id, g in _agents(config)}


def _agents(config: SwarmConfig) -> Iterator[tuple[str, int]]:
    """Each agent's id and the index of its group, in population order."""
    for g, group in enumerate(config.agents):
        for k in range(group.count):
            yield f"{group.name}-{k}", g


def asdict_lora(section: object) -> dict[str, object]:
    """LoRA settings as a ``Train`` message's flat ``hyper`` (lists become comma-joined)."""
    import msgspec

    data: dict[str, object] = msgspec.to_builtins(section)
    return {k: ",".join(v) if isinstance(v, list) else v for k, v in data.items()}


def assign_hosts(specs: list[AgentSpec], hosts: int) -> list[list[AgentSpec]]:
    """Deal agents to ``hosts`` hosts round-robin (groups spread over hosts)."""
    return [specs[i::hosts] for i in range(hosts)]


