"""Synthetic skills: seeded data, answers that are right, formats the tiny tokenizer splits well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from swarm.errors import RegistryError
from swarm.registry import Registry
from swarm.skills import (
    LETTERS,
    Example,
    Skill,
    as_skill,
    evaluate,
    evaluate_by_skill,
    exact_match,
    get_skill,
    make_dataset,
    register_skill,
    skill_names,
    split_by_skill,
    split_dirichlet,
    split_iid,
    train_test_split,
)

BUILTIN = ["add", "count", "reverse", "sort"]


def _letters(prompt: str) -> list[str]:
    return prompt.split(":", 1)[1].rstrip(" =").split()


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = make_dataset(BUILTIN, 40, np.random.default_rng(7))
    b = make_dataset(BUILTIN, 40, np.random.default_rng(7))
    c = make_dataset(BUILTIN, 40, np.random.default_rng(8))

    assert a == b
    assert a != c
    assert {ex.skill for ex in a} == set(BUILTIN)


def test_every_builtin_answer_is_correct() -> None:
    rng = np.random.default_rng(0)
    for ex in make_dataset(BUILTIN, 400, rng):
        assert ex.prompt.endswith(" =") and ex.completion.startswith(" ")
        answer = ex.completion.split()
        if ex.skill == "reverse":
            assert answer == _letters(ex.prompt)[::-1]
        elif ex.skill == "sort":
            assert answer == sorted(_letters(ex.prompt))
        elif ex.skill == "add":
            left, right = ex.prompt[len("add: ") : -2].split(" + ")
            assert int(answer[0]) == int(left) + int(right)
        else:
            target = ex.prompt.split(":")[0].split()[1]
            assert int(answer[0]) == _letters(ex.prompt).count(target)
            assert set(_letters(ex.prompt)) <= set(LETTERS)


def test_format_is_one_token_per_letter_and_concatenates(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    for ex in make_dataset(BUILTIN, 80, np.random.default_rng(1)):
        prompt = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        answer = tok(ex.completion, add_special_tokens=False)["input_ids"]
        joint = tok(ex.prompt + ex.completion, add_special_tokens=False)["input_ids"]

        assert prompt + answer == joint
        if ex.skill in ("reverse", "sort"):
            assert len(answer) == len(ex.completion.split())


def test_registry_refuses_duplicates_and_names_unknown_skills() -> None:
    shout = Skill("shout_test", lambda rng: ("shout: a =", " A"))
    register_skill(shout)

    assert get_skill("shout_test") is shout
    assert "shout_test" in skill_names()
    with pytest.raises(RegistryError, match="already registered"):
        register_skill(Skill("shout_test", lambda rng: ("x =", " y")))
    with pytest.raises(RegistryError, match="reverse"):
        get_skill("revers")
    with pytest.raises(RegistryError):
        make_dataset(["nope"], 3, np.random.default_rng(0))


def test_splits_cover_the_data_and_can_be_non_iid() -> None:
    rng = np.random.default_rng(3)
    data = make_dataset(BUILTIN, 100, rng)

    shards = split_iid(data, 3, rng)
    by_skill = split_by_skill(["reverse", "add"], 4, 10, rng)
    skewed = split_dirichlet(BUILTIN, 6, 50, 0.05, rng)

    assert sorted(len(s) for s in shards) == [33, 33, 34]
    assert sorted((e.prompt, e.completion) for s in shards for e in s) == sorted(
        (e.prompt, e.completion) for e in data
    )
    assert [{e.skill for e in s} for s in by_skill] == [{"reverse"}, {"add"}] * 2
    top_shares = [max(sum(e.skill == k for e in s) for k in BUILTIN) / 50 for s in skewed]
    assert np.mean(top_shares) > 0.7


def test_held_out_prompts_never_occur_in_train() -> None:
    rng = np.random.default_rng(4)
    train, test = train_test_split(make_dataset(["reverse"], 500, rng), 0.2, rng)

    assert len(test) > 50
    assert not {e.prompt for e in train} & {e.prompt for e in test}


def test_exact_match_and_evaluate() -> None:
    data = [Example("reverse: a b =", " b a", "reverse"), Example("add: 1 + 2 =", " 3", "add")]
    oracle = {e.prompt: e.completion for e in data}

    assert exact_match("b a ", " b a")
    assert not exact_match(" b a c", " b a")
    assert evaluate(lambda ps: [oracle[p] for p in ps], data) == 1.0
    assert evaluate(lambda ps: [" b a"] * len(ps), data) == 0.5
    assert evaluate_by_skill(lambda ps: [" b a"] * len(ps), data) == {"add": 0.0, "reverse": 1.0}
    assert evaluate(lambda ps: [], []) == 0.0
    with pytest.raises(ValueError, match="answers"):
        evaluate(lambda ps: [], data)


def test_make_dataset_takes_skills_as_well_as_names() -> None:
    upper = Skill("upper_test", lambda rng: (f"up: {'ab'[int(rng.integers(2))]} =", " X"))

    data = make_dataset([upper, "add"], 6, np.random.default_rng(0))

    assert [ex.skill for ex in data] == ["upper_test", "add"] * 3
    assert all(ex.prompt in ("up: a =", "up: b =") for ex in data[::2])


# -- skills from other packages: the entry-point group swarm.skills ---------------------------

THIRD_PARTY_SKILLS = '''
from swarm.skills import Skill

SHOUT = Skill("shout", lambda rng: ("shout: a =", " A"), "upper-case one letter")


def make_whisper():
    return Skill("whisper", lambda rng: ("whisper: A =", " a"))
'''


def _distribution(root: Path, entries: str) -> None:
    """A distribution in ``root`` (on the path) declaring ``entries`` of ``swarm.skills``."""
    (root / "thirdparty_skills.py").write_text(THIRD_PARTY_SKILLS)
    dist = root / "thirdparty_skills-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-skills\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[swarm.skills]\n{entries}")


def test_entry_point_skills_are_a_skill_or_a_factory(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _distribution(tmp_path, "shout = thirdparty_skills:SHOUT\n"
                            "whisper = thirdparty_skills:make_whisper\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[Skill] = Registry("skill", "swarm.skills", load=as_skill)

    shout, whisper = registry.get("shout"), registry.get("whisper")

    assert shout.example(np.random.default_rng(0)) == Example("shout: a =", " A", "shout")
    assert whisper.name == "whisper" and {"shout", "whisper"} <= set(registry.names())
    sys.modules.pop("thirdparty_skills", None)


def test_an_entry_point_that_is_not_its_skill_is_refused() -> None:
    whisper = Skill("whisper", lambda rng: ("w =", " w"))

    assert as_skill("whisper", lambda: whisper) is whisper
    with pytest.raises(RegistryError, match="entry point must be named as its skill"):
        as_skill("shout", whisper)
    with pytest.raises(RegistryError, match="not a swarm.skills.Skill"):
        as_skill("shout", lambda: "shout")
    with pytest.raises(RegistryError, match="ASCII Python identifier"):
        as_skill("a-b", Skill("a-b", lambda rng: ("x =", " y")))


def test_a_config_names_an_entry_point_skill(tmp_path: Path) -> None:
    # Prepare: a third party's skills, declared only by its distribution; a fresh process
    _distribution(tmp_path, "shout = thirdparty_skills:SHOUT\n"
                            "whisper = thirdparty_skills:make_whisper\n")
    config = tmp_path / "swarm.yaml"
    config.write_text(json.dumps({"swarm": {"name": "ep", "heldout": 4},
                                  "agents": [{"name": "a", "skills": ["shout", "add"],
                                              "examples": 4}]}))
    script = ("import json, sys\n"
              "from swarm.config import load_config\n"
              "from swarm.runtime.population import build_population\n"
              "from swarm.skills import skill_names\n"
              "(spec,) = build_population(load_config(sys.argv[1]))\n"
              "print(json.dumps([[e.skill for e in spec.train], skill_names()]))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    # Execute
    done = subprocess.run([sys.executable, "-c", script, str(config)], capture_output=True,
                          text=True, timeout=120, env=env, check=False)

    # Assert: found by the config, drawn like a built-in one, listed with the others
    assert done.returncode == 0, done.stderr
    skills, names = json.loads(done.stdout)
    assert skills == ["shout", "add", "shout", "add"]
    assert names == ["add", "count", "reverse", "shout", "sort", "whisper"]
