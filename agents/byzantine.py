"""The ``byzantine`` role: an agent that attacks the swarm it is in (after Bristle, SybilWall).

Each round it trains an honest adapter on its local data (kept to itself, the
next round trains on from it) and publishes a poisoned one instead:

- ``attack: sign_flip``: the honest update times ``-scale`` (a lesson that
  unlearns what the teacher learnt, and more);
- ``attack: scale``: the honest update times ``scale`` (a lesson far too strong);
- ``attack: random``: an adapter trained on its prompts with the answers
  shuffled between them, at ten times the learning rate, times ``scale``;
- ``attack: none``: the honest adapter (the agent only lies).

It lies about itself: ``inflate`` reports a held-out score of 1.0 (so it
teaches every pair it is in: the higher score teaches), ``lie`` reports the
metrics of a perfect agent (every skill at 1.0), which is what its profile is
built from. It never takes a lesson. The config places ``byzantine.count`` of
them, spread over the groups (``swarm.runtime.population``), or a group names
``role: byzantine`` with these settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from swarm.agents.base import Agent, AgentReport, AgentSpec
from swarm.agents.registry import role
from swarm.settings import Settings
from swarm.skills import Example

if TYPE_CHECKING:
    from swarm.agents.context import AgentContext

__all__ = ["Byzantine", "ByzantineSettings"]


class ByzantineSettings(Settings, frozen=True):
    """How a ``byzantine`` agent attacks and lies."""

    attack: Literal["sign_flip", "scale", "random", "none"] = "sign_flip"
    scale: Annotated[float, msgspec.Meta(gt=0.0, le=100.0)] = 4.0
    inflate: bool = True
    lie: bool = True


@role("byzantine")
class Byzantine(Agent):
    """Publishes poisoned adapters and inflated scores; never learns from others."""

    __slots__ = ("honest",)
    learns = False
    settings_schema = ByzantineSettings

    def __init__(self, spec: AgentSpec, adapter: str | None = None) -> None:
        super().__init__(spec, adapter)
        self.honest: str | None = adapter

    @property
    def attack(self) -> ByzantineSettings:
        """Its settings (the defaults when the config gives none)."""
        return self.settings if isinstance(self.settings, ByzantineSettings) else (
            ByzantineSettings())

    async def local_update(self, ctx: AgentContext) -> AgentReport:
        """Train honestly, publish the poison, report what it likes."""
        how = self.attack
        if self.spec.train:
            self.honest = await ctx.train(self.spec.train, base=self.honest)
        self.adapter = await self._poison(ctx) if self.honest else None
        true = await self.evaluate(ctx)
        self.score = 1.0 if how.inflate else true
        self.skill_scores = ({k: 1.0 for k in self.last_skills} if how.lie
                             else dict(self.last_skills))
        self.history.append(self.score)
        metrics = {"score": self.score, "true_score": true, **self.skill_metrics()}
        if how.lie:
            metrics.pop("true_score")
        return AgentReport(agent_id=self.id, adapter=self.adapter, score=self.score,
                           metrics=metrics)

    async def _poison(self, ctx: AgentContext) -> str | None:
        how, honest = self.attack, self.honest
        if honest is None or how.attack == "none":
            return honest
        if how.attack == "random":
            shuffled = list(self.spec.train)
            answers = [ex.completion for ex in shuffled][::-1]
            noise = [Example(ex.prompt, a, ex.skill) for ex, a in zip(shuffled, answers,
                                                                       strict=True)]
            hyper = dict(self.spec.hyper)
            hyper["learning_rate"] = float(hyper.get("learning_rate", 3e-3)) * 10
            honest = await ctx.train(noise, hyper, base=None)
        weight = -how.scale if how.attack == "sign_flip" else how.scale
        return await ctx.merge_many([honest], [weight], method="cat")

    def save_state(self) -> dict[str, str | None]:
        """The honest adapter it trains on from (a restarted host keeps attacking the same way)."""
        return {"honest": self.honest}

    def load_state(self, state: object) -> None:
        if isinstance(state, dict) and isinstance(state.get("honest"), str | None):
            self.honest = state.get("honest")
