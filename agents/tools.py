"""Tools: Python functions a role's LLM calls through structured output.

A role marks functions (its own methods, or plain functions) with ``@tool``;
``ctx.use_tools`` lets the model call them until it answers::

    @role("calculator")
    class Calculator(Agent):
        @tool
        def add(self, a: int, b: int) -> int:
            \"\"\"Add two integers.\"\"\"
            return a + b

        async def local_update(self, ctx: AgentContext) -> AgentReport:
            answer = await ctx.use_tools("What is 17 + 25?", tools=[self.add], max_calls=2)
            ...

The arguments' type comes from the signature: a ``msgspec.Struct`` built from
the annotated parameters (a parameter named ``ctx`` gets the agent context and
is not an argument), or, for a function whose one parameter is annotated with
a Struct, that Struct. A ``Toolbox`` turns the tools into one JSON schema,
"call one of these tools, or answer": a tagged union (tag ``name``) of one
Struct per tool, ``{"name": "add", "arguments": {"a": 17, "b": 25}}``, and the
final answer, ``{"name": "answer", "arguments": {"answer": ...}}``. The model
generates under that schema (guided decoding), so it cannot name an unknown
tool or give arguments of the wrong type; the model server checks every
sample against it all the same.

The loop (``run_tools``): generate; on a call, run the tool with the decoded
arguments (a tool that raises gives its error text to the model as the
result; the agent goes on); add the call and the result to the chat; repeat.
After ``max_calls`` calls the schema is the answer's alone, so the loop always
ends with an answer. Each call and each result lands in the round's message
log as a ``LogEntry`` of kind ``ToolCall`` / ``ToolResult`` between the agent
and ``tool:<name>``, with the arguments or the result as JSON (or their sha256
when larger than ``LOG_BODY_BYTES``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import time
import typing
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, Union

import msgspec

from swarm.agents.talk import LOG_BODY_BYTES
from swarm.errors import StructuredOutputError, ToolError
from swarm.serving.client import ChatInput, as_turns
from swarm.wire.messages import ChatTurn, GenOutput, GenRequest, LogEntry, new_id

__all__ = ["ANSWER", "Tool", "Toolbox", "tool", "tools_of", "run_tools"]

#: The name the model gives its final answer (no tool may take it).
ANSWER = "answer"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
_NOT_ARGUMENTS = ("self", "cls", "ctx")

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Tool:
    """One tool: its name, what it does, its arguments' Struct and how to call it.

    ``whole``: the function takes the arguments Struct itself, not its fields;
    ``takes_ctx``: it takes the agent context as ``ctx``.
    """

    name: str
    description: str
    arguments: type[msgspec.Struct]
    call: Callable[..., Any]
    whole: bool = False
    takes_ctx: bool = False

    async def run(self, args: msgspec.Struct, ctx: Any) -> Any:
        """Call the function with ``args`` (awaiting it if it is async)."""
        extra = {"ctx": ctx} if self.takes_ctx else {}
        if self.whole:
            out = self.call(args, **extra)
        else:
            out = self.call(**msgspec.structs.asdict(args), **extra)
        return await out if inspect.isawaitable(out) else out


def tool(fn: F | None = None, *, name: str | None = None,
         description: str | None = None) -> Any:
    """Mark a function or role method as a tool (``@tool`` or ``@tool(name=..., description=...)``).

    The function stays as it is (a method still binds); ``Toolbox`` and
    ``tools_of`` read the ``Tool`` it carries.

    Raises:
        ToolError: a parameter is not annotated, is ``*args``/``**kwargs``, or the
            name is not a usable tool name.
    """

    def wrap(f: F) -> F:
        f.__swarm_tool__ = describe(f, name=name, description=description)  # type: ignore[attr-defined]
        return f

    return wrap if fn is None else wrap(fn)


def describe(fn: Callable[..., Any], *, name: str | None = None,
             description: str | None = None) -> Tool:
    """The ``Tool`` of ``fn``: its arguments' Struct from its signature (module docstring).

    Raises:
        ToolError: see ``tool``.
    """
    func = getattr(fn, "__func__", fn)
    name = str(name or getattr(func, "__name__", ""))
    if not _NAME.fullmatch(name) or name == ANSWER:
        raise ToolError(f"tool name {name!r}: use letters, digits, '_' and '-' (at most 64), "
                        f"and not {ANSWER!r} (the model's final answer)")
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # a forward reference that does not resolve
        raise ToolError(f"tool {name}: cannot read its annotations: {exc}") from None
    params = [p for p in inspect.signature(func).parameters.values()
              if p.name not in _NOT_ARGUMENTS]
    takes_ctx = "ctx" in inspect.signature(func).parameters
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolError(f"tool {name}: *{p.name} cannot be an argument; name each one")
        if p.name not in hints:
            raise ToolError(f"tool {name}: annotate parameter {p.name!r} with its type "
                            f"(the model's arguments are generated to it)")
    doc = description if description is not None else inspect.getdoc(func) or ""
    one = params[0] if len(params) == 1 else None
    if one is not None and _is_struct(hints[one.name]):
        return Tool(name, doc.strip().split("\n", 1)[0], hints[one.name], fn, whole=True,
                    takes_ctx=takes_ctx)
    fields = [(p.name, hints[p.name]) if p.default is p.empty
              else (p.name, hints[p.name], p.default) for p in params]
    args = msgspec.defstruct(f"{name}_arguments", fields, kw_only=True,
                             forbid_unknown_fields=True)
    return Tool(name, doc.strip().split("\n", 1)[0], args, fn, takes_ctx=takes_ctx)


def tools_of(obj: Any) -> list[Callable[..., Any]]:
    """The ``@tool`` methods of ``obj`` (a role instance), bound, by name."""
    found = []
    for attr in sorted(dir(type(obj))):
        if isinstance(getattr(getattr(type(obj), attr, None), "__swarm_tool__", None), Tool):
            found.append(getattr(obj, attr))
    return found


def _is_struct(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, msgspec.Struct)


def _tool_of(fn: Callable[..., Any] | Tool) -> Tool:
    if isinstance(fn, Tool):
        return fn
    marked = getattr(fn, "__swarm_tool__", None)
    if not isinstance(marked, Tool):
        return describe(fn)
    if inspect.ismethod(fn):  # marked on the class: call it bound to this instance
        return dataclasses.replace(marked, call=fn)
    return marked


class Toolbox:
    """Tools offered to the model at once, and the schema of "call one or answer".

    Args:
        tools: ``@tool`` functions or methods, plain functions (described on the
            fly), or ``Tool``s.
        answer: the final answer's type (``str``, or any msgspec type: a Struct is
            the answer's ``arguments`` itself).

    Raises:
        ToolError: two tools share a name, or a tool cannot be described.
    """

    def __init__(self, tools: Sequence[Callable[..., Any] | Tool], answer: Any = str) -> None:
        self.tools: dict[str, Tool] = {}
        for fn in tools:
            t = _tool_of(fn)
            if t.name in self.tools:
                raise ToolError(f"two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.answer = answer
        self.answer_whole = _is_struct(answer)
        final_args = answer if self.answer_whole else msgspec.defstruct(
            "answer_arguments", [("answer", answer)], kw_only=True, forbid_unknown_fields=True)
        self._final = _choice(ANSWER, final_args)
        self._calls = {_choice(t.name, t.arguments): t for t in self.tools.values()}
        calls = tuple(self._calls)
        self._types: dict[str, Any] = {"answer": self._final}
        if calls:
            self._types["call"] = Union[calls] if len(calls) > 1 else calls[0]  # noqa: UP007
            self._types["any"] = Union[(*calls, self._final)]  # noqa: UP007
        #: the schema of each turn the loop takes: ``any`` (call or answer), ``call``, ``answer``
        self.schemas = {mode: _schema_text(t) for mode, t in self._types.items()}
        self.schema = self.schemas.get("any", self.schemas["answer"])
        self.answer_schema = self.schemas["answer"]

    def instructions(self) -> str:
        """The system text that tells the model its tools and how to call them."""
        lines = ['Reply with one JSON object. To call a tool: {"name": TOOL, "arguments": '
                 '{...}}; you then get its result. To give your final answer: '
                 '{"name": "answer", "arguments": {"answer": ...}}.', "Tools:"]
        for t in self.tools.values():
            lines.append(f"- {t.name}({_signature(t.arguments)})"
                         + (f": {t.description}" if t.description else ""))
        return "\n".join(lines if self.tools else lines[:1])

    def decode(self, text: str, mode: str = "any") -> Any:
        """The model's choice in ``text`` (a turn of ``schemas[mode]``): a call or the answer.

        Raises:
            StructuredOutputError: ``text`` is not a document of that schema.
        """
        try:
            return msgspec.json.decode(text, type=self._types.get(mode, self._final))
        except msgspec.DecodeError as exc:
            raise StructuredOutputError(f"the model's tool choice does not decode: {exc}; "
                                        f"got {text[:200]!r}") from None

    def is_answer(self, choice: Any) -> bool:
        """Whether ``choice`` (``decode``'s) is the final answer rather than a call."""
        return isinstance(choice, self._final)

    def answer_of(self, choice: Any) -> Any:
        """The final answer in ``choice`` (``is_answer(choice)`` must hold)."""
        return choice.arguments if self.answer_whole else choice.arguments.answer

    def tool_of(self, choice: Any) -> Tool:
        """The tool ``choice`` calls."""
        return self._calls[type(choice)]


def _choice(name: str, arguments: Any) -> Any:
    return msgspec.defstruct(f"choose_{name}", [("arguments", arguments)], tag_field="name",
                             tag=name, kw_only=True, forbid_unknown_fields=True)


def _schema_text(type_: Any) -> str:
    """The JSON schema of ``type_``, its properties in declared order.

    Not ``schema_for``'s sorted keys: guided decoding writes properties in the
    schema's order, and the tool's ``name`` must come before its arguments.
    """
    schema = msgspec.json.schema(type_)
    ref = schema.get("$ref")
    if isinstance(ref, str) and len(schema) == 2:  # one Struct: keep its defs, refer at the top
        schema = {"$defs": schema["$defs"], **schema["$defs"][ref.removeprefix("#/$defs/")]}
    return json.dumps(schema, separators=(",", ":"))


def _signature(arguments: type[msgspec.Struct]) -> str:
    props = msgspec.json.schema(arguments)
    body = props["$defs"][props["$ref"].removeprefix("#/$defs/")] if "$ref" in props else props
    return ", ".join(f"{k}: {v.get('type', 'value')}" for k, v in body.get("properties",
                                                                           {}).items())


class ToolUser(Protocol):
    """What the loop reads of the agent context (``swarm.agents.context.AgentContext``)."""

    @property
    def id(self) -> str: ...

    @property
    def runtime(self) -> Any: ...


async def run_tools(ctx: ToolUser, chat: ChatInput, box: Toolbox, *, adapter: str | None,
                    max_calls: int = 4, require_call: bool = False,
                    **sampling: Any) -> Any:
    """Let the model call ``box``'s tools until it answers; the answer (module docstring).

    Args:
        ctx: the agent context (its runtime generates and records).
        chat: the user message or the chat so far.
        adapter: the adapter to generate with (sha256; None = the base model).
        max_calls: calls at most; then the model must answer.
        require_call: the first turn must call a tool (OpenAI's ``tool_choice="required"``).
        sampling: ``max_tokens`` (default 256), ``temperature``, ``top_p``, ``seed``.

    Raises:
        StructuredOutputError: a turn does not match the schema (cut off by ``max_tokens``).
        ToolError: ``max_calls`` is negative, or ``require_call`` without tools.
    """
    if max_calls < 0 or (require_call and (not box.tools or max_calls == 0)):
        raise ToolError(f"use_tools: max_calls={max_calls} with require_call={require_call} "
                        f"and {len(box.tools)} tools cannot work")
    sampling.setdefault("max_tokens", 256)
    turns = _with_instructions(as_turns(chat), box.instructions())
    for calls in range(max_calls + 1):
        mode = ("answer" if calls == max_calls or not box.tools
                else "call" if require_call and calls == 0 else "any")
        text = await _generate(ctx, turns, box.schemas[mode], adapter, sampling)
        choice = box.decode(text, mode)
        if box.is_answer(choice):
            return box.answer_of(choice)
        result = await _call(ctx, box.tool_of(choice), choice.arguments)
        turns += [ChatTurn(role="assistant", content=text), ChatTurn(role="user", content=result)]
    raise AssertionError("unreachable: the last turn's schema is the answer's")


def _with_instructions(turns: list[ChatTurn], text: str) -> list[ChatTurn]:
    if turns and turns[0].role == "system":
        return [ChatTurn(role="system", content=f"{turns[0].content}\n\n{text}"), *turns[1:]]
    return [ChatTurn(role="system", content=text), *turns]


async def _generate(ctx: ToolUser, turns: list[ChatTurn], schema: str, adapter: str | None,
                    sampling: dict[str, Any]) -> str:
    request = GenRequest(messages=list(turns), adapter=adapter, agent_id=ctx.id,
                         json_schema=schema, **sampling)
    outputs: list[GenOutput] = await ctx.runtime.generate_requests([request])
    return outputs[0].texts[0]


async def _call(ctx: ToolUser, t: Tool, args: msgspec.Struct) -> str:
    """Run ``t``, log the call and its result; the result as the model reads it."""
    call_id = new_id()
    _record(ctx, call_id, None, ctx.id, f"tool:{t.name}", "ToolCall",
            msgspec.json.encode(args))
    error = ""
    try:
        out = await t.run(args, ctx)
        data = msgspec.json.encode(out)
        said = out if isinstance(out, str) else data.decode()
    except Exception as exc:  # a tool's bug or refusal: the model hears of it, the agent goes on
        error = ToolError.code
        said = f"error: {type(exc).__name__}: {str(exc)[:500]}"
        data = msgspec.json.encode(said)
    _record(ctx, new_id(), call_id, f"tool:{t.name}", ctx.id, "ToolResult", data, error)
    return f"{t.name} returned: {said}"


def _record(ctx: ToolUser, msg_id: str, correlation: str | None, sender: str, recipient: str,
            kind: str, data: bytes, error: str = "") -> None:
    small = len(data) <= LOG_BODY_BYTES
    ctx.runtime.record(LogEntry(
        msg_id=msg_id, correlation_id=correlation, sender=sender, recipient=recipient, kind=kind,
        body=data.decode() if small else "", body_sha256="" if small else
        hashlib.sha256(data).hexdigest(), size=len(data), error=error, at=time.time()))
