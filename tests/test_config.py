"""The config schema: the quickstart validates, and broken configs name key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from swarm.cli import main
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
