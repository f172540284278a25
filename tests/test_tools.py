"""Tools: the schema of "call one of these tools or answer", the call loop and its log.

The unit tests drive the loop with a fake runtime whose model answers scripted
JSON (checked against each request's schema, as the model server checks every
sample); the last test lets the real SmolLM2 call a tool through the real
model server (``hf`` backend).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from swarm.agents import Agent, AgentContext, AgentSpec
from swarm.agents.tools import ANSWER, Toolbox, tool, tools_of
from swarm.errors import StructuredOutputError, ToolError
from swarm.serving.structured import check_output, parse_schema
from swarm.wire.messages import GenOutput, GenRequest, LogEntry


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Query(msgspec.Struct):
    city: str
    year: int = 2020


@tool(name="population", description="The population of a city in a year.")
async def population(query: Query) -> dict[str, int]:
    return {query.city: 1000 + query.year}


class Scripted:
    """A runtime whose model answers the next scripted text (or ``reply(request)``)."""

    def __init__(self, script: Sequence[str | Callable[[GenRequest], str]]) -> None:
        self.script = list(script)
        self.requests: list[GenRequest] = []
        self.log: list[LogEntry] = []
        self.round = 3

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        (request,) = requests
        self.requests.append(request)
        step = self.script.pop(0)
        text = step(request) if callable(step) else step
        assert request.json_schema is not None
        check_output(text, request.json_schema)  # what the model server does to every sample
        return [GenOutput(texts=[text])]

    def record(self, entry: LogEntry) -> None:
        self.log.append(entry)


class Calculator(Agent):
    """A role with two tools of its own (one taking the context)."""

    __slots__ = ("uses",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.uses = 0

    @tool
    def multiply(self, a: int, b: int) -> int:
        """Multiply two integers."""
        self.uses += 1
        return a * b

    @tool
    async def whoami(self, ctx: AgentContext) -> str:
        """Who is asking."""
        return f"{ctx.id} in round {ctx.round}"


def context(runtime: Scripted, adapter: str | None = "sha-own") -> AgentContext:
    return AgentContext(Calculator(AgentSpec(agent_id="calc-0"), adapter=adapter), runtime)


def call(name: str, **arguments: Any) -> str:
    return json.dumps({"name": name, "arguments": arguments})


def final(answer: Any) -> str:
    return call(ANSWER, answer=answer)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# -- the schema ----------------------------------------------------------------------------


def test_the_schema_offers_each_tool_with_typed_arguments_and_the_answer() -> None:
    # Prepare
    box = Toolbox([add, population])

    # Execute
    schema = parse_schema(box.schema)
    options = {json.dumps(o) for o in schema["anyOf"]}
    defs = schema["$defs"]

    # Assert: one option per tool plus the answer, the name first in each
    assert len(options) == 3 and schema["discriminator"]["propertyName"] == "name"
    assert set(schema["discriminator"]["mapping"]) == {"add", "population", ANSWER}
    add_call = defs["choose_add"]
    assert list(add_call["properties"]) == ["name", "arguments"]
    add_args = defs[add_call["properties"]["arguments"]["$ref"].rpartition("/")[2]]
    assert add_args["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    query = defs["Query"]  # the Struct the tool's one parameter is annotated with
    assert query["required"] == ["city"] and query["properties"]["year"]["default"] == 2020
    assert "add(a: integer, b: integer): Add two integers." in box.instructions()
    assert "population(city: string, year: integer): The population" in box.instructions()


@pytest.mark.parametrize("text", [
    call("divide", a=1, b=2),  # no such tool
    call("add", a="one", b=2),  # an argument of the wrong type
    call("add", a=1),  # a missing argument
    call("add", a=1, b=2, c=3),  # an argument the tool does not take
    json.dumps({"name": "add", "arguments": {"a": 1, "b": 2}, "why": "x"}),
])
def test_an_unknown_tool_or_bad_arguments_do_not_match_the_schema(text: str) -> None:
    box = Toolbox([add, population])
    with pytest.raises(StructuredOutputError, match="does not match"):
        check_output(text, box.schema)
    with pytest.raises(StructuredOutputError, match="does not decode"):
        box.decode(text)


def test_a_call_decodes_to_its_tool_and_the_answer_to_the_answer_type() -> None:
    box = Toolbox([add, population], answer=Query)
    choice = box.decode(call("population", city="Oslo"))
    assert not box.is_answer(choice) and box.tool_of(choice).name == "population"
    assert choice.arguments == Query(city="Oslo")
    answer = box.decode(call(ANSWER, city="Bergen", year=1999))
    assert box.is_answer(answer) and box.answer_of(answer) == Query(city="Bergen", year=1999)
    with pytest.raises(StructuredOutputError):
        box.decode(call("add", a=1, b=2), mode="answer")
    with pytest.raises(StructuredOutputError):
        box.decode(final("x"), mode="call")


def unannotated(a, b: int) -> int:  # type: ignore[no-untyped-def]
    return int(a) + b


def star(*numbers: int) -> int:
    return sum(numbers)


def answer(text: str) -> str:
    return text


@pytest.mark.parametrize("make, why", [
    (lambda: tool(unannotated), "annotate parameter 'a'"),
    (lambda: tool(star), r"\*numbers cannot be an argument"),
    (lambda: tool(answer), "not 'answer'"),
    (lambda: tool(name="two words")(add), "tool name 'two words'"),
    (lambda: Toolbox([add, add]), "two tools are named 'add'"),
])
def test_a_tool_that_cannot_be_offered_is_a_tool_error(make: Callable[[], Any], why: str) -> None:
    with pytest.raises(ToolError, match=why):
        make()


# -- the loop ------------------------------------------------------------------------------


def test_the_model_calls_a_tool_then_answers_and_both_are_in_the_log() -> None:
    # Prepare
    runtime = Scripted([call("add", a=2, b=3), final("2 + 3 = 5")])
    ctx = context(runtime)

    # Execute
    answer = run(ctx.use_tools("What is 2 + 3?", tools=[add], temperature=0.0))

    # Assert: the answer, and what the model saw on its second turn
    assert answer == "2 + 3 = 5"
    first, second = runtime.requests
    assert first.adapter == "sha-own" and first.agent_id == "calc-0"
    assert first.max_tokens == 256 and first.json_schema == Toolbox([add]).schema
    assert [t.role for t in first.messages] == ["system", "user"]
    assert [t.role for t in second.messages] == ["system", "user", "assistant", "user"]
    assert json.loads(second.messages[2].content)["arguments"] == {"a": 2, "b": 3}
    assert second.messages[3].content.startswith("add returned: 5")
    called, result = runtime.log
    assert (called.kind, called.sender, called.recipient) == ("ToolCall", "calc-0", "tool:add")
    assert json.loads(called.body) == {"a": 2, "b": 3} and called.size == len(called.body)
    assert (result.kind, result.sender, result.recipient) == ("ToolResult", "tool:add", "calc-0")
    assert result.correlation_id == called.msg_id and json.loads(result.body) == 5
    assert not result.error


def test_a_tool_that_raises_tells_the_model_and_the_agent_goes_on() -> None:
    # Prepare
    @tool
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    runtime = Scripted([call("divide", a=1, b=0), call("divide", a=6, b=3), final("2")])

    # Execute
    answer = run(context(runtime).use_tools("6 / 3?", tools=[divide]))

    # Assert
    assert answer == "2"
    told = runtime.requests[1].messages[-1].content
    assert "error: ZeroDivisionError: division by zero" in told
    failed, ok = runtime.log[1], runtime.log[3]
    assert failed.error == ToolError.code and "ZeroDivisionError" in json.loads(failed.body)
    assert not ok.error and json.loads(ok.body) == 2.0


def test_max_calls_bounds_the_loop_then_only_the_answer_is_allowed() -> None:
    # Prepare: a model that calls as long as the schema lets it
    box = Toolbox([add])

    def eager(request: GenRequest) -> str:
        return final("done") if request.json_schema == box.answer_schema else call("add", a=1, b=1)

    runtime = Scripted([eager] * 10)

    # Execute
    answer = run(context(runtime).use_tools("count", tools=[add], max_calls=3))

    # Assert
    assert answer == "done" and len(runtime.requests) == 4
    assert [e.kind for e in runtime.log] == ["ToolCall", "ToolResult"] * 3
    assert runtime.requests[-1].json_schema == box.answer_schema


def test_the_roles_own_tools_by_default_bound_and_given_the_context() -> None:
    # Prepare
    runtime = Scripted([call("multiply", a=6, b=7), call("whoami"), final("42")])
    ctx = context(runtime, adapter=None)

    # Execute
    answer = run(ctx.use_tools("6 * 7?", max_calls=2, require_call=True))

    # Assert
    assert answer == "42" and ctx.agent.uses == 1  # type: ignore[attr-defined]
    assert [f.__name__ for f in tools_of(ctx.agent)] == ["multiply", "whoami"]
    assert json.loads(runtime.log[1].body) == 42
    assert json.loads(runtime.log[3].body) == "calc-0 in round 3"
    assert runtime.requests[0].adapter is None
    # require_call: the first turn's schema has no answer in it, the next ones have
    first, second = (json.loads(r.json_schema or "") for r in runtime.requests[:2])
    assert set(first["discriminator"]["mapping"]) == {"multiply", "whoami"}
    assert ANSWER in second["discriminator"]["mapping"]


def test_a_large_result_is_logged_by_its_hash() -> None:
    @tool
    def dump(n: int) -> str:
        """A long text."""
        return "x" * n

    runtime = Scripted([call("dump", n=10_000), final("long")])
    run(context(runtime).use_tools("dump", tools=[dump]))
    result = runtime.log[1]
    data = json.dumps("x" * 10_000).encode()
    assert result.body == "" and result.size == len(data)
    assert result.body_sha256 == hashlib.sha256(data).hexdigest()


def test_a_structured_answer_and_a_struct_argument() -> None:
    runtime = Scripted([call("population", city="Oslo", year=2000),
                        call(ANSWER, city="Oslo", year=3000)])
    answer = run(context(runtime).use_tools("Oslo?", tools=[population], answer=Query))
    assert answer == Query(city="Oslo", year=3000)
    assert json.loads(runtime.log[1].body) == {"Oslo": 3000}


def test_a_required_call_with_no_call_allowed_is_a_tool_error() -> None:
    with pytest.raises(ToolError, match="max_calls=0"):
        run(context(Scripted([])).use_tools("?", tools=[add], max_calls=0, require_call=True))
    with pytest.raises(ToolError, match="max_calls=-1"):
        run(context(Scripted([])).use_tools("?", tools=[add], max_calls=-1))


# -- a real model ----------------------------------------------------------------------------


class ModelRuntime:
    """The model-server half of a host's runtime: generation through a real ``ModelClient``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.log: list[LogEntry] = []
        self.round = 0

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        outputs: list[GenOutput] = await self.model.generate(requests)
        return outputs

    def record(self, entry: LogEntry) -> None:
        self.log.append(entry)


