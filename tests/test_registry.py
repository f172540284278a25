"""Registries: duplicates refused, unknown names explained, third-party entries configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import yaml

from swarm.agents import ROLES, Agent, get_role, role
from swarm.cli.main import main
from swarm.config import load_config
from swarm.errors import RegistryError
from swarm.matching.registry import MATCHMAKERS, create_matchmaker, matchmaker, restore_matchmaker
from swarm.protocols import PROTOCOLS, get_protocol, protocol
from swarm.registry import Registry
from swarm.serving import BACKENDS, GenRequest, MappingResolver, create_backend


def test_builtin_roles_and_protocols_resolve() -> None:
    assert get_role("learner").learns and get_role("learner").trains
    assert not get_role("expert").learns
    assert not get_role("listener").trains
    assert get_protocol("knexa").name == "knexa"
    assert get_protocol("local").name == "local"


def test_duplicate_role_is_refused() -> None:
    with pytest.raises(RegistryError, match="already registered"):

        @role("learner")
        class Impostor(Agent):
            __slots__ = ()


def test_unknown_role_names_the_close_one() -> None:
    with pytest.raises(RegistryError, match="did you mean 'learner'"):
        get_role("lerner")


def test_non_agent_class_is_refused() -> None:
    with pytest.raises(RegistryError, match="not a subclass"):
        role("plain")(object)  # type: ignore[arg-type]
    assert "plain" not in ROLES.names()


def test_entry_point_role_from_another_distribution(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "thirdparty_roles.py").write_text(
        "from swarm.agents.base import Agent\n\n"
        "class Reviewer(Agent):\n    __slots__ = ()\n    learns = False\n"
    )
    dist = tmp_path / "thirdparty_roles-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-roles\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[swarm.roles]\nreviewer = thirdparty_roles:Reviewer\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry[type[Agent]] = Registry("role", "swarm.roles")

    cls = registry.get("reviewer")

    assert cls.__name__ == "Reviewer" and issubclass(cls, Agent)
    assert "reviewer" in registry.names()
    sys.modules.pop("thirdparty_roles", None)


@pytest.mark.parametrize("name", ["", "r\u00f4le", "caf\u00e9", "x" * 65, "a.b", "a/b", "\u00b2"])
def test_names_a_config_cannot_spell_are_refused(name: str) -> None:
    registry: Registry[object] = Registry("role", "swarm.test_nothing")

    with pytest.raises(RegistryError, match="ASCII letters, digits"):
        registry.register(name, object())

    assert registry.names() == []


# -- third-party entries are configured exactly like built-in ones --------------------------

THIRD_PARTY = '''
"""A third party's backend, matchmaker and protocol, each with its own settings."""

from typing import Annotated, Literal

import msgspec

from swarm.protocols.base import Protocol
from swarm.serving.base import GenResult


class EchoSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    prefix: str = ">"
    repeat: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1


class EchoBackend:
    """Answers every prompt with itself, behind ``repeat`` prefixes."""

    settings_schema = EchoSettings
    name = "echo"

    def __init__(self, section, model, resolver):
        self.settings = section.settings

    def generate(self, requests):
        mark = self.settings.prefix * self.settings.repeat
        return [GenResult(text=mark + r.prompt) for r in requests]

    def load_adapter(self, ref):
        pass

    def unload_adapter(self, ref):
        pass

    def loaded_adapters(self):
        return []

    def close(self):
        pass


class CycleSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    step: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class CycleMatchmaker:
    """Pairs agent i with agent i + step in sorted order."""

    settings_schema = CycleSettings

    def __init__(self, dim, settings, seed):
        self.dim, self.step = dim, settings.step

    def select(self, profiles, max_pairs, round):
        ids = sorted(profiles)
        pairs, used = [], set()
        for i, a in enumerate(ids):
            b = ids[(i + self.step) % len(ids)]
            if a != b and not {a, b} & used and len(pairs) < max_pairs:
                pairs.append((a, b))
                used |= {a, b}
        return pairs

    def update(self, pair, profiles, reward):
        pass

    def state(self):
        return {"kind": "cycle", "dim": self.dim, "step": self.step}

    @classmethod
    def from_state(cls, state):
        return cls(state["dim"], CycleSettings(step=state["step"]), 0)


class SoloSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: Literal["quiet", "loud"] = "quiet"


class Solo(Protocol):
    """No pairs; its one setting says how it keeps to itself."""

    settings_schema = SoloSettings
