"""Problems of a raw config as one-line messages: the key path, the bad value, what is allowed.

``unknown_keys`` finds keys no schema knows (with a "did you mean" for a
close misspelling); ``explain`` rewrites a msgspec validation message as
``key.path: problem (got value); allowed: ...``. Every value shown is clipped,
so a message stays one short line whatever the config holds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = ["fields_of", "unknown_keys", "explain", "dotted", "show", "show_key"]


def fields_of(schema: type[msgspec.Struct]) -> dict[str, Any]:
    """A Struct's field names and types, in declaration order."""
    return {f.name: f.type for f in msgspec.structs.fields(schema)}


def unknown_keys(raw: Any, fields: Mapping[str, Any], path: str,
                 context: str = "") -> Iterable[str]:
    """Yield a problem line for every key of ``raw`` not in ``fields``, recursively.

    Args:
        raw: the raw mapping (anything else has no keys to check).
        fields: the allowed keys and their types (nested Structs are checked too).
        path: where ``raw`` sits, ``$.model``.
        context: what the allowed keys depend on, e.g. ``for protocol 'local'``.
    """
    if not isinstance(raw, Mapping):
        return
    for key, value in raw.items():
        where = f"{path}.{show_key(key)}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(sorted(fields))
            label = f"allowed {context}: " if context else "allowed: "
            yield f"{dotted(where)}: unknown key {show(key)}{hint} ({label}{allowed})"
            continue
        sub = _struct_of(fields[key])
        if sub is None:
            continue
        if isinstance(value, list) and _is_list(fields[key]):
            for i, item in enumerate(value):
                yield from unknown_keys(item, fields_of(sub), f"{where}.{i}")
        else:
            yield from unknown_keys(value, fields_of(sub), where)


_AT = re.compile(r"^(?P<what>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)


def explain(message: str, raw: Mapping[str, Any], schema: type[msgspec.Struct],
            prefix: str = "") -> str:
    """Rewrite a msgspec validation message as ``key.path: problem (got value)``.

    Args:
        message: ``str`` of the ``msgspec.ValidationError`` from converting ``raw``.
        raw: what was converted.
        schema: what it was converted to (for the choices of a ``Literal`` field).
        prefix: the key path of ``raw`` inside the whole config (``protocol``).
    """
    match = _AT.match(message)
    assert match is not None
    what, path = match.group("what"), match.group("path")
    missing = re.search(r"missing required field `([^`]+)`", what)
    if path is None:
        if missing:
            return f"{_join(prefix, missing.group(1))}: required key is missing"
        return f"{prefix}: {what}" if prefix else what
    if missing:
        return f"{_join(prefix, dotted(path), missing.group(1))}: required key is missing"
    found, value = _lookup(raw, path)
    got = f" (got {show(value)})" if found else ""
    choices = _choices(schema, dotted(path))
    allowed = f"; allowed: {', '.join(map(repr, choices))}" if choices else ""
    return f"{_join(prefix, dotted(path))}: {what[0].lower()}{what[1:]}{got}{allowed}"


def dotted(path: str) -> str:
    """``$.agents[0].count`` -> ``agents.0.count``."""
    return re.sub(r"\[(\d+)\]", r".\1", path).removeprefix("$").lstrip(".")


def show(value: Any) -> str:
    """``repr(value)``, clipped."""
    return show_key(repr(value))


def show_key(key: Any) -> str:
    """``key`` as text, clipped: an error message stays one short line."""
    text = str(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct class inside a field type (``X``, ``list[X]``, ``Annotated[list[X], ...]``)."""
    info = msgspec.inspect.type_info(tp)
    while True:
        if isinstance(info, msgspec.inspect.StructType):
            struct: type[msgspec.Struct] = info.cls
            return struct
        if isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
            continue
        return None


def _is_list(tp: Any) -> bool:
    return isinstance(msgspec.inspect.type_info(tp), msgspec.inspect.ListType)


def _choices(schema: type[msgspec.Struct], path: str) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` field at a dotted key path of ``schema``, else ``()``."""
    info: Any = msgspec.inspect.type_info(schema)
    for part in path.split("."):
        while isinstance(info, msgspec.inspect.ListType | msgspec.inspect.UnionType):
            if isinstance(info, msgspec.inspect.ListType):
                info = info.item_type
            else:
                info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if part.isdigit():
            continue
        if not isinstance(info, msgspec.inspect.StructType):
            return ()
        fields = {f.name: f.type for f in info.fields}
        if part not in fields:
            return ()
        info = fields[part]
    if isinstance(info, msgspec.inspect.UnionType):
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    return tuple(info.values) if isinstance(info, msgspec.inspect.LiteralType) else ()


def _lookup(raw: Any, path: str) -> tuple[bool, Any]:
    node = raw
    for part in dotted(path).split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node