@pytest.mark.slow
def test_smollm2_calls_the_add_tool_with_integers(smollm2: Path, tmp_path: Path) -> None:
    from swarm.serving.base import MappingResolver
    from swarm.serving.client import ModelClient
    from swarm.serving.hf_backend import HFBackend
    from swarm.serving.server import ModelServer, ServerThread

    # Prepare: SmolLM2 on the hf backend behind a real model server
    address = f"ipc://{tmp_path}/model.ipc"
    calls: list[tuple[Any, Any]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        calls.append((a, b))
        return a + b

    async def main() -> Any:
        async with ModelClient.connect(address) as model:
            runtime = ModelRuntime(model)
            ctx = AgentContext(Calculator(AgentSpec(agent_id="calc-0")), runtime)
            answer = await ctx.use_tools("What is 17 + 25? Use the add tool.", tools=[add],
                                         max_calls=1, max_tokens=48)
            return answer, runtime.log

    # Execute
    with ServerThread(ModelServer(HFBackend(smollm2, MappingResolver()), address)):
        answer, log = asyncio.run(asyncio.wait_for(main(), 600))

    # Assert: the model called add with integers, and the call and its result are logged
    assert calls and all(type(a) is int and type(b) is int for a, b in calls), calls
    called, result = log[0], log[1]
    assert called.kind == "ToolCall" and called.recipient == "tool:add"
    assert json.loads(called.body) == dict(zip("ab", calls[0], strict=True))
    assert result.kind == "ToolResult" and json.loads(result.body) == sum(calls[0])
    assert isinstance(answer, str)
