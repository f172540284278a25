"""Reading a swarm config: a YAML file and ``--set`` overrides into a validated ``SwarmConfig``.

``load_config`` reads a file, applies ``--set key.path=value`` overrides and
returns a frozen ``SwarmConfig``; every problem found is reported at once in
one ``ConfigError`` whose lines name the key path, the bad value and what is
allowed (with a "did you mean" for a close misspelling). A relative
``skills[*].file`` is relative to the config file's folder (``load_config``
makes it absolute, ``--set`` values too). ``to_dict`` is the way back: the
resolved config as plain data, which ``parse_config`` reads again to the same
config.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from swarm.config.choices import Picked, flatten, pick
from swarm.config.explain import explain, fields_of, show, show_key, unknown_keys
from swarm.config.reader import MAX_CONFIG_BYTES, decode_text, load_yaml
from swarm.config.rules import config_problems
from swarm.config.schema import SwarmConfig
from swarm.errors import ConfigError

__all__ = ["load_config", "parse_config", "apply_override", "to_dict"]


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> SwarmConfig:
    """Read, override and validate a YAML config file.

    Args:
        path: the YAML file.
        overrides: ``key.path=value`` strings; values are parsed as YAML scalars.

    Raises:
        ConfigError: naming every problem found.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    raw = load_yaml(decode_text(data, str(path)), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {show(raw)}")
    problems: list[str] = []
    for item in overrides:
        try:
            apply_override(raw, item)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    _resolve_skill_files(raw, path.parent)
    return parse_config(raw)


def parse_config(raw: Mapping[str, Any]) -> SwarmConfig:
    """Validate an already-parsed mapping into a ``SwarmConfig``.

    Raises:
        ConfigError: unknown keys (with suggestions) first, then type and range
            errors, then rules across fields (``swarm.config.rules``).
    """
    base, picked = pick(raw)
    problems = list(unknown_keys(base, fields_of(SwarmConfig), "$"))
    problems += [line for entry in picked for line in entry.problems()]
    if problems:
        raise ConfigError(problems)
    try:
        config = msgspec.convert(base, SwarmConfig, strict=True)
    except msgspec.ValidationError as exc:
        problems.append(explain(str(exc), base, SwarmConfig))
    settings = {}
    for entry in picked:
        try:
            settings[entry.choice.section] = entry.settings()
        except msgspec.ValidationError as exc:
            problems.append(entry.explain(exc))
    if problems:
        raise ConfigError(problems)
    config = _with_settings(config, picked, settings)
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override to a raw config mapping in place.

    List elements are addressed by index (``agents.0.count=4``). The value is
    parsed as YAML, so ``rounds=3`` is an int and ``restart=false`` a bool.
    """
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"override {show(item)}: expected KEY.PATH=VALUE, e.g. swarm.rounds=3"
        )
    if len(key) > 200:  # no key path is this long; keep the error line short
        raise ConfigError(f"override {show_key(key)}: {len(key)} characters, too long a key")
    value = load_yaml(text, f"override {key}")
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = _list_item(node, part, where)
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {key}: {where} is a value, not a section")
        else:
            raise ConfigError(f"override {key}: {where} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(node, last, key)
        node[index] = value
    else:
        node[last] = value


def to_dict(config: SwarmConfig) -> dict[str, Any]:
    """The resolved config as plain data (defaults filled in), ready for YAML or JSON."""
    return flatten(msgspec.to_builtins(config))


def _resolve_skill_files(raw: dict[str, Any], folder: Path) -> None:
    """Make each relative ``skills[*].file`` relative to ``folder`` (the config file's), absolute.

    Absolute, so every process of the run reads the same file from ``config.json``.
    """
    skills = raw.get("skills")
    for entry in skills if isinstance(skills, list) else ():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str) and entry["file"]:
            entry["file"] = os.path.abspath(folder / Path(entry["file"]).expanduser())


def _with_settings(config: SwarmConfig, picked: list[Picked],
                   settings: dict[str, Any]) -> SwarmConfig:
    """``config`` with each chosen section's ``settings`` set to its entry's converted settings."""
    sections = {}
    for entry in picked:
        section = entry.choice.section
        value = settings[section] if entry.known else None
        sections[section] = msgspec.structs.replace(getattr(config, section), settings=value)
    return msgspec.structs.replace(config, **sections)


def _list_item(node: list[Any], part: str, where: str) -> Any:
    return node[_list_index(node, part, where)]


def _list_index(node: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"override {where}: {part!r} is not an index of a list of {len(node)} items"
        )
    return int(part)
