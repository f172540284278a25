"""The agents of a swarm, built deterministically from its config.

Coordinator and hosts read the same config, so both derive what they need of
an agent from it here and nothing of it travels: a host builds its agents
(``build_population``), the coordinator and the hosts look up any agent's
skills (``agent_skills``: profiles, distillation from a teacher).

Agent ids are ``<group>-<i>``. Each agent's local training data is drawn from
its group's skills with a generator seeded by the swarm seed and the agent's
index, so the same config always gives the same data (non-IID when groups
have different skills). Every agent is scored on one shared held-out mixture
of all the swarm's skills, with any prompt that occurs in some agent's
training data removed, so a score measures generalisation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from swarm.agents.base import AgentSpec
from swarm.config.rules import role_settings
from swarm.config.schema import SwarmConfig
from swarm.errors import ConfigError
from swarm.skills import Example, make_dataset, skill_names

__all__ = ["build_population", "agent_skills", "assign_hosts", "byzantine_ids"]


def build_population(config: SwarmConfig) -> list[AgentSpec]:
    """Every agent of the swarm with its role, skills, data and LoRA settings.

    Raises:
        ConfigError: a group names an unknown skill or no skill at all.
    """
    known = set(skill_names())
    for i, group in enumerate(config.agents):
        bad = [s for s in group.skills if s not in known]
        if bad or not group.skills:
            what = f"unknown skill(s) {bad}" if bad else "no skills"
            raise ConfigError(f"agents.{i}.skills: {what} (known: {', '.join(sorted(known))})")
    seed = config.swarm.seed
    specs: list[tuple[str, str, str, list[str], list[Example]]] = []
    for index, (agent_id, g) in enumerate(_agents(config)):
        group = config.agents[g]
        rng = np.random.default_rng([seed, 1, index])
        data = make_dataset(group.skills, group.examples, rng)
        specs.append((agent_id, group.role, group.name, group.skills, data))
    seen = {ex.prompt for *_, data in specs for ex in data}
    all_skills = sorted({s for g in config.agents for s in g.skills})
    pool = make_dataset(all_skills, config.swarm.heldout * 3, np.random.default_rng([seed, 2]))
    heldout = tuple([ex for ex in pool if ex.prompt not in seen][: config.swarm.heldout])
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


