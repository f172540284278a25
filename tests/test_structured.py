"""Generation requests: bounds, samples, stop strings, JSON schemas and typed errors (no engine)."""

from __future__ import annotations

import json
import math

import msgspec
import pytest

from swarm.errors import (
    RemoteError,
    RequestError,
    StructuredOutputError,
    WireError,
    error_for_code,
)
from swarm.serving.base import check_requests, cut_at_stop, one_sample_each
from swarm.serving.structured import check_output, decode_output, parse_schema, schema_for
from swarm.wire.codec import ChatTurn, Generate, Generated, GenOutput, GenRequest, decode, encode


class City(msgspec.Struct):
    name: str
    country: str
    population: int | None = None


def test_a_schema_from_a_msgspec_type_describes_the_document_itself() -> None:
    schema = json.loads(schema_for(City))
    assert schema["type"] == "object" and "$ref" not in schema
    assert set(schema["properties"]) == {"name", "country", "population"}
    assert set(schema["required"]) == {"name", "country"}
    assert parse_schema(schema_for(City)) == schema
    assert json.loads(schema_for(list[int]))["type"] == "array"


@pytest.mark.parametrize("text, why", [("not json", "not JSON"), ("[1, 2]", "JSON object"),
                                       ('{"type": 5}', "not a valid JSON schema")])
def test_a_bad_schema_is_a_request_error(text: str, why: str) -> None:
    with pytest.raises(RequestError, match=why):
        parse_schema(text)


def test_answers_are_checked_against_their_schema_and_decoded_into_the_type() -> None:
    schema = schema_for(City)
    assert check_output('{"name": "Paris", "country": "France"}', schema)["name"] == "Paris"
    with pytest.raises(StructuredOutputError, match="cut off by max_tokens"):
        check_output('{"name": "Par', schema, finish_reason="length")
    with pytest.raises(StructuredOutputError, match="does not match"):
        check_output('{"name": "Paris"}', schema)
    assert decode_output('{"name": "Rome", "country": "Italy"}', City) == City("Rome", "Italy")
    with pytest.raises(StructuredOutputError, match="not a City"):
        decode_output('{"name": 3, "country": "Italy"}', City)


class Node(msgspec.Struct):
    name: str
    children: list[Node] = []


def user(text: str = "hi", **fields: object) -> GenRequest:
    return GenRequest(messages=[ChatTurn(role="user", content=text)], **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad, field", [
    (user(temperature=math.nan), "temperature"), (user(temperature=-1.0), "temperature"),
    (user(max_tokens=0), "max_tokens"), (user(max_tokens=10**6), "max_tokens"),
    (user(top_p=0.0), "top_p"), (user(top_p=math.nan), "top_p"), (user(seed=-1), "seed"),
    (user(n=0), "n must"), (user(n=17), "n must"), (user(stop=[""]), "stop"),
    (user(stop=["x"] * 17), "stop"), (user(json_schema="{"), "json_schema"),
    (GenRequest(prompt="a", messages=[ChatTurn(role="user", content="b")]), "not both"),
    (GenRequest(), "not neither"),
    (GenRequest(messages=[ChatTurn(role="robot", content="b")]), "role"),  # type: ignore[arg-type]
])
def test_every_bound_of_a_request_is_checked_in_process(bad: GenRequest, field: str) -> None:
    with pytest.raises(RequestError, match=field):
        check_requests([user(), bad])


def test_a_backend_takes_one_sample_per_request_and_a_self_referring_schema_keeps_its_defs() -> None:
    check_requests([user(n=3)])
    with pytest.raises(RequestError, match="one sample per request"):
        check_requests([user(n=3)], one_sample=True)

    schema = schema_for(Node)
    assert parse_schema(schema)["$defs"]["Node"]
    assert check_output('{"name": "a", "children": [{"name": "b"}]}', schema)["name"] == "a"
    with pytest.raises(StructuredOutputError):
        check_output('{"name": "a", "children": [{"children": []}]}', schema)
    with pytest.raises(RequestError, match="does not define"):
        parse_schema('{"$ref": "#/$defs/missing"}')
    with pytest.raises(RequestError, match="not a valid JSON schema"):
        parse_schema('{"$schema": 5}')


def test_the_wire_refuses_the_same_bounds_before_any_check() -> None:
    good = Generate(requests=[user(n=3, seed=5, stop=["."], top_p=0.5)])
    assert decode(encode(good))[0] == good
    for bad in (user(temperature=math.nan), user(n=17), user(top_p=0.0), user(stop=["x" * 257]),
                user(json_schema="x" * (65 << 10))):
        with pytest.raises(WireError):
            decode(encode(Generate(requests=[bad])))


def test_n_samples_become_n_seeded_requests_and_stop_strings_cut() -> None:
    flat, counts = one_sample_each([user(n=3, seed=5), user(), user(n=2)])
    assert counts == [3, 1, 2] and len(flat) == 6
    assert [r.seed for r in flat] == [5, 6, 7, None, None, None]
    assert all(r.n == 1 for r in flat)
    assert cut_at_stop("1, 2, 3, 4", ["3", ","]) == ("1", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


def test_generated_reads_its_first_samples_and_errors_come_back_typed() -> None:
    msg = Generated(outputs=[GenOutput(texts=["a", "b"], finish_reasons=["stop", "length"], tokens=3),
                             GenOutput(texts=["c"])])
    assert msg.texts == ["a", "c"]
    assert decode(encode(msg))[0] == msg
    assert isinstance(error_for_code("backend.structured", "x"), StructuredOutputError)
    assert isinstance(error_for_code("backend.request", "x"), RequestError)
    wire = error_for_code("wire.oversize", "too big")
    assert isinstance(wire, WireError) and wire.kind == "oversize"
    other = error_for_code("somebody.else", "why")
    assert isinstance(other, RemoteError) and other.remote_code == "somebody.else"
