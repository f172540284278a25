"""File skills: a config's JSONL pools, checked by ``config check``, dealt by the population.

Real files, the real loader and ``build_population``; nothing is faked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import yaml

from swarm.cli.main import main
from swarm.config import load_config, parse_config
from swarm.errors import ConfigError
from swarm.runtime.population import build_population, resolve_skills
from swarm.skills import Example, FileSkill, Skill, make_dataset, read_skill_file, slot_counts

ROOT = Path(__file__).resolve().parent.parent


def _lines(n: int, start: int = 0) -> str:
    return "".join(json.dumps({"prompt": f"capital of land{i}:", "completion": f" city{i}"}) + "\n"
                   for i in range(start, start + n))


def _swarm(tmp_path: Path, lines: str, agents: list[dict[str, Any]], *, heldout: int = 20,
           seed: int = 0) -> Path:
    """A config in ``tmp_path/cfg`` whose skill ``capitals`` is ``cfg/data/capitals.jsonl``."""
    (tmp_path / "cfg" / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cfg" / "data" / "capitals.jsonl").write_text(lines)
    config = {"swarm": {"name": "files", "seed": seed, "heldout": heldout},
              "skills": [{"name": "capitals", "file": "data/capitals.jsonl",
                          "description": "country -> capital"}],
              "agents": agents}
    path = tmp_path / "cfg" / "swarm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides or [])
    return caught.value.problems


def test_a_pool_is_dealt_disjointly_and_held_out_apart(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the config names its file relative to its own folder; we run from elsewhere
    path = _swarm(tmp_path, _lines(200), [{"name": "geo", "count": 3, "skills": ["capitals"],
                                            "examples": 40}])
    monkeypatch.chdir(tmp_path)

    # Execute
    config = load_config(path)
    specs = build_population(config)

    # Assert: the path is the config folder's; each agent has its examples, no line twice
    assert config.skills[0].file == str(tmp_path / "cfg" / "data" / "capitals.jsonl")
    file_lines = set(read_skill_file(Path(config.skills[0].file), "capitals"))
    train = [ex for spec in specs for ex in spec.train]
    assert [len(spec.train) for spec in specs] == [40, 40, 40]
    assert len(set(train)) == 120 and set(train) <= file_lines
    assert {ex.skill for ex in train} == {"capitals"}
    heldout = specs[0].heldout
    assert len(heldout) == 20 and set(heldout) <= file_lines
    assert not {ex.prompt for ex in heldout} & {ex.prompt for ex in train}
    assert all(spec.heldout == heldout for spec in specs)


def test_the_same_seed_deals_the_same_data(tmp_path: Path) -> None:
    path = _swarm(tmp_path, _lines(200), [{"name": "geo", "count": 2, "skills": ["capitals"],
                                            "examples": 50}])

    first, again = build_population(load_config(path)), build_population(load_config(path))
    other = build_population(load_config(path, ["swarm.seed=1"]))

    assert [s.train for s in first] == [s.train for s in again]
    assert first[0].heldout == again[0].heldout
    assert [s.train for s in first] != [s.train for s in other]
    assert first[0].heldout != other[0].heldout


def test_a_mixed_group_takes_both_in_round_robin_slots(tmp_path: Path) -> None:
    path = _swarm(tmp_path, _lines(100), [
        {"name": "mix", "count": 2, "skills": ["capitals", "add"], "examples": 21},
        {"name": "num", "count": 1, "skills": ["add"], "examples": 10}])

    specs = build_population(load_config(path))

    assert [ex.skill for ex in specs[0].train[:4]] == ["capitals", "add", "capitals", "add"]
    assert [sum(ex.skill == "capitals" for ex in s.train) for s in specs] == [11, 11, 0]
    assert len({ex for s in specs[:2] for ex in s.train if ex.skill == "capitals"}) == 22
    # the held-out mixture shares swarm.heldout evenly between the two skills
    assert sorted(ex.skill for ex in specs[0].heldout) == ["add"] * 10 + ["capitals"] * 10
    assert slot_counts(["capitals", "add"], 21) == {"capitals": 11, "add": 10}


# The sha256 of the population of BUILTIN_CONFIG, computed before file skills existed
# (commit 193539c): built-in skills draw exactly the same data as they did.
BUILTIN_CONFIG = {
    "swarm": {"name": "ref", "seed": 7, "heldout": 40},
    "agents": [{"name": "a", "count": 2, "skills": ["add", "count"], "examples": 30},
               {"name": "b", "count": 3, "skills": ["reverse"], "examples": 20},
               {"name": "c", "count": 1, "skills": ["sort", "reverse", "add"], "examples": 25}]}
BUILTIN_SHA256 = "00b309072160706139fc7aedd4418ecc317246eab2e80b382f862539f8fd6026"


def test_builtin_skills_give_the_same_data_as_before() -> None:
    specs = build_population(parse_config(BUILTIN_CONFIG))

    blob = msgspec.json.encode([[s.agent_id, s.train, s.heldout] for s in specs])
    assert hashlib.sha256(blob).hexdigest() == BUILTIN_SHA256


GOOD = '{"prompt": "a =", "completion": " b"}\n'

MALFORMED = [
    # (the bad line, what the problem says)
    ('{"prompt": "a =", "completion": " b", "answer": "c"}', "unknown field `answer`"),
    ('{"prompt": "a ="}', "missing required field `completion`"),
    ('{"prompt": "", "completion": " b"}', "length >= 1"),
    ('{"prompt": 3, "completion": " b"}', "Expected `str`, got `int`"),
    ('["a =", " b"]', "Expected `object`, got `array`"),
    ('{"prompt": "a =", "completion": " b"', "not valid JSON"),
    ('{"prompt": "' + "x" * 40_000 + '", "completion": " b"}', "length <= 32768"),
    (b'{"prompt": "\xff", "completion": " b"}', "not UTF-8 text (byte 0xff)"),
]


@pytest.mark.parametrize(("line", "fragment"), MALFORMED)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path: Path, line: str | bytes,
                                                    fragment: str) -> None:
    path = _swarm(tmp_path, "", [{"name": "geo", "skills": ["capitals"], "examples": 1}],
                  heldout=1)
    data = tmp_path / "cfg" / "data" / "capitals.jsonl"
    data.write_bytes((GOOD * 3 + "\n").encode() + (line if isinstance(line, bytes)
                                                    else line.encode()) + b"\n" + GOOD.encode())

    (problem,) = _problems(path)

    assert problem.startswith(f"skills.0.file: {data}:5: ")  # the blank line 4 counts
    assert fragment in problem


def test_config_check_shows_a_bad_file_in_one_line(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _swarm(tmp_path, GOOD + '{"prompt": "a =", "reply": " b"}\n',
                  [{"name": "geo", "skills": ["capitals"], "examples": 1}], heldout=1)

    code = main(["config", "check", str(path)])

    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1
    assert f"skills.0.file: {tmp_path / 'cfg' / 'data' / 'capitals.jsonl'}:2: " in err
    assert "unknown field `reply`" in err


def test_blank_lines_are_skipped_and_a_file_of_none_refused(tmp_path: Path) -> None:
    (tmp_path / "blank.jsonl").write_text("\n  \n" + GOOD + "\r\n\n" + GOOD)
    (tmp_path / "empty.jsonl").write_text("\n \n")

    examples = read_skill_file(tmp_path / "blank.jsonl", "s")

    assert [(e.prompt, e.completion, e.skill) for e in examples] == [("a =", " b", "s")] * 2
    with pytest.raises(ConfigError, match="no examples"):
        read_skill_file(tmp_path / "empty.jsonl", "s")
    with pytest.raises(ConfigError, match="cannot read skill file"):
        read_skill_file(tmp_path / "missing.jsonl", "s")
    with pytest.raises(ConfigError, match="not a regular file"):
        read_skill_file(tmp_path, "s")


def test_too_small_a_pool_says_how_many_it_has_and_how_many_are_asked(tmp_path: Path) -> None:
    path = _swarm(tmp_path, _lines(50), [
        {"name": "geo", "count": 2, "skills": ["capitals"], "examples": 15},
        {"name": "mix", "count": 1, "skills": ["add", "capitals"], "examples": 10}])

    (problem,) = _problems(path, ["agents.0.examples=30"])

    assert problem.startswith(f"skills.0.file: {tmp_path / 'cfg' / 'data' / 'capitals.jsonl'} "
                              "holds 50 examples, too few for skill 'capitals'")
    assert "10 held out" in problem and "leave 40 to train on" in problem
    assert "the agents ask 65 (agents.0: 2 x 30, agents.1: 1 x 5)" in problem
    assert "lower agents.0.examples or agents.1.examples or swarm.heldout" in problem
    assert len(build_population(load_config(path))[0].train) == 15  # 2 x 15 + 5 of 40 fit


def test_a_file_skill_needs_a_new_identifier_and_its_name_is_known(tmp_path: Path) -> None:
    path = _swarm(tmp_path, _lines(30), [{"name": "geo", "skills": ["capitls"], "examples": 5}])

    typo = _problems(path)
    builtin = _problems(path, ["skills.0.name=add", "agents.0.skills=[add]"])
    dashed = _problems(path, ["skills.0.name=land-capitals", "agents.0.skills=[add]"])
    unknown_key = _problems(path, ["skills.0.answers=x"])

    (problem,) = typo  # other tests may have registered more skills in this process
    assert problem.startswith("agents.0.skills.0: unknown skill 'capitls'; did you mean "
                              "'capitals'? (known: add, capitals, count, reverse, ")
    assert builtin == ["skills.0.name: 'add' is a registered skill's name; choose another"]
    assert dashed == ["skills.0.name: 'land-capitals' must be a Python identifier "
                      "(letters, digits, '_')"]
    assert len(unknown_key) == 1 and "skills.0.answers" in unknown_key[0]


def test_distillation_skills_draw_from_the_training_share_only(tmp_path: Path) -> None:
    # Prepare: a pool of 40; 10 held out, 30 left, of which the one agent trains on 16
    path = _swarm(tmp_path, _lines(40), [{"name": "geo", "skills": ["capitals", "add"],
                                          "examples": 32}])
    config = load_config(path)
    (spec,) = build_population(config)

    # Execute: what a protocol draws fresh prompts from
    skills = resolve_skills(config)
    drawn = make_dataset([skills["capitals"]], 500, np.random.default_rng(0))

    # Assert: the training share, all of it in time, never a held-out prompt
    held = {ex.prompt for ex in spec.heldout if ex.skill == "capitals"}
    assert len(held) == 10
    assert not {ex.prompt for ex in drawn} & held
    assert len({ex.prompt for ex in drawn}) == 30
    assert skills["add"].name == "add" and isinstance(skills["capitals"], Skill)


def test_a_split_is_seeded_and_keeps_a_twice_held_prompt_out_of_training() -> None:
    pairs = [("p1", " a"), ("p1", " b"), ("p2", " c"), ("p3", " d"), ("p4", " e"), ("p5", " f")]
    skill = FileSkill("dup", tuple(Example(p, c, "dup") for p, c in pairs))

    splits = [skill.split(3, seed) for seed in range(8)]

    assert skill.split(3, 5) == splits[5]
    for held, train in splits:
        assert len({ex.prompt for ex in held}) == len(held) == 3
        prompts = {ex.prompt for ex in held}
        assert not prompts & {ex.prompt for ex in train}
        assert len(train) == (2 if "p1" in prompts else 3)  # both p1 lines go one way
    assert len({tuple(held) for held, _ in splits}) > 1
    with pytest.raises(ValueError, match="no training examples"):
        skill.drawing([])


def test_the_example_config_deals_its_file_skill() -> None:
    config = load_config(ROOT / "configs" / "skills.yaml")

    specs = build_population(config)

    assert config.skills[0].file == str(ROOT / "configs" / "skills" / "largest.jsonl")
    dealt = [ex for spec in specs for ex in spec.train if ex.skill == "largest"]
    assert len(dealt) == len(set(dealt)) == 2 * 128 + 2 * 64
    assert all(ex.completion == " " + max(ex.prompt.split()[1:-1]) for ex in dealt)
