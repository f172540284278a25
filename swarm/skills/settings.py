"""The config's ``skills`` section: skills read from JSONL files (``swarm.skills.files``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from swarm.settings import Name, PathText, Settings

__all__ = ["SkillFileSection", "MAX_FILE_SKILLS"]

MAX_FILE_SKILLS = 64
"""File skills in one config: each is read, whole, by every process of the swarm."""


class SkillFileSection(Settings, frozen=True):
    """A skill whose examples are the lines of a JSONL file (a finite pool, not a generator).

    ``file`` is relative to the config file's folder (``load_config`` makes it
    absolute; a mapping given to ``parse_config`` is read relative to the
    working directory). ``name`` is a Python identifier that no registered
    skill has (the config rules check both, and read the file).
    """

    name: Name
    file: PathText
    description: Annotated[str, msgspec.Meta(max_length=1000)] = ""
