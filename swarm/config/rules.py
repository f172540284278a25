"""Rules a config must keep that no field type can say: checked before anything starts.

Each of these once passed ``swarm config check`` and failed at run time:
names that become git branches (``agent/<group>-<i>``) but that git refuses,
two groups that give the same agent ids, a backend, matchmaker, protocol,
role or skill that no registry knows (nor the config's ``skills`` section),
a file skill whose file is malformed or too small for the examples the config
asks of it, ports past 65535, a path (``swarm.lineage``,
``model.adapter_store``) with a placeholder other than ``{name}`` (``KeyError``
at start) or with attribute access in it (``{name.__class__}``, which
``str.format`` evaluates). ``config_problems``
returns one line per problem in the style of the schema's own errors: the
key, the bad value, what is allowed.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from swarm.config.choices import CHOICES
from swarm.config.explain import explain
from swarm.errors import ConfigError, LineageError, RegistryError
from swarm.lineage.names import check_id

if TYPE_CHECKING:
    from swarm.config.schema import AgentGroup, SwarmConfig
    from swarm.skills import FileSkill

__all__ = ["MAX_AGENTS", "MAX_EXAMPLES", "config_problems", "agent_ids", "name_problem", "path_problem",
           "role_settings"]

MAX_AGENTS = 4096
"""Agents in one swarm, over all groups: every one is a process-wide branch and a LoRA slot."""

MAX_EXAMPLES = 1_000_000
"""Training examples over all agents: the coordinator and hosts hold them all in memory."""

_PLACEHOLDERS = ("name",)


def config_problems(config: SwarmConfig) -> list[str]:
    """Every cross-field problem of an already type-checked config, one line each."""
    problems: list[str] = []
    problems += _name_problems(config)
    problems += _agent_id_problems(config)
    problems += _registry_problems(config)
    problems += _skill_file_problems(config)
    problems += _port_problems(config)
    problems += _model_problems(config)
    paths = {"swarm.lineage": config.swarm.lineage, "model.adapter_store": config.model.adapter_store}
    for key, template in paths.items():
        problem = path_problem(template, _PLACEHOLDERS) if template is not None else None
        if problem:
            problems.append(f"{key}: {problem}")
    return problems


def _model_problems(config: SwarmConfig) -> list[str]:
    """``model.path`` must be ``tiny``, a named local model, a model folder or a hub id
    (with the ``openai`` backend anything: the name the server serves)."""
    from swarm.models.local import LOCAL_MODELS, is_hub_id

    name = config.model.path
    if name == "tiny" or name in LOCAL_MODELS.names() or config.model.backend == "openai":
        return []
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            return [f"model.path: {folder} holds no config.json (not a Hugging Face model folder)"]
        return []
    if is_hub_id(name) and not folder.exists() and not folder.parent.is_dir():
        return []  # org/name, and no folder org/ here that would make it a mistyped path
    return [f"model.path: {name!r} is not a folder, a local model "
            f"({', '.join(LOCAL_MODELS.names())}, tiny) or a hub id (org/name)"]


def agent_ids(group_name: str, count: int) -> list[str]:
    """The ids of a group's agents (``<group>-<i>``), as ``swarm.runtime.population`` makes them."""
    return [f"{group_name}-{k}" for k in range(count)]


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a git branch component or a path part, or ``None``.

    The schema already limits names to letters, digits, ``_ . -``; git also
    refuses ``..``, a leading ``.``, a trailing ``.lock``; a leading ``-`` reads
    as an option on every command line that takes the name.
    """
    if name.startswith("-"):
        return "must not start with '-'"
    try:
        check_id("name", name)  # the lineage's own rule for the ids it is given
    except LineageError as exc:
        return f"git refuses it as a branch name: {exc}"
    return None


def path_problem(template: str, allowed: Iterable[str]) -> str | None:
    """Why ``template.format(**allowed)`` would fail or evaluate more than a name, or ``None``."""
    allowed = tuple(allowed)
    shown = ", ".join(f"{{{a}}}" for a in allowed)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{template!r}: {exc} (write {{{{ and }}}} for literal braces)"
    for _, field, spec, conversion in fields:
        if field is None:
            continue
        if field in allowed and not spec and conversion is None:
            continue
        if any(c in field for c in ".[") or spec or conversion:
            return (f"{template!r}: placeholder {{{field}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} is more than a plain name (allowed: {shown})")
        close = difflib.get_close_matches(field, allowed, n=1)
        hint = f"; did you mean {{{close[0]}}}?" if close else ""
        return f"{template!r}: unknown placeholder {{{field}}}{hint} (allowed: {shown})"
    return None


def _name_problems(config: SwarmConfig) -> Iterable[str]:
    named = [("swarm.name", config.swarm.name)]
    named += [(f"agents.{i}.name", g.name) for i, g in enumerate(config.agents)]
    for key, name in named:
        problem = name_problem(name)
        if problem:
            yield f"{key}: {name!r} {problem}"


def _agent_id_problems(config: SwarmConfig) -> Iterable[str]:
    if config.agent_count > MAX_AGENTS:
        counts = " + ".join(str(g.count) for g in config.agents)
        yield f"agents: {counts} = {config.agent_count} agents in all; at most {MAX_AGENTS}"
        return
    examples = sum(g.count * g.examples for g in config.agents)
    if examples > MAX_EXAMPLES:
        yield (f"agents: count x examples over all groups is {examples} training examples; "
               f"at most {MAX_EXAMPLES}")
    owner: dict[str, int] = {}
    for i, group in enumerate(config.agents):
        clash = sorted({owner[a] for a in agent_ids(group.name, group.count) if a in owner})
        if clash:
            yield (f"agents.{i}.name: {group.name!r} gives agent ids that agents.{clash[0]} "
                   f"({config.agents[clash[0]].name!r}) gives too; each group needs its own name")
        for aid in agent_ids(group.name, group.count):
            owner.setdefault(aid, i)


def _registry_problems(config: SwarmConfig) -> Iterable[str]:
    from swarm.agents.registry import get_role
    from swarm.skills import skill_names

    for choice in CHOICES:  # model.backend, matchmaker.kind, protocol.name
        name = getattr(getattr(config, choice.section), choice.key)
        yield from _lookup(f"{choice.section}.{choice.key}", name, choice.registry.get)
    files = {s.name for s in config.skills}
    for i, group in enumerate(config.agents):
        found = list(_lookup(f"agents.{i}.role", group.role, get_role))
        yield from found
        if not found:
            yield from _role_settings_problems(i, group)
        if not group.skills:
            known = ", ".join(sorted({*skill_names(), *files}))
            yield f"agents.{i}.skills: empty; name at least one of {known}"
        for j, skill in enumerate(group.skills):
            yield from _skill_lookup(f"agents.{i}.skills.{j}", skill, files)


def _skill_lookup(key: str, name: str, files: set[str]) -> Iterable[str]:
    """``name`` is a skill of the config's ``skills`` section or a registered one."""
    from swarm.skills import get_skill, skill_names

    if name in files:
        return
    try:
        get_skill(name)
    except RegistryError:
        known = sorted({*skill_names(), *files})
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        yield f"{key}: unknown skill {name!r}{hint} (known: {', '.join(known)})"


