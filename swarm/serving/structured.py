"""Structured output: JSON schemas from msgspec types, checked on the way in and out.

A ``GenRequest`` with ``json_schema`` asks that every sample be a JSON document
matching that schema. How each backend holds to it:

- ``vllm``: the engine's guided decoding (xgrammar, or llguidance where
  xgrammar cannot take the schema), with ``disable_any_whitespace`` so JSON
  whitespace does not eat the token budget;
- ``hf``: xgrammar's logits processor for transformers (xgrammar ships with
  vLLM); without xgrammar installed the answer is generated unconstrained and
  only checked;
- ``openai``: the server's own guided decoding (vLLM's ``structured_outputs``,
  or the OpenAI ``response_format`` for servers without vLLM's extensions).

Whatever the backend, the model server checks every sample against the schema
before it answers (``check_output``): a sample that does not match (cut off by
``max_tokens``, most often) fails its message with ``StructuredOutputError``,
so a caller gets a document of the schema or a typed error, never text to
guess at. ``decode_output`` turns a checked sample into the caller's type.
"""

from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

import msgspec

from swarm.errors import RequestError, StructuredOutputError

__all__ = ["schema_for", "parse_schema", "check_output", "decode_output"]

T = TypeVar("T")


def schema_for(type_: Any) -> str:
    """The JSON schema of a msgspec type (a ``Struct``, a ``list[int]``...) as JSON text.

    The top-level ``$ref`` msgspec writes for a Struct is inlined, so the schema
    itself describes the document (some grammar compilers want that).
    """
    schema = msgspec.json.schema(type_)
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/") and len(schema) == 2:
        body = dict(defs[ref.removeprefix("#/$defs/")])
        if '"$ref"' in json.dumps(body):  # it refers to definitions (itself, maybe): keep them all
            body["$defs"] = defs
        schema = body
    return json.dumps(schema, separators=(",", ":"), sort_keys=True)


@functools.lru_cache(maxsize=256)
def parse_schema(text: str) -> dict[str, Any]:
    """The schema of a request, checked against the JSON Schema meta-schema.

    Raises:
        RequestError: ``text`` is not JSON, not an object, or not a valid JSON schema.
    """
    import jsonschema

    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise RequestError(f"json_schema is not JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise RequestError(f"json_schema must be a JSON object, not {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise RequestError(f"json_schema is not a valid JSON schema: {exc.message}") from None
    except (Exception, RecursionError) as exc:  # a $schema that is not a string, deep nesting...
        raise RequestError(f"json_schema is not a valid JSON schema: {type(exc).__name__}: "
                           f"{str(exc)[:200]}") from None
    for ref in _refs(schema):
        if not _resolves(schema, ref):
            raise RequestError(f"json_schema refers to {ref!r}, which it does not define "
                               f"(only local references, #/..., are followed)")
    return schema


def _refs(node: Any) -> list[str]:
    """Every ``$ref`` value in a schema."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _resolves(schema: dict[str, Any], ref: str) -> bool:
    """Whether the local JSON pointer ``ref`` (``#/$defs/X``) names a part of ``schema``."""
    if ref == "#":
        return True
    if not ref.startswith("#/"):
        return False
    node: Any = schema
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def check_output(text: str, schema_text: str, finish_reason: str | None = None) -> Any:
    """The JSON value of ``text`` if it matches the schema ``schema_text``.

    Raises:
        StructuredOutputError: ``text`` is not JSON or does not match; the message
            says when the sample was cut off by ``max_tokens``.
    """
    import jsonschema

    cut = " (cut off by max_tokens: allow more tokens)" if finish_reason == "length" else ""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StructuredOutputError(f"answer is not JSON{cut}: {exc}; got {text[:200]!r}") from None
    schema = parse_schema(schema_text)
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except (Exception, RecursionError) as exc:  # whatever the schema or the answer trips
        raise StructuredOutputError(f"answer could not be checked against the schema: "
                                    f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if error is not None:
        raise StructuredOutputError(f"answer does not match the schema{cut}: {error.message}; "
                                    f"got {text[:200]!r}")
    return value


def decode_output(text: str, type_: type[T]) -> T:
    """Decode a sample into ``type_`` (the type its schema came from).

    Raises:
        StructuredOutputError: the sample is not a valid ``type_``.
    """
    try:
        return msgspec.json.decode(text, type=type_)
    except msgspec.DecodeError as exc:  # ValidationError is one
        raise StructuredOutputError(f"answer is not a {getattr(type_, '__name__', type_)}: {exc}; "
                                    f"got {text[:200]!r}") from None
