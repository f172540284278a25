"""The config schema: the quickstart validates, and broken configs name key and problem."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from swarm.cli.main import main
from swarm.config import load_config
from swarm.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _base() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def test_quickstart_validates() -> None:
    config = load_config(QUICKSTART)

    assert config.swarm.name == "quickstart"
    assert config.agent_count == 8
    assert config.model.backend == "vllm"


def test_config_check_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(QUICKSTART)]) == 0
    assert "name: quickstart" in capsys.readouterr().out

    bad = _base()
    bad["swarm"]["rounds"] = 0
    assert main(["config", "check", str(_write(tmp_path, bad))]) == 2
    assert "swarm.rounds" in capsys.readouterr().err


def _mutate(path: list, value: object, delete: bool = False) -> dict:
    data = _base()
    node = data
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


BROKEN = [
    # (description, config data, override, expected fragments)
    ("wrong type", _mutate(["swarm", "rounds"], "five"), None, ["swarm.rounds", "int", "'five'"]),
    ("unknown key", _mutate(["swarm", "colour"], "red"), None, ["swarm.colour", "unknown key"]),
    ("typo'd key", _mutate(["swarm", "roudns"], 3), None, ["swarm.roudns", "did you mean 'rounds'"]),
    ("typo'd section", {**_base(), "matchmakr": {}}, None, ["matchmakr", "did you mean 'matchmaker'"]),
    ("missing required key", _mutate(["swarm", "name"], None, delete=True), None, ["swarm.name", "required"]),
    ("missing section", {k: v for k, v in _base().items() if k != "agents"}, None, ["agents", "required"]),
    ("out of range", _mutate(["swarm", "rounds"], -2), None, ["swarm.rounds", ">= 1", "-2"]),
    ("bad enum", _mutate(["model", "backend"], "tensorflow"), None, ["model.backend", "vllm", "'tensorflow'"]),
    ("fraction out of range", _mutate(["model", "gpu_memory_utilization"], 1.5), None, ["model.gpu_memory_utilization", "<= 1.0"]),
    ("typo'd matchmaker setting", _mutate(["matchmaker", "lamda"], 2), None, ["matchmaker.lamda", "did you mean 'lam'", "allowed for matchmaker 'linucb'"]),
    ("bad protocol setting", _mutate(["protocol", "exchange"], "swap"), None, ["protocol.exchange", "'swap'", "'distill'"]),
    ("setting of another backend", _mutate(["model", "colour"], "red"), None, ["model.colour", "unknown key", "backend 'vllm'"]),
    ("nested list item", _mutate(["agents", 0, "count"], 0), None, ["agents.0.count", ">= 1"]),
    ("unknown key in list item", _mutate(["agents", 1, "rol"], "x"), None, ["agents.1.rol", "did you mean 'role'"]),
    ("bad override value", _base(), "swarm.rounds=many", ["swarm.rounds", "'many'"]),
    ("override of unknown key", _base(), "swarm.rouns=3", ["swarm.rouns", "did you mean 'rounds'"]),
    ("malformed override", _base(), "swarm.rounds", ["KEY.PATH=VALUE"]),
    ("override bad list index", _base(), "agents.9.count=2", ["agents.9", "index"]),
    ("not yaml", "swarm: [unclosed", None, ["not valid YAML"]),
]


@pytest.mark.parametrize("desc, data, override, fragments", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_key_and_problem(
    tmp_path: Path, desc: str, data: object, override: str | None, fragments: list[str]
) -> None:
    path = _write(tmp_path, data)

    with pytest.raises(ConfigError) as info:
        load_config(path, [override] if override else [])

    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{desc}: {fragment!r} not in {message!r}"


def test_override_applies_with_validation() -> None:
    config = load_config(QUICKSTART, ["swarm.rounds=2", "agents.0.count=3", "launcher.restart=false"])

    assert config.swarm.rounds == 2
    assert config.agents[0].count == 3
    assert config.launcher.restart is False


# -- YAML a config must not hold ----------------------------------------------------------

_QUICKSTART_TEXT = QUICKSTART.read_text()

STRICT_YAML = [
    # (description, file text, expected fragments)
    ("duplicate section", _QUICKSTART_TEXT + "swarm: {name: other}\n",
     [f"line {_QUICKSTART_TEXT.count(chr(10)) + 1}: swarm: duplicate key (also on line 2)"]),
    ("duplicate key", _QUICKSTART_TEXT.replace("  rounds: 4\n", "  rounds: 4\n  rounds: 400\n"),
     ["swarm.rounds: duplicate key"]),
    ("duplicate key in a list item's section",
     _QUICKSTART_TEXT.replace("lora: {steps: 60}", "lora: {steps: 60, steps: 6000}", 1),
     ["agents.0.lora.steps: duplicate key"]),
    ("alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
     ["line 2", "alias *a is not allowed"]),
    ("merge of an anchor", _QUICKSTART_TEXT.replace("  - name: text\n",
                                                    "  - <<: *base\n    name: text\n"),
     ["alias *base is not allowed"]),
    ("nested 100,000 deep", "[" * 100_000, ["nested more than 32 levels"]),
    ("mapping nested deep", "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 200)),
     ["nested more than 32 levels"]),
    ("a key that is a list", "? [a, b]\n: 1\n", ["a key must be a plain name"]),
    ("two documents", _QUICKSTART_TEXT + "---\nswarm: {name: x}\n",
     [f"not valid YAML: line {_QUICKSTART_TEXT.count(chr(10)) + 1}, column 1:",
      "another document"]),
    ("unclosed flow", "swarm: {name: x\n", ["not valid YAML: line 2"]),
    ("control character", "swarm: {name: \x07}\n", ["not valid YAML", "#x0007"]),
]


@pytest.mark.parametrize("desc, text, fragments", STRICT_YAML, ids=[c[0] for c in STRICT_YAML])
def test_yaml_that_safe_load_takes_is_refused(
    tmp_path: Path, desc: str, text: str, fragments: list[str]
) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    message = str(info.value)
    assert message.startswith(str(path)), message
    assert len(message) < 500 and "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{desc}: {fragment!r} not in {message!r}"


def test_config_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(_QUICKSTART_TEXT.replace("quickstart", "caf\xe9", 1).encode("latin-1"))

    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        load_config(path)


def test_oversized_config_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(_QUICKSTART_TEXT + "#" * (2 * 1024 * 1024) + "\n")

    with pytest.raises(ConfigError, match="too large for a config"):
        load_config(path)


def test_override_value_is_read_as_strictly_as_a_file() -> None:
    with pytest.raises(ConfigError, match="override swarm.rounds: line 1: YAML alias"):
        load_config(QUICKSTART, ["swarm.rounds=*a"])
    with pytest.raises(ConfigError, match="agents: duplicate key"):
        load_config(QUICKSTART, ["swarm.name={agents: 1, agents: 2}"])
    with pytest.raises(ConfigError, match="too long a key") as info:
        load_config(QUICKSTART, ["swarm." + "x" * 100_000 + "=1"])
    assert len(str(info.value)) < 200


def test_a_huge_unknown_key_prints_a_short_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _mutate(["swarm", "k" * 100_000], 1))

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert "unknown key" in str(info.value) and len(str(info.value)) < 500


# -- what validated and failed at run time -------------------------------------------------


def _groups(*groups: dict) -> dict:
    return {**_base(), "agents": list(groups)}


RUNTIME = [
    # (description, config data, expected fragments)
    ("two groups with one name", _groups({"name": "g", "skills": ["add"]},
                                         {"name": "g", "count": 3, "skills": ["sort"]}),
     ["agents.1.name", "'g'", "agent ids", "agents.0"]),
    ("group name git refuses (..)", _groups({"name": "a..b", "skills": ["add"]}),
     ["agents.0.name", "'a..b'", "git refuses"]),
    ("group name git refuses (leading .)", _groups({"name": ".hidden", "skills": ["add"]}),
     ["agents.0.name", "'.hidden'", "git refuses"]),
    ("group name that reads as an option", _groups({"name": "-rf", "skills": ["add"]}),
     ["agents.0.name", "'-rf'", "must not start with '-'"]),
    ("swarm name that climbs out of runs/", _mutate(["swarm", "name"], ".."),
     ["swarm.name", "'..'", "git refuses"]),
    ("swarm name ending .lock", _mutate(["swarm", "name"], "x.lock"),
     ["swarm.name", "'x.lock'", "git refuses"]),
    ("unknown role", _mutate(["agents", 0, "role"], "lerner"),
     ["agents.0.role", "unknown role 'lerner'", "did you mean 'learner'", "expert"]),
    ("unknown protocol", _mutate(["protocol", "name"], "knexo"),
     ["protocol.name", "unknown protocol 'knexo'", "did you mean 'knexa'", "local"]),
    ("unknown skill", _mutate(["agents", 1, "skills"], ["reverse", "srot"]),
     ["agents.1.skills.1", "unknown skill 'srot'", "did you mean 'sort'", "count"]),
    ("no skills", _mutate(["agents", 2, "skills"], []), ["agents.2.skills", "empty", "reverse"]),
    ("unknown placeholder", _mutate(["swarm", "lineage"], "runs/{nme}/lineage"),
     ["swarm.lineage", "unknown placeholder {nme}", "did you mean {name}", "allowed: {name}"]),
    ("attribute access", _mutate(["swarm", "lineage"], "runs/{name.__class__}"),
     ["swarm.lineage", "{name.__class__}", "more than a plain name"]),
    ("index access", _mutate(["swarm", "lineage"], "runs/{name[0]}"),
     ["swarm.lineage", "{name[0]}", "more than a plain name"]),
    ("positional placeholder", _mutate(["swarm", "lineage"], "runs/{}"),
     ["swarm.lineage", "unknown placeholder {}"]),
    ("unbalanced brace", _mutate(["swarm", "lineage"], "runs/{name"),
     ["swarm.lineage", "'runs/{name'", "literal braces"]),
    ("format spec", _mutate(["swarm", "lineage"], "runs/{name:>99999999}"),
     ["swarm.lineage", "more than a plain name"]),
    ("ports past 65535", _mutate(["transport", "base_port"], 65530),
     ["transport.base_port", "65530", "peer port at 65540", "base_port <= 65525"]),
    ("unknown placeholder in the adapter store", _mutate(["model", "adapter_store"], "/s/{nam}"),
     ["model.adapter_store", "unknown placeholder {nam}", "did you mean {name}"]),
    ("regex as target module", _mutate(["agents", 0, "lora", "target_modules"], ["("]),
     ["agents.0.lora.target_modules.0", "'('"]),
    ("string target_modules", _mutate(["agents", 0, "lora", "target_modules"], ".*proj"),
     ["agents.0.lora.target_modules", "array"]),
]


@pytest.mark.parametrize("desc, data, fragments", RUNTIME, ids=[c[0] for c in RUNTIME])
def test_config_check_catches_what_would_fail_at_run_time(
    tmp_path: Path, desc: str, data: dict, fragments: list[str]
) -> None:
    path = _write(tmp_path, data)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{desc}: {fragment!r} not in {message!r}"


BOUNDS = [
    # (key path, value just past the bound, the bound named in the error)
    (["swarm", "rounds"], 10**9, "<= 100000"),
    (["swarm", "heldout"], 10**9, "<= 10000"),
    (["swarm", "seed"], 2**40, "<= 4294967295"),
    (["agents", 0, "count"], 10**6, "<= 1024"),
    (["agents", 0, "examples"], 10**9, "<= 100000"),
    (["agents", 0, "lora", "steps"], 10**12, "<= 100000"),
    (["agents", 0, "lora", "batch_size"], 10**6, "<= 4096"),
    (["agents", 0, "lora", "alpha"], float("inf"), "<= 4096.0"),
    (["agents", 0, "lora", "learning_rate"], 1e9, "<= 10.0"),
    (["model", "max_model_len"], 2**62, "<= 131072"),
    (["model", "tiny", "layers"], 10**6, "<= 64"),
    (["model", "max_loras"], 10**6, "<= 256"),
    (["matchmaker", "max_pairs"], 10**9, "<= 4096"),
    (["matchmaker", "lam"], float("inf"), "<= 1000000.0"),
    (["launcher", "max_restarts"], 10**9, "<= 1000"),
]


@pytest.mark.parametrize("key, value, bound", BOUNDS, ids=[".".join(map(str, b[0])) for b in BOUNDS])
def test_every_count_has_an_upper_bound(tmp_path: Path, key: list, value: object,
                                        bound: str) -> None:
    path = _write(tmp_path, _mutate(key, value))

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert ".".join(map(str, key)) in str(info.value) and bound in str(info.value)


def test_paths_fill_in_the_swarm_name(tmp_path: Path) -> None:
    config = load_config(QUICKSTART, [f"model.adapter_store={tmp_path}/{{name}}/adapters",
                                      "swarm.lineage=runs/{name}-x/lineage"])

    assert config.adapter_store == tmp_path / "quickstart" / "adapters"
    assert config.lineage_dir == Path("runs/quickstart-x/lineage")


def test_agents_in_all_groups_are_bounded(tmp_path: Path) -> None:
    groups = [{"name": f"g{i}", "count": 1000, "skills": ["add"]} for i in range(5)]
    path = _write(tmp_path, _groups(*groups))

    with pytest.raises(ConfigError, match=r"agents: 1000 \+ .* = 5000 agents in all; at most 4096"):
        load_config(path)


def test_training_examples_in_all_groups_are_bounded(tmp_path: Path) -> None:
    groups = [{"name": f"g{i}", "count": 100, "examples": 100_000, "skills": ["add"]}
              for i in range(2)]
    path = _write(tmp_path, _groups(*groups))

    with pytest.raises(ConfigError, match="20000000 training examples; at most 1000000"):
        load_config(path)


def test_mutated_configs_give_config_errors_only(tmp_path: Path) -> None:
    """Random byte edits of the quickstart: valid, or a ConfigError of short lines; nothing else."""
    rng = random.Random(12)
    base = QUICKSTART.read_bytes()
    tokens = [b"{", b"}", b"[", b"]", b":", b"-", b"&a ", b"*a", b"!!binary ", b"\n", b"\t",
              b"'", b'"', b"?", b"1e999", b"99999999999999999999999", b"~", b"<<: ", b"\xff",
              b"\x00", b"{nme}", b"{name.x}", b"%YAML 1.1\n", b"..", b"#", b"!!python/name:os "]
    path = tmp_path / "mutated.yaml"
    outcomes = {"valid": 0, "refused": 0}
    for _ in range(600):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            roll = rng.random()
            if roll < 0.4:
                data[pos:pos] = rng.choice(tokens)
            elif roll < 0.7:
                del data[pos: pos + rng.randint(1, 8)]
            else:
                data[pos] = rng.randrange(256)
        path.write_bytes(bytes(data))
        try:
            load_config(path)
        except ConfigError as exc:
            assert all("\n" not in p and len(p) < 600 for p in exc.problems), exc.problems
            outcomes["refused"] += 1
        else:
            outcomes["valid"] += 1

    assert outcomes["refused"] > 200  # the edits do reach the checks


def test_every_problem_of_a_config_is_reported_at_once(tmp_path: Path) -> None:
    data = _mutate(["protocol", "name"], "knexo")
    data["agents"][0]["role"] = "lerner"
    data["swarm"]["lineage"] = "runs/{nme}"
    path = _write(tmp_path, data)

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert len(info.value.problems) == 3


def test_resolved_config_reads_back_as_the_same_config() -> None:
    """What `config check` prints and the launcher writes (config.json) parses to the same config."""
    import msgspec

    from swarm.config import parse_config, to_dict

    for overrides in ([], ["protocol.name=local", "matchmaker.kind=random", "model.backend=hf"],
                      ["protocol.exchange=distill", "matchmaker.max_pairs=2", "model.dtype=float32"]):
        config = load_config(QUICKSTART, overrides)

        data = msgspec.json.decode(msgspec.json.encode(to_dict(config)))

        assert parse_config(data) == config
        assert "settings" not in data["model"] and data["matchmaker"]["beta0"] == 0.1


def test_settings_of_the_chosen_entry_are_typed_by_its_schema() -> None:
    from swarm.matching.settings import BanditSettings
    from swarm.protocols.settings import ExchangeSettings
    from swarm.serving.settings import EngineSettings

    config = load_config(QUICKSTART, ["protocol.exchange=merge", "model.max_loras=4"])

    assert config.protocol.settings == ExchangeSettings(exchange="merge", replay=0.5)
    assert config.matchmaker.settings == BanditSettings(beta0=0.1, features="directed")
    assert config.model.settings == EngineSettings(max_loras=4, gpu_memory_utilization=0.3)
