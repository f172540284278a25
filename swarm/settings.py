"""What every part's settings are made of: a strict frozen Struct and bounded value types.

Each part declares the section of the config it reads (``transport``,
``model``, ``matchmaker``, ...) as a ``Settings`` subclass next to its code,
and each registered backend, matchmaker or protocol declares its own settings
the same way; ``swarm.config`` assembles them into one schema. Every count
has an upper bound: a config that asks for 10**12 steps or agents is refused
by ``swarm config check``, not discovered as a hung run.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = [
    "Settings", "PosInt", "Seed", "Fraction", "Name", "ModuleName", "PathText", "Port",
]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of a settings section: immutable, keyword-only, no unknown keys."""


PosInt = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
Seed = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Fraction = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+\Z")]
# A module name, never a pattern: peft and vLLM read a string as a regular expression.
ModuleName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.]+\Z")]
PathText = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Port = Annotated[int, msgspec.Meta(ge=1024, le=65535)]