'''

PLUGIN_CONFIG = """\
swarm: {name: plugins, rounds: 1}
model: {backend: echo, prefix: "#", repeat: 2}
matchmaker: {kind: cycle, step: 3, max_pairs: 2}
protocol: {name: solo, mode: loud}
agents: [{name: a, count: 4, skills: [add]}]
"""


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The third party's module, importable (and its distribution's entry points visible)."""
    (tmp_path / "thirdparty_swarm.py").write_text(THIRD_PARTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import thirdparty_swarm

    yield thirdparty_swarm
    sys.modules.pop("thirdparty_swarm", None)


@pytest.fixture
def registered(third_party: Any) -> Any:
    """The third party's entries registered in code, through the registry API."""
    BACKENDS.register("echo", third_party.EchoBackend)  # settings: its settings_schema
    matchmaker("cycle", settings=third_party.CycleSettings)(third_party.CycleMatchmaker)
    protocol("solo")(third_party.Solo)
    yield third_party
    BACKENDS.unregister("echo")
    MATCHMAKERS.unregister("cycle")
    PROTOCOLS.unregister("solo")


def test_third_party_entries_are_configured_like_built_ins(
        registered: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a config that names the third party's entries and sets their settings
    path = tmp_path / "plugins.yaml"
    path.write_text(PLUGIN_CONFIG)

    # Execute
    config = load_config(path)
    backend = create_backend(config.model, tmp_path, MappingResolver())
    mm = create_matchmaker(config.matchmaker.kind, 3, config.matchmaker.settings, seed=0)
    solo = get_protocol(config.protocol.name)(config.protocol.settings)

    # Assert: each entry gets its own settings, typed by its own schema
    assert config.model.settings == registered.EchoSettings(prefix="#", repeat=2)
    assert backend.generate([GenRequest(prompt="hi")])[0].text == "##hi"
    profiles = {a: np.zeros(3) for a in ("a-0", "a-1", "a-2", "a-3")}
    assert mm.select(profiles, 2, 0) == [("a-0", "a-3"), ("a-2", "a-1")]
    assert restore_matchmaker(mm.state()).select(profiles, 2, 0) == mm.select(profiles, 2, 0)
    assert solo.settings == registered.SoloSettings(mode="loud")
    assert main(["config", "check", str(path)]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["model"] == {"path": "tiny", "backend": "echo", "prefix": "#", "repeat": 2,
                            "tiny": {"layers": 2, "hidden": 256, "vocab": 1024, "seed": 0},
                            "max_lora_rank": 16, "server": None, "adapter_store": None}
    assert out["matchmaker"] == {"kind": "cycle", "step": 3, "max_pairs": 2}
    assert out["protocol"] == {"name": "solo", "mode": "loud"}


PLUGIN_MISTAKES = [
    # (override, expected fragments)
    ("model.prefx=x", ["model.prefx", "did you mean 'prefix'",
                       "allowed for backend 'echo':", "prefix, repeat"]),
    ("model.repeat=99", ["model.repeat", "<= 8", "99"]),
    ("model.max_loras=8", ["model.max_loras", "unknown key", "backend 'echo'"]),
    ("matchmaker.step=many", ["matchmaker.step", "int", "'many'"]),
    ("matchmaker.lam=1.0", ["matchmaker.lam", "unknown key", "allowed for matchmaker 'cycle'"]),
    ("protocol.mode=shy", ["protocol.mode", "'shy'", "allowed: 'loud', 'quiet'"]),
    ("protocol.exchange=merge", ["protocol.exchange", "unknown key", "protocol 'solo'"]),
    ("model.backend=ehco", ["model.backend", "did you mean 'echo'", "echo, hf, openai, vllm"]),
    ("matchmaker.kind=cycel", ["matchmaker.kind", "did you mean 'cycle'",
                               "cycle, greedy, linucb, random"]),
    ("protocol.name=sol", ["protocol.name", "did you mean 'solo'", "knexa, local, solo"]),
]


@pytest.mark.parametrize("override, fragments", PLUGIN_MISTAKES, ids=[m[0] for m in PLUGIN_MISTAKES])
def test_third_party_settings_are_checked_like_built_ins(
        registered: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str,
        fragments: list[str]) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(PLUGIN_CONFIG)

    code = main(["config", "check", str(path), "--set", override])

    err = capsys.readouterr().err
    assert code == 2
    for fragment in fragments:
        assert fragment in err, f"{override}: {fragment!r} not in {err!r}"


def test_third_party_entries_from_entry_points(third_party: Any, tmp_path: Path) -> None:
    # Prepare: the third party's distribution declares its entries, nothing registers them in code
    dist = tmp_path / "thirdparty_swarm-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-swarm\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[swarm.backends]\necho = thirdparty_swarm:EchoBackend\n\n"
        "[swarm.matchmakers]\ncycle = thirdparty_swarm:CycleMatchmaker\n\n"
        "[swarm.protocols]\nsolo = thirdparty_swarm:Solo\n")
    path = tmp_path / "plugins.yaml"
    path.write_text(PLUGIN_CONFIG)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "swarm", "config", "check", str(path), *args],
                              capture_output=True, text=True, timeout=120, env=env, check=False)

    # Execute: `swarm config check` in a fresh process, as a user runs it
    good, typo, bad = check(), check("--set", "protocol.name=sol"), check("--set", "model.repeat=0")

    # Assert: resolved with their settings; mistakes named with the registered choices
    assert good.returncode == 0, good.stderr
    out = yaml.safe_load(good.stdout)
    assert out["model"]["prefix"] == "#" and out["matchmaker"]["step"] == 3
    assert out["protocol"] == {"name": "solo", "mode": "loud"}
    assert typo.returncode == 2
    assert "did you mean 'solo'? (known: cooperative, evogit, knexa, local, solo)" in typo.stderr
    assert bad.returncode == 2 and "model.repeat: expected `int` >= 1 (got 0)" in bad.stderr


def test_settings_schemas_are_checked_when_registered() -> None:
    registry: Registry[object] = Registry("backend", "swarm.test_nothing", reserved=("path",))

    class Clash(msgspec.Struct):
        path: str = "x"

    with pytest.raises(RegistryError, match="path of .*Clash are keys of the section itself"):
        registry.register("clash", object(), settings=Clash)
    with pytest.raises(RegistryError, match="must be a msgspec.Struct class"):
        registry.register("loose", object(), settings=dict)  # type: ignore[arg-type]
    assert registry.names() == []
    registry.register("none", object())
    assert registry.settings("none") is None
