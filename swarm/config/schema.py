"""The one schema of a swarm config, validated completely before anything starts.

A config is YAML with the sections ``swarm``, ``model``, ``agents``,
``matchmaker``, ``protocol``, ``transport`` and ``launcher``. ``load_config``
reads a file, applies ``--set key.path=value`` overrides and returns a frozen
``SwarmConfig``; every problem found is reported at once in one
``ConfigError`` whose lines name the key path, the bad value and what is
allowed (with a "did you mean" for a close misspelling).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from swarm.config.reader import MAX_CONFIG_BYTES, decode_text, load_yaml
from swarm.config.rules import config_problems
from swarm.errors import ConfigError

__all__ = [
    "SwarmConfig",
    "SwarmSection",
    "ModelSection",
    "TinyModelSection",
    "AgentGroup",
    "LoraSection",
    "MatchmakerSection",
    "ProtocolSection",
    "TransportSection",
    "LauncherSection",
    "load_config",
    "parse_config",
    "apply_override",
    "to_dict",
]

# Every count has an upper bound: a config that asks for 10**12 steps or agents
# must be refused by `swarm config check`, not discovered as a hung run.
PosInt = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
Seed = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Fraction = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+\Z")]
# A module name, never a pattern: peft and vLLM read a string as a regular expression.
ModuleName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.]+\Z")]
Path_ = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Port = Annotated[int, msgspec.Meta(ge=1024, le=65535)]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class SwarmSection(_Section, frozen=True):
    """What the swarm is called, how long it runs and where its history goes."""

    name: Name
    seed: Seed = 0
    rounds: PosInt = 5
    lineage: Path_ = "runs/{name}/lineage"
    heldout: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64


class TinyModelSection(_Section, frozen=True):
    """Shape of the tiny model built on the fly when ``model.path`` is ``tiny``."""

    layers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    hidden: Annotated[int, msgspec.Meta(ge=64, le=4096, multiple_of=64)] = 256
    vocab: Annotated[int, msgspec.Meta(ge=300, le=65536)] = 1024
    seed: Seed = 0


class ModelSection(_Section, frozen=True):
    """The base model and the engine that serves it."""

    path: Path_ = "tiny"
    backend: Literal["vllm", "hf", "openai"] = "vllm"
    tiny: TinyModelSection = msgspec.field(default_factory=TinyModelSection)
    max_loras: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    max_cpu_loras: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    max_lora_rank: Annotated[int, msgspec.Meta(ge=1, le=256)] = 16
    max_model_len: Annotated[int, msgspec.Meta(ge=16, le=131_072)] = 512
    gpu_memory_utilization: Fraction = 0.3
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    openai_url: str | None = None
    server: str | None = None  # address of a running model server to share; None: start one
    # The machine's adapter store ({name}: the swarm's name); None: <run dir>/adapters
    adapter_store: Path_ | None = None


class LoraSection(_Section, frozen=True):
    """LoRA adapter shape and the local fine-tuning budget of each round."""

    rank: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    alpha: Annotated[float, msgspec.Meta(ge=1e-6, le=4096.0)] = 16.0
    dropout: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.0
    # Attention and MLP: on the tiny model, rank 8 on all seven projections takes
    # held-out `reverse` to 1.0 in 300 steps; attention alone gets 0.14 (0.42 at
    # 600 steps). See bench/training.py.
    target_modules: Annotated[list[ModuleName], msgspec.Meta(min_length=1, max_length=64)] = (
        msgspec.field(default_factory=lambda: [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
        ])
    )
    learning_rate: Annotated[float, msgspec.Meta(ge=1e-12, le=10.0)] = 3e-3
    steps: PosInt = 40
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16


class AgentGroup(_Section, frozen=True):
    """A group of ``count`` agents sharing a role, a data recipe and LoRA settings."""

    name: Name
    count: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    role: Name = "learner"
    skills: Annotated[list[Name], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    examples: PosInt = 256
    lora: LoraSection = msgspec.field(default_factory=LoraSection)


class MatchmakerSection(_Section, frozen=True):
    """Which pairing strategy runs and its parameters."""

    kind: Literal["linucb", "greedy", "random"] = "linucb"
    lam: Annotated[float, msgspec.Meta(gt=0.0, le=1e6)] = 1.0
    beta0: Annotated[float, msgspec.Meta(ge=0.0, le=1e6)] = 1.0
    max_pairs: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None


class ProtocolSection(_Section, frozen=True):
    """The round logic and how knowledge flows inside a pair."""

    name: Name = "knexa"
    exchange: Literal["merge", "distill"] = "merge"
    # merge: student + merge_weight * teacher (task arithmetic), SVD back to rank r
    merge_weight: Annotated[float, msgspec.Meta(gt=0.0, le=2.0)] = 1.0


class TransportSection(_Section, frozen=True):
    """Addresses, limits and security of the ZeroMQ data plane."""

    host: str = "127.0.0.1"
    base_port: Port = 47000
    security: Literal["none", "curve"] = "none"
    keys_dir: str = "~/.swarm/keys"
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 32)] = 256 * 1024 * 1024
    heartbeat_ms: Annotated[int, msgspec.Meta(ge=10, le=60_000)] = 1000
    liveness: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    # A client with one request in flight polls its socket this long before sleeping
    # (trades a little CPU for a shorter round trip; 0 = never spin)
    busy_poll_us: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 300
    # Slow is not dead: a peer silent this long (and at least ten liveness timeouts)
    # is taken for dead: the coordinator drops a host from the round, and its
    # names (host name, agent routes, key) are free for others. Raise it on a
    # machine so loaded that processes go unscheduled for longer.
    silence_s: Annotated[float, msgspec.Meta(ge=1.0, le=86_400.0)] = 30.0

    def __post_init__(self) -> None:
        # curve without keys would fail in every process at start: say so at check time
        # (the keys themselves are read and checked by swarm.transport.security.CurveSecurity.load)
        if self.security != "curve":
            return
        if not self.keys_dir.strip():
            raise ValueError("security 'curve' needs keys_dir, which is empty "
                             "(create keys with `swarm keys init --dir DIR`)")
        keys = Path(self.keys_dir).expanduser()
        if not (keys / "self.key_secret").is_file():
            raise ValueError(f"security 'curve' needs a keypair in keys_dir {self.keys_dir!r}, "
                             f"which holds none (run `swarm keys init --dir {self.keys_dir}`)")


class LauncherSection(_Section, frozen=True):
    """Where the processes run and how failures are handled."""

    kind: Literal["local", "inline"] = "local"
    hosts: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    restart: bool = True
    max_restarts: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 3


class SwarmConfig(_Section, frozen=True):
    """A whole swarm config."""

    swarm: SwarmSection
    agents: Annotated[list[AgentGroup], msgspec.Meta(min_length=1)]
    model: ModelSection = msgspec.field(default_factory=ModelSection)
    matchmaker: MatchmakerSection = msgspec.field(default_factory=MatchmakerSection)
    protocol: ProtocolSection = msgspec.field(default_factory=ProtocolSection)
    transport: TransportSection = msgspec.field(default_factory=TransportSection)
    launcher: LauncherSection = msgspec.field(default_factory=LauncherSection)

    @property
    def agent_count(self) -> int:
        """Total number of agents over all groups."""
        return sum(group.count for group in self.agents)

    @property
    def lineage_dir(self) -> Path:
        """The lineage directory with ``{name}`` filled in."""
        return Path(self.swarm.lineage.format(name=self.swarm.name)).expanduser()

    @property
    def run_dir(self) -> Path:
        """Where a run keeps its processes' files: the lineage directory's parent."""
        return self.lineage_dir.parent

    @property
    def adapter_store(self) -> Path:
        """The content-addressed adapter store shared by the model server and the hosts."""
        if self.model.adapter_store is not None:
            return Path(self.model.adapter_store.format(name=self.swarm.name)).expanduser()
        return self.run_dir / "adapters"


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> SwarmConfig:
    """Read, override and validate a YAML config file.

    Args:
        path: the YAML file.
        overrides: ``key.path=value`` strings; values are parsed as YAML scalars.

    Raises:
        ConfigError: naming every problem found.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    raw = load_yaml(decode_text(data, str(path)), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {_show(raw)}")
    problems: list[str] = []
    for item in overrides:
        try:
            apply_override(raw, item)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return parse_config(raw)


def parse_config(raw: Mapping[str, Any]) -> SwarmConfig:
    """Validate an already-parsed mapping into a ``SwarmConfig``.

    Raises:
        ConfigError: unknown keys (with suggestions) first, then type and range
            errors, then rules across fields (``swarm.config.rules``).
    """
    problems = list(_unknown_keys(raw, SwarmConfig, "$"))
    if problems:
        raise ConfigError(problems)
    try:
        config = msgspec.convert(raw, SwarmConfig, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc), raw)) from None
    problems = config_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override to a raw config mapping in place.

    List elements are addressed by index (``agents.0.count=4``). The value is
    parsed as YAML, so ``rounds=3`` is an int and ``restart=false`` a bool.
    """
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"override {_show(item)}: expected KEY.PATH=VALUE, e.g. swarm.rounds=3"
        )
    if len(key) > 200:  # no key path is this long; keep the error line short
        raise ConfigError(f"override {_show_key(key)}: {len(key)} characters, too long a key")
    value = load_yaml(text, f"override {key}")
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = _list_item(node, part, where)
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {key}: {where} is a value, not a section")
        else:
            raise ConfigError(f"override {key}: {where} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(node, last, key)
        node[index] = value
    else:
        node[last] = value


def to_dict(config: SwarmConfig) -> dict[str, Any]:
    """The resolved config as plain data (defaults filled in), ready for YAML or JSON."""
    result: dict[str, Any] = msgspec.to_builtins(config)
    return result


def _list_item(node: list[Any], part: str, where: str) -> Any:
    return node[_list_index(node, part, where)]


def _list_index(node: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"override {where}: {part!r} is not an index of a list of {len(node)} items"
        )
    return int(part)


def _unknown_keys(raw: Any, schema: type[msgspec.Struct], path: str) -> Iterable[str]:
    """Yield a problem line for every key that the schema does not know, recursively."""
    if not isinstance(raw, Mapping):
        return
    fields = {f.name: f.type for f in msgspec.structs.fields(schema)}
    for key, value in raw.items():
        where = f"{path}.{_show_key(key)}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(sorted(fields))
            yield f"{_dotted(where)}: unknown key {_show(key)}{hint} (allowed: {allowed})"
            continue
        sub = _struct_of(fields[key])
        if sub is None:
            continue
        if isinstance(value, list) and _is_list(fields[key]):
            for i, item in enumerate(value):
                yield from _unknown_keys(item, sub, f"{where}.{i}")
        else:
            yield from _unknown_keys(value, sub, where)


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct class inside a field type (``X``, ``list[X]``, ``Annotated[list[X], ...]``)."""
    info = msgspec.inspect.type_info(tp)
    while True:
        if isinstance(info, msgspec.inspect.StructType):
            struct: type[msgspec.Struct] = info.cls
            return struct
        if isinstance(info, msgspec.inspect.ListType):
            info = info.item_type
            continue
        return None


