"""Agents: what a role returns is the type its host sends; the renamed names still resolve."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from typing import Any

import pytest

import swarm.agents
from swarm.agents import Agent, AgentContext, AgentReport, AgentSpec, PairOutcome
from swarm.skills import Example
from swarm.wire.codec import GenOutput, GenRequest, StepDone, decode, encode

OLD, TEACHER, MERGED = "a" * 64, "b" * 64, "c" * 64


class Services:
    """Merging gives ``MERGED``; every answer is right (``" 2"`` for ``add: 1 + 1 =``)."""

    async def train(self, agent_id: str, base_adapter: str | None,
                    examples: Sequence[Example], hyper: dict[str, Any]) -> str:
        return OLD

    round = 0

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        return [GenOutput(texts=[" 2" if r.adapter == MERGED else " 3"]) for r in requests]

    async def fetch_adapter(self, sha: str, owner: str) -> None:
        return None

    async def merge(self, adapters: list[str], weights: list[float], method: str = "svd",
                    density: float = 0.5) -> str:
        assert adapters == [OLD, TEACHER]
        return MERGED


def test_what_an_agent_returns_is_what_its_host_sends() -> None:
    # Prepare: an agent whose merged adapter answers its held-out example right
    spec = AgentSpec(agent_id="s", train=(Example("add: 2 + 2 =", " 4", "add"),),
                     heldout=(Example("add: 1 + 1 =", " 2", "add"),))
    agent = Agent(spec)

    # Execute: a local step, then learning from a teacher, each sent in a StepDone
    ctx = AgentContext(agent, Services())  # type: ignore[arg-type]  (a model-only runtime)
    report = asyncio.run(agent.local_update(ctx))
    outcome = asyncio.run(agent.learn_from("t", TEACHER, ctx))
    sent, _ = decode(encode(StepDone(reports=[report], outcomes=[outcome])))

    # Assert: the same values arrive in the same types, with no conversion between
    assert isinstance(sent, StepDone)
    assert sent.reports == [AgentReport(agent_id="s", adapter=OLD, score=0.0,
                                        metrics={"score": 0.0, "skill.add": 0.0})]
    assert sent.outcomes == [PairOutcome(student="s", teacher="t", before=0.0, after=1.0,
                                         adapter=MERGED, accepted=True, parents=(OLD, TEACHER),
                                         skills={"add": 1.0})]
    assert sent.outcomes[0].reward == 1.0 and agent.adapter == MERGED


class Recording(Services):
    """``Services`` that keep every generation request."""

    def __init__(self) -> None:
        self.requests: list[GenRequest] = []

    async def generate_requests(self, requests: Sequence[GenRequest]) -> list[GenOutput]:
        self.requests.extend(requests)
        return await super().generate_requests(requests)


def test_a_chat_is_answered_by_the_agents_llm_with_its_own_adapter() -> None:
    # Prepare
    agent = Agent(AgentSpec(agent_id="s", skills=("add",)), adapter=MERGED)
    runtime = Recording()
    ctx = AgentContext(agent, runtime)  # type: ignore[arg-type]

    # Execute
    reply = asyncio.run(agent.on_chat(ctx, "user:ann", "what is 1 + 1?"))

    # Assert: the model's answer, with the agent's adapter, told who it is and who writes
    assert reply == " 2" and agent.messages_received == 1
    (request,) = runtime.requests
    assert request.adapter == MERGED and request.agent_id == "s"
    system, user = request.messages
    assert system.role == "system" and "You are s" in system.content
    assert "add" in system.content and "user:ann" in system.content
    assert (user.role, user.content) == ("user", "what is 1 + 1?")


@pytest.mark.parametrize(("old", "new"), [("Report", AgentReport), ("Outcome", PairOutcome)])
def test_the_old_names_still_resolve_with_a_warning(old: str, new: type) -> None:
    with pytest.warns(DeprecationWarning, match=new.__name__):
        assert getattr(swarm.agents, old) is new
    with warnings.catch_warnings(), pytest.raises(AttributeError):
        warnings.simplefilter("error")
        swarm.agents.Nothing  # noqa: B018


def test_a_role_written_against_the_old_hooks_is_refused_with_what_to_change() -> None:
    from swarm.errors import RegistryError

    class OldStyle(Agent):
        async def local_update(self, host: Any) -> AgentReport:  # type: ignore[override]
            return AgentReport(agent_id=self.id)

    class OldChat(Agent):
        async def on_chat(self, sender: str, content: str) -> str | None:  # type: ignore[override]
            return None

    with pytest.raises(RegistryError, match=r"local_update\(self, ctx\).*CHANGELOG"):
        swarm.agents.role("test_old_style")(OldStyle)
    with pytest.raises(RegistryError, match=r"on_chat\(self, ctx, sender, content\)"):
        swarm.agents.role("test_old_chat")(OldChat)
    assert "test_old_style" not in swarm.agents.ROLES.names()
    with pytest.raises(ImportError, match="AgentContext"):
        from swarm.agents import HostServices  # noqa: F401
