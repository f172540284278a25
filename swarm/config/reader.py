"""Strict YAML for configs: what ``yaml.safe_load`` accepts but a config must not hold.

``safe_load`` is safe from code execution, not from input that takes a process
down or silently changes meaning:

- a duplicate key (``rounds: 3`` then ``rounds: 300``) keeps the last value
  without a word, so a config says two things and runs one;
- aliases (``&a [*b, *b]`` nested ten deep) expand to billions of nodes from a
  few hundred bytes (a "billion laughs"), and printing such a value in an
  error message is as bad as building it;
- nesting 100,000 deep (``[[[[...``) ends the composer in ``RecursionError``;
- a file that is not UTF-8 ends ``read_text`` in ``UnicodeDecodeError``.

``load_yaml`` refuses each of these with a ``ConfigError`` that names the
place (key path or line), so every caller (``swarm config check``, ``swarm
run``, ``--set`` values) gets one sentence instead of a traceback.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from swarm.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "decode_text", "load_yaml"]

MAX_CONFIG_BYTES = 1024 * 1024
"""A config is a page of settings; a megabyte is far past any real one."""

MAX_DEPTH = 32
"""The schema nests four levels deep (``agents.0.lora.steps``); 32 leaves room and bounds recursion."""


class _Refused(Exception):
    """A construct the strict loader refuses, with the place it was found."""

    def __init__(self, message: str, mark: Any = None) -> None:
        line = f"line {mark.line + 1}: " if mark is not None else ""
        super().__init__(f"{line}{message}")


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses aliases and bounds nesting while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                f"YAML alias *{event.anchor} is not allowed in a config (write the value out)",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


def decode_text(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text, or a ``ConfigError`` naming ``where`` and the first bad byte."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes, too large for a config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def load_yaml(text: str, where: str) -> Any:
    """Parse one YAML document strictly (see module docstring).

    Args:
        text: the document.
        where: what to name in errors (a file path, ``override swarm.rounds``).

    Raises:
        ConfigError: not valid YAML, an alias, too deep, a duplicate or non-scalar key.
    """
    try:
        loader = _StrictLoader(text)  # the reader checks the characters here
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_keys(node, "")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _Refused as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None


def _check_keys(node: Node, path: str) -> None:
    """Refuse duplicate and non-scalar mapping keys anywhere below ``node``.

    The composer has already bounded the depth, so this recursion is bounded too.
    """
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, f"{path}.{i}" if path else str(i))
    elif isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise _Refused(f"{path or 'top level'}: a key must be a plain name", key.start_mark)
            where = f"{path}.{key.value}" if path else str(key.value)
            line = key.start_mark.line + 1
            if key.value in seen:
                raise _Refused(
                    f"{_clip(where)}: duplicate key (also on line {seen[key.value]}); "
                    "a key may appear once",
                    key.start_mark,
                )
            seen[key.value] = line
            _check_keys(value, where)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message (with a source snippet) as one line: where and what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f"{exc.context} " if exc.context else ""
        return _clip(f"line {mark.line + 1}, column {mark.column + 1}: {context}{exc.problem}")
    return _clip(" ".join(str(exc).split()))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