def _is_list(tp: Any) -> bool:
    return isinstance(msgspec.inspect.type_info(tp), msgspec.inspect.ListType)


_AT = re.compile(r"^(?P<what>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)


def _explain(message: str, raw: Mapping[str, Any]) -> str:
    """Rewrite a msgspec validation message as ``key.path: problem (got value)``."""
    match = _AT.match(message)
    assert match is not None
    what, path = match.group("what"), match.group("path")
    if path is None:
        missing = re.search(r"missing required field `([^`]+)`", what)
        return f"{missing.group(1)}: required key is missing" if missing else what
    missing = re.search(r"missing required field `([^`]+)`", what)
    if missing:
        return f"{_dotted(path)}.{missing.group(1)}: required key is missing"
    found, value = _lookup(raw, path)
    got = f" (got {_show(value)})" if found else ""
    choices = _choices(_dotted(path))
    allowed = f"; allowed: {', '.join(map(repr, choices))}" if choices else ""
    return f"{_dotted(path)}: {what[0].lower()}{what[1:]}{got}{allowed}"


def _choices(dotted: str) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` field at a dotted key path, else ``()``."""
    info: Any = msgspec.inspect.type_info(SwarmConfig)
    for part in dotted.split("."):
        while isinstance(info, msgspec.inspect.ListType | msgspec.inspect.UnionType):
            if isinstance(info, msgspec.inspect.ListType):
                info = info.item_type
            else:
                info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        if part.isdigit():
            continue
        if not isinstance(info, msgspec.inspect.StructType):
            return ()
        fields = {f.name: f.type for f in info.fields}
        if part not in fields:
            return ()
        info = fields[part]
    if isinstance(info, msgspec.inspect.UnionType):
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    return tuple(info.values) if isinstance(info, msgspec.inspect.LiteralType) else ()


def _dotted(path: str) -> str:
    """``$.agents[0].count`` -> ``agents.0.count``."""
    return re.sub(r"\[(\d+)\]", r".\1", path).removeprefix("$").lstrip(".")


def _lookup(raw: Any, path: str) -> tuple[bool, Any]:
    node = raw
    for part in _dotted(path).split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _show(value: Any) -> str:
    return _show_key(repr(value))


def _show_key(key: Any) -> str:
    """``key`` as text, clipped: an error message stays one short line."""
    text = str(key)
    return text if len(text) <= 60 else text[:57] + "..."
