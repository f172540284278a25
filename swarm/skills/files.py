"""File skills: a config's own skills, read from JSONL files as finite pools of examples.

A config's ``skills`` section (``swarm.skills.settings.SkillFileSection``) names
a file of one example a line, ``{"prompt": "...", "completion": "..."}`` (both
non-empty strings, no other key; blank lines are skipped). A file skill is a
pool, not a generator, so it is used differently from a registered skill:

- ``FileSkill.split`` shuffles the pool with the swarm seed and sets the
  held-out share aside first; a prompt of the held-out share never occurs in
  the training share (a file may hold a prompt twice);
- the population deals the training share out (``deal``): disjoint consecutive
  runs, one per agent, as many as each agent's round-robin slots of the skill
  (``slot_counts``, the order ``make_dataset`` draws in);
- ``FileSkill.drawing(train)`` is a ``Skill`` drawing from the training share
  only, which is what a protocol gets when it asks for fresh prompts of the
  skill (knexa's distillation), so no held-out prompt is ever trained on.

Every size is bounded (``MAX_FILE_BYTES``, ``MAX_LINES``, ``MAX_TEXT``); a
malformed file is a ``ConfigError`` naming the file and the line.
"""

from __future__ import annotations

import hashlib
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np

from swarm.errors import ConfigError
from swarm.skills.registry import Skill
from swarm.wire.messages import Example

__all__ = ["FileSkill", "read_skill_file", "deal", "slot_counts", "heldout_quota",
           "MAX_FILE_BYTES", "MAX_LINES", "MAX_TEXT"]

MAX_FILE_BYTES = 64 << 20
"""A skill file's size: every process of a swarm reads it whole."""

MAX_LINES = 1_000_000
"""Examples in one file: as many as a swarm trains on in all (``swarm.config.rules``)."""

MAX_TEXT = 32_768
"""Characters of one prompt or completion."""

_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]


class _Line(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prompt: _Text
    completion: _Text


_DECODER = msgspec.json.Decoder(_Line)
_LINE_BYTES = 6 * 2 * MAX_TEXT + 1024  # two texts of \uXXXX escapes, and the keys


def read_skill_file(path: Path, name: str) -> tuple[Example, ...]:
    """The examples of skill ``name`` in the JSONL file ``path``, in file order.

    Raises:
        ConfigError: the file cannot be read, is too large, holds no example, or
            a line is not UTF-8, not JSON, not an object of exactly a non-empty
            ``prompt`` and ``completion`` (``PATH:LINE: what is wrong``).
    """
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a pipe or a device would never end
            raise ConfigError(f"{path}: not a regular file (a skill file is a JSONL file)")
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read skill file ({exc.strerror})") from None
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"{path!r}: cannot read skill file ({exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB, too large a skill file")
    examples: list[Example] = []
    for number, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        if not line.strip():
            continue
        if len(examples) == MAX_LINES:
            raise ConfigError(f"{path}:{number}: more than {MAX_LINES} examples in one file")
        prompt, completion = _decode(line, f"{path}:{number}")
        examples.append(Example(prompt, completion, name))
    if not examples:
        raise ConfigError(f"{path}: no examples (one JSON object a line: "
                          '{"prompt": "...", "completion": "..."})')
    return tuple(examples)


def _decode(line: bytes, where: str) -> tuple[str, str]:
    if len(line) > _LINE_BYTES:
        raise ConfigError(f"{where}: a line of {len(line)} bytes, too long (a prompt or "
                          f"completion holds at most {MAX_TEXT} characters)")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte 0x{line[exc.start]:02x})") from None
    try:
        item = _DECODER.decode(line)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc} (a line is {{\"prompt\": \"...\", "
                          "\"completion\": \"...\"}, both non-empty strings)") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    return item.prompt, item.completion


@dataclass(frozen=True)
class FileSkill:
    """A skill of a config: the examples of its file, a pool to split and deal."""

    name: str
    examples: tuple[Example, ...]
    description: str = ""

    @classmethod
    def read(cls, name: str, path: Path, description: str = "") -> FileSkill:
        """Read the skill from its file (see ``read_skill_file``)."""
        return cls(name, read_skill_file(path, name), description)

    def split(self, heldout: int, seed: int) -> tuple[list[Example], list[Example]]:
        """Shuffle with ``seed``; the held-out share (``heldout`` distinct prompts) and the rest.

        The training share is every other example whose prompt is not held out,
        in the shuffled order. The same pool and seed always give the same split.
        """
        key = int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:8], "little")
        order = np.random.default_rng([seed, 3, key]).permutation(len(self.examples))
        held: list[Example] = []
        prompts: set[str] = set()
        for i in order:
            if len(held) == heldout:
                break
            example = self.examples[i]
            if example.prompt not in prompts:
                held.append(example)
                prompts.add(example.prompt)
        train = [self.examples[i] for i in order if self.examples[i].prompt not in prompts]
        return held, train

    def drawing(self, train: Sequence[Example]) -> Skill:
        """A ``Skill`` of this name whose examples are drawn (with replacement) from ``train``.

        Raises:
            ValueError: ``train`` is empty.
        """
        if not train:
            raise ValueError(f"file skill {self.name!r} has no training examples to draw from")
        return Skill(self.name, _Draw(train), self.description)


class _Draw:
    """``make(rng)`` of a drawing skill: one of a fixed list of examples, uniformly."""

    __slots__ = ("pairs",)

    def __init__(self, examples: Sequence[Example]) -> None:
        self.pairs = tuple((e.prompt, e.completion) for e in examples)

    def __call__(self, rng: np.random.Generator) -> tuple[str, str]:
        return self.pairs[int(rng.integers(len(self.pairs)))]


def slot_counts(skills: Sequence[str], n: int) -> Counter[str]:
    """How many of ``n`` examples drawn round-robin over ``skills`` each skill gives."""
    counts: Counter[str] = Counter()
    for position, name in enumerate(skills):
        counts[name] += len(range(position, n, len(skills)))
    return counts


def heldout_quota(skills: Sequence[str], heldout: int) -> dict[str, int]:
    """``heldout`` examples shared as evenly as ``skills`` (in their order) allow."""
    share, extra = divmod(heldout, len(skills)) if skills else (0, 0)
    return {name: share + (i < extra) for i, name in enumerate(skills)}


def deal(train: Sequence[Example], demands: Sequence[int]) -> list[list[Example]]:
    """Consecutive, disjoint runs of ``train``, one of each length in ``demands``.

    Raises:
        ValueError: the demands add up to more than ``train`` holds.
    """
    if sum(demands) > len(train):
        raise ValueError(f"{sum(demands)} examples asked of a pool of {len(train)}")
    runs, start = [], 0
    for count in demands:
        runs.append(list(train[start:start + count]))
        start += count
    return runs