def _skill_file_problems(config: SwarmConfig) -> Iterable[str]:
    """Each file skill: an identifier no other skill has, a well-formed file, enough examples."""
    from swarm.skills import FileSkill, get_skill, heldout_quota

    used = sorted({s for g in config.agents for s in g.skills})
    quota = heldout_quota(used, config.swarm.heldout)
    taken: set[str] = set()
    for k, section in enumerate(config.skills):
        key, name = f"skills.{k}", section.name
        if not (name.isidentifier() and name.isascii()):
            yield f"{key}.name: {name!r} must be a Python identifier (letters, digits, '_')"
            continue
        if name in taken:
            yield f"{key}.name: {name!r} is the name of an earlier skill of the section"
        taken.add(name)
        try:
            get_skill(name)
            yield f"{key}.name: {name!r} is a registered skill's name; choose another"
        except RegistryError:
            pass
        try:
            pool = FileSkill.read(name, Path(section.file), section.description)
        except ConfigError as exc:
            yield f"{key}.file: {exc.problems[0]}"
            continue
        if name in quota:
            yield from _pool_problems(config, f"{key}.file: {section.file}", pool, quota[name])


def _pool_problems(config: SwarmConfig, where: str, pool: FileSkill, heldout: int
                   ) -> Iterable[str]:
    """The file skill's pool must hold its held-out share and every agent's training slots."""
    from swarm.skills import slot_counts

    held, train = pool.split(heldout, config.swarm.seed)
    asks = [(i, g.count, slot_counts(g.skills, g.examples)[pool.name])
            for i, g in enumerate(config.agents) if pool.name in g.skills]
    wanted = sum(count * each for _, count, each in asks)
    if len(train) >= max(wanted, 1):
        return
    groups = ", ".join(f"agents.{i}: {count} x {each}" for i, count, each in asks)
    lower = " or ".join(f"agents.{i}.examples" for i, *_ in asks)
    yield (f"{where} holds {len(pool.examples)} examples, too few for skill {pool.name!r}: "
           f"{len(held)} held out (its share of swarm.heldout {config.swarm.heldout}) leave "
           f"{len(train)} to train on, and the agents ask {wanted} ({groups}); add examples, "
           f"or lower {lower} or swarm.heldout")


def _role_settings_problems(i: int, group: AgentGroup) -> Iterable[str]:
    """``agents.<i>.settings`` against the role's ``settings_schema``."""
    try:
        role_settings(group)
    except ConfigError as exc:
        yield from (f"agents.{i}.{p}" for p in exc.problems)


def role_settings(group: AgentGroup) -> Any:
    """The group's ``settings`` converted by its role's ``settings_schema`` (None: it has none).

    Raises:
        ConfigError: a key the schema does not know, or a value of the wrong type or range
            (``settings.<key>: ...``); settings given to a role that takes none.
        RegistryError: the role is unknown.
    """
    from swarm.agents.registry import ROLES

    schema = ROLES.settings(group.role)
    if schema is None:
        if group.settings:
            raise ConfigError(f"settings: role {group.role!r} takes no settings, got "
                              f"{sorted(group.settings)[:5]}")
        return None
    try:
        return msgspec.convert(group.settings, schema, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(explain(str(exc), group.settings, schema, "settings")) from None


def _port_problems(config: SwarmConfig) -> Iterable[str]:
    """The highest port a swarm binds must exist (``bind`` raises ``OverflowError`` past 65535)."""
    from swarm.transport.topology import MAX_PORT, PEER_OFFSET, last_port

    base, hosts = config.transport.base_port, config.launcher.hosts
    top = last_port(base, hosts)
    if top > MAX_PORT:
        yield (f"transport.base_port: {base} puts the last host's peer port at {top} "
               f"(base_port + {PEER_OFFSET} + launcher.hosts - 1); ports end at {MAX_PORT}, "
               f"so allowed: base_port <= {MAX_PORT - PEER_OFFSET - hosts + 1}")


def _lookup(key: str, name: str, get: Callable[[str], object]) -> Iterable[str]:
    try:
        get(name)
    except RegistryError as exc:
        yield f"{key}: {exc}"
