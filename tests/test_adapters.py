"""Adapter store and validation: each kind of bad adapter gets its own typed error."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from swarm.adapters.store import AdapterStore
from swarm.adapters.tensorfile import read_safetensors
from swarm.adapters.validate import AdapterValidator, adapter_sha256
from swarm.errors import (
    AdapterCorruptError,
    AdapterDtypeError,
    AdapterError,
    AdapterFormatError,
    AdapterKeyError,
    AdapterNonFiniteError,
    AdapterNormError,
    AdapterNotFound,
    AdapterPickleError,
    AdapterRankError,
    AdapterShapeError,
)
from tests.support import random_lora

Q_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
Q_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
MARKER = Path("/tmp/swarm-test-pickle-was-unpickled")
# A pickle that, if anything ever unpickled it, would create MARKER.
EVIL_PICKLE = b"cbuiltins\nexec\n(S'open(\"" + str(MARKER).encode() + b"\", \"w\").write(\"x\")'\ntR."


@pytest.fixture(scope="module")
def good(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real peft LoRA folder (rank 8 on q_proj and v_proj) with modest weights."""
    return random_lora(tiny_model, tmp_path_factory.mktemp("good") / "a", seed=1, scale=1.0)


@pytest.fixture(scope="module")
def validator(tiny_model: Path) -> AdapterValidator:
    return AdapterValidator(tiny_model, max_delta_norm=1000.0, max_rank=64)


def _copy(good: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good, tmp_path / "adapter"))


def _edit_tensors(folder: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "adapter_model.safetensors"))


def _edit_config(folder: Path, **changes: object) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_real_peft_adapter_passes(good: Path, validator: AdapterValidator) -> None:
    tensors = validator.validate(good)

    assert Q_A in tensors and tensors[Q_A].shape == (8, 256)
    assert tensors[Q_B].shape == (256, 8) and tensors[Q_B].dtype == np.float32


def test_pickle_weights_are_refused_unopened(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(EVIL_PICKLE)
    MARKER.unlink(missing_ok=True)

    with pytest.raises(AdapterPickleError, match="adapter_model.bin"):
        validator.validate(folder)
    with pytest.raises(AdapterPickleError):
        AdapterStore(tmp_path / "store").put(folder)
    assert not MARKER.exists()


def test_wrong_shape(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    _edit_tensors(folder, lambda t: t.update({Q_A: np.zeros((8, 255), np.float32)}))

    with pytest.raises(AdapterShapeError, match=r"layers\.0\.self_attn\.q_proj.*256x255"):
        validator.validate(folder)


def test_wrong_rank(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    _edit_config(folder, r=4)

    with pytest.raises(AdapterRankError, match="r=4"):
        validator.validate(folder)


def test_factors_of_different_rank(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    _edit_tensors(folder, lambda t: t.update({Q_B: t[Q_B][:, :4].copy()}))

    with pytest.raises(AdapterRankError, match="q_proj"):
        validator.validate(folder)


def test_wrong_key(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    bogus = Q_A.replace("layers.0", "layers.9")
    _edit_tensors(folder, lambda t: t.update({bogus: t.pop(Q_A)}))

    with pytest.raises(AdapterKeyError, match=r"no layer 'model\.layers\.9"):
        validator.validate(folder)


def test_untargeted_module_and_missing_partner(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    _edit_config(folder, target_modules=["v_proj"])
    with pytest.raises(AdapterKeyError, match="not in target_modules"):
        validator.validate(folder)

    _edit_config(folder, target_modules=["q_proj", "v_proj"])
    _edit_tensors(folder, lambda t: t.pop(Q_B))
    with pytest.raises(AdapterKeyError, match="lacks its lora_B"):
        validator.validate(folder)


def test_nan(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)

    def poison(t: dict[str, np.ndarray]) -> None:
        t[Q_B] = t[Q_B].copy()
        t[Q_B][3, 2] = np.nan

    _edit_tensors(folder, poison)

    with pytest.raises(AdapterNonFiniteError, match="q_proj.lora_B"):
        validator.validate(folder)


def test_huge_norm(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    _edit_tensors(folder, lambda t: t.update({Q_B: t[Q_B] * 1e4}))

    with pytest.raises(AdapterNormError, match=r"q_proj'.*exceeds the bound 1000"):
        validator.validate(folder)


def test_truncated_file(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])

    with pytest.raises(AdapterCorruptError, match="truncated"):
        validator.validate(folder)
    weights.write_bytes(b"\x05")
    with pytest.raises(AdapterCorruptError, match="truncated"):
        validator.validate(folder)


def test_garbage_header_and_integer_dtype(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes((10).to_bytes(8, "little") + b"not json!!" + b"\0" * 64)
    with pytest.raises(AdapterCorruptError, match="not JSON"):
        validator.validate(folder)

    shutil.copyfile(good / "adapter_model.safetensors", weights)
    _edit_tensors(folder, lambda t: t.update({Q_A: t[Q_A].astype(np.int32)}))
    with pytest.raises(AdapterDtypeError, match="I32"):
        validator.validate(folder)


def test_missing_or_bad_config(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    (folder / "adapter_config.json").write_text("{")
    with pytest.raises(AdapterFormatError, match="not JSON"):
        validator.validate(folder)
    (folder / "adapter_config.json").unlink()
    with pytest.raises(AdapterFormatError, match="no adapter_config.json"):
        validator.validate(folder)


def _pickle(folder: Path) -> None:
    (folder / "adapter_model.bin").write_bytes(EVIL_PICKLE)


def _poison(t: dict[str, np.ndarray]) -> None:
    t[Q_B] = t[Q_B].copy()
    t[Q_B][0, 0] = np.inf


#: Each kind of bad adapter, made from a good copy, and the exact error class it must raise.
BAD_KINDS: dict[str, tuple[Callable[[Path], None], type[AdapterError]]] = {
    "pickle": (_pickle, AdapterPickleError),
    "no config": (lambda f: (f / "adapter_config.json").unlink(), AdapterFormatError),
    "not lora": (lambda f: _edit_config(f, peft_type="IA3"), AdapterFormatError),
    "regex target": (lambda f: _edit_config(f, target_modules="("), AdapterFormatError),
    "truncated": (lambda f: (f / "adapter_model.safetensors").write_bytes(b"\1\0"), AdapterCorruptError),
    "stray key": (lambda f: _edit_tensors(f, lambda t: t.update({"x.weight": t[Q_A]})), AdapterKeyError),
    "int dtype": (lambda f: _edit_tensors(f, lambda t: t.update({Q_A: t[Q_A].astype(np.int32)})),
                  AdapterDtypeError),
    "rank": (lambda f: _edit_config(f, r=4), AdapterRankError),
    "shape": (lambda f: _edit_tensors(f, lambda t: t.update({Q_A: np.zeros((8, 255), np.float32)})),
              AdapterShapeError),
    "infinity": (lambda f: _edit_tensors(f, _poison), AdapterNonFiniteError),
    "norm": (lambda f: _edit_tensors(f, lambda t: t.update({Q_B: t[Q_B] * 1e4})), AdapterNormError),
}


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_bad_kind_gets_its_own_class_and_code(
    kind: str, good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    spoil, expected = BAD_KINDS[kind]
    spoil(folder)
    store = AdapterStore(tmp_path / "store", validator)

    with pytest.raises(AdapterError) as by_validator:
        validator.validate(folder)
    with pytest.raises(AdapterError) as by_store:
        store.put(folder)

    assert type(by_validator.value) is expected and type(by_store.value) is expected
    assert by_validator.value.code == by_store.value.code == expected.code
    assert store.list() == []
    codes = {cls.code for _, cls in BAD_KINDS.values()}
    assert len(codes) == len({cls for _, cls in BAD_KINDS.values()})  # one code per class


def test_bf16_tensors_read_as_float32(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file as save_torch

    values = torch.tensor([[1.5, -2.0], [0.25, 3.0]], dtype=torch.bfloat16)
    save_torch({"x": values}, str(tmp_path / "t.safetensors"))

    read = read_safetensors(tmp_path / "t.safetensors")["x"]

    assert read.dtype == np.float32
    assert read.tolist() == [[1.5, -2.0], [0.25, 3.0]]


def test_store_is_content_addressed_and_deduplicates(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    store = AdapterStore(tmp_path / "store", validator)
    twin = _copy(good, tmp_path)
    (twin / "README.md").write_text("a different side file")

    ref = store.put(good)
    again = store.put(twin)

    digest = hashlib.sha256((good / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert ref == again
    assert ref.sha256 == digest == adapter_sha256(good)
    assert store.list() == [digest]
    assert store.has(digest) and not store.has("0" * 64) and not store.has("../x")
    assert (ref.rank, ref.alpha, ref.target_modules) == (8, 16.0, ("q_proj", "v_proj"))
    assert sorted(p.name for p in store.path(digest).iterdir()) == [
        ".swarm-complete",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    with pytest.raises(AdapterNotFound):
        store.path("f" * 64)


def test_store_refuses_invalid_and_detects_tampering(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    store = AdapterStore(tmp_path / "store", validator)
    bad = _copy(good, tmp_path)
    _edit_tensors(bad, lambda t: t.update({Q_A: t[Q_A] * np.nan}))

    with pytest.raises(AdapterNonFiniteError):
        store.put(bad)
    assert store.list() == []

    ref = store.put(good)
    stored = ref.path / "adapter_model.safetensors"
    stored.chmod(0o644)
    blob = bytearray(stored.read_bytes())
    blob[-1] ^= 0xFF
    stored.write_bytes(bytes(blob))
    with pytest.raises(AdapterCorruptError, match="hashes to"):
        store.validate(ref.sha256)


# -- patterns: no regular expression from an adapter is ever evaluated -------------------------

PATTERNS = {
    "bad regex target": {"target_modules": "("},
    "redos target": {"target_modules": "(.*.*)*!"},
    "redos rank_pattern": {"rank_pattern": {"(.*.*)*!": 8}},
    "bad alpha_pattern": {"alpha_pattern": {"q_proj|(": 4.0}},
    "wildcard rank_pattern": {"rank_pattern": {".*": 8}},
}


@pytest.mark.timeout(60)  # a pattern that were evaluated would backtrack for hours
@pytest.mark.parametrize("fields", PATTERNS.values(), ids=PATTERNS.keys())
def test_patterns_are_refused_without_being_evaluated(
    fields: dict[str, object], good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    _edit_config(folder, **fields)

    with pytest.raises(AdapterFormatError, match="regular expressions are refused"):
        validator.validate(folder)
    with pytest.raises(AdapterFormatError, match="regular expressions are refused"):
        AdapterStore(tmp_path / "store").put(folder)


def test_store_keeps_the_config_as_explicit_module_lists_that_peft_reads_alike(
    good: Path, validator: AdapterValidator, tiny_model: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = _copy(good, tmp_path)
    _edit_config(folder, target_modules=["q_proj", "v_proj", "k_proj"], alpha_pattern={"v_proj": 4.0},
                 rank_pattern={"self_attn.q_proj": 8}, layers_to_transform=[0, 1], layers_pattern="layers")
    weights = (folder / "adapter_model.safetensors").read_bytes()

    ref = AdapterStore(tmp_path / "store", validator).put(folder)

    stored = json.loads((ref.path / "adapter_config.json").read_text())
    modules = sorted({k[len("base_model.model."):].rsplit(".lora_", 1)[0] for k in load_file(
        str(folder / "adapter_model.safetensors"))})
    assert stored["target_modules"] == modules and len(modules) == 4  # 2 layers x q, v
    assert stored["alpha_pattern"] == {m.replace(".", "\\."): 4.0 for m in modules if "v_proj" in m}
    assert stored["rank_pattern"] == {}
    assert stored["layers_to_transform"] is None and stored["layers_pattern"] is None
    assert (ref.path / "adapter_model.safetensors").read_bytes() == weights
    assert ref.sha256 == hashlib.sha256(weights).hexdigest()
    assert ref.target_modules == ("q_proj", "v_proj")
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), str(ref.path))
    layer = peft_model.base_model.model.model.layers[1].self_attn
    assert layer.q_proj.scaling["default"] == 16.0 / 8 and layer.v_proj.scaling["default"] == 4.0 / 8
    assert not hasattr(layer.k_proj, "lora_A")


def test_too_many_module_names_are_refused(good: Path, validator: AdapterValidator, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    _edit_config(folder, target_modules=["q_proj", "v_proj"] + [f"m{i}" for i in range(50_000)])

    with pytest.raises(AdapterFormatError, match="at most 4096"):
        validator.validate(folder)


@pytest.mark.parametrize("fields", [{"layer_replication": [[0, 2], [0, 2]]},
                                    {"megatron_config": {"tensor_model_parallel_size": 1}},
                                    {"modules_to_save": ["lm_head"]}])
def test_fields_that_change_the_base_model_on_load_are_refused(
    fields: dict[str, object], good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    _edit_config(folder, **fields)

    with pytest.raises(AdapterFormatError, match="is not supported"):
        validator.validate(folder)


def test_an_init_that_rewrites_base_weights_is_stored_as_the_plain_one(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    folder = _copy(good, tmp_path)
    _edit_config(folder, init_lora_weights="pissa")

    ref = AdapterStore(tmp_path / "store", validator).put(folder)

    assert json.loads((ref.path / "adapter_config.json").read_text())["init_lora_weights"] is True


# -- the store: links, torn entries, durability ---------------------------------------------


def test_store_refuses_symlinks(good: Path, tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "store")
    linked_weights = tmp_path / "linked-weights"
    linked_weights.mkdir()
    shutil.copyfile(good / "adapter_config.json", linked_weights / "adapter_config.json")
    (linked_weights / "adapter_model.safetensors").symlink_to(good / "adapter_model.safetensors")
    linked_config = _copy(good, tmp_path)
    (linked_config / "adapter_config.json").unlink()
    (linked_config / "adapter_config.json").symlink_to("/etc/passwd")
    linked_folder = tmp_path / "linked-folder"
    linked_folder.symlink_to(good)

    for folder in (linked_weights, linked_config, linked_folder):
        with pytest.raises(AdapterFormatError, match="symlink"):
            store.put(folder)

    assert store.list() == [] and not any(store.root.iterdir())


def test_a_torn_entry_is_not_present_and_a_put_repairs_it(
    good: Path, validator: AdapterValidator, tmp_path: Path
) -> None:
    store = AdapterStore(tmp_path / "store", validator)
    sha = adapter_sha256(good)
    torn = store.root / sha  # what a crash mid-copy leaves: the folder, half the weights
    torn.mkdir()
    shutil.copyfile(good / "adapter_config.json", torn / "adapter_config.json")
    (torn / "adapter_model.safetensors").write_bytes((good / "adapter_model.safetensors").read_bytes()[:500])

    present = store.has(sha)
    listed = store.list()
    with pytest.raises(AdapterNotFound):
        store.path(sha)
    ref = store.put(good)

    assert not present and listed == []
    assert ref.sha256 == sha and store.has(sha) and store.list() == [sha]
    assert store.validate(sha)[Q_A].shape == (8, 256)


def test_an_entry_from_before_the_marker_counts_once_verified(good: Path, tmp_path: Path) -> None:
    store = AdapterStore(tmp_path / "store")
    sha = adapter_sha256(good)
    shutil.copytree(good, store.root / sha)

    assert store.has(sha) and (store.root / sha / ".swarm-complete").read_text() == sha
    assert not store.has("0" * 64)


def test_an_unmarked_entry_in_a_read_only_store_is_hashed_once(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import swarm.adapters.store

    # Prepare: an entry from before the marker, in a store where no marker can be written
    store = AdapterStore(tmp_path / "store")
    sha = adapter_sha256(good)
    shutil.copytree(good, store.root / sha)
    hashed: list[Path] = []
    real_hash = swarm.adapters.store.adapter_sha256

    def counting(folder: str | Path) -> str:
        hashed.append(Path(folder))
        return real_hash(folder)

    def read_only(path: Path, chunks: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(swarm.adapters.store, "adapter_sha256", counting)
    monkeypatch.setattr(swarm.adapters.store, "write_durably", read_only)

    # Execute: the coordinator asks about it for every report
    answers = [store.has(sha) for _ in range(5)]

    # Assert: present each time, hashed once, no marker
    assert answers == [True] * 5 and len(hashed) == 1
    assert not (store.root / sha / ".swarm-complete").exists()


def test_put_fsyncs_every_file_and_folder_before_it_returns(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    store = AdapterStore(tmp_path / "store")

    ref = store.put(good)

    names = [Path(p).name for p in synced]
    for name in ("adapter_model.safetensors", "adapter_config.json", ".swarm-complete"):
        assert name in names
    assert str(store.root) == synced[-1]  # the rename into the root, made durable last
    assert any(Path(p).name.startswith(".put-") for p in synced)  # the entry's own folder
    assert ref.path.is_dir()


# -- fuzz: whatever the bytes, only a deliberate typed error comes out ------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_CONFIG_FIELDS = ["r", "lora_alpha", "peft_type", "target_modules", "rank_pattern", "alpha_pattern",
                  "use_rslora", "layers_to_transform", "layers_pattern", "modules_to_save",
                  "exclude_modules", "base_model_name_or_path"]
_name = st.sampled_from(["q_proj", "v_proj", "self_attn.q_proj", "(", "(.*.*)*!", "", ".", "a\\.b"])
_field_value = _json | _name | st.lists(_name, max_size=3) | st.dictionaries(_name, _json, max_size=3)


def _assert_deliberate(exc: AdapterError) -> None:
    # the validator's safety net names the untyped exception it caught; none may reach it
    assert "malformed adapter (" not in str(exc), str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(changes=st.dictionaries(st.sampled_from(_CONFIG_FIELDS), _field_value, max_size=4),
       raw=st.none() | st.binary(max_size=64))
def test_fuzzed_configs_give_only_typed_errors(
    changes: dict[str, object], raw: bytes | None, good: Path, validator: AdapterValidator,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = Path(shutil.copytree(good, tmp_path_factory.mktemp("fuzz") / "a"))
    if raw is None:
        _edit_config(folder, **changes)
    else:
        (folder / "adapter_config.json").write_bytes(raw)

    try:
        config = validator.check(folder).config
    except AdapterError as exc:
        _assert_deliberate(exc)
    else:
        assert all(isinstance(m, str) for m in config["target_modules"])


_header_entry = st.fixed_dictionaries(
    {}, optional={"dtype": st.sampled_from(["F32", "F16", "BF16", "I32", "X"]) | _json,
                  "shape": st.lists(st.integers(-3, 300), max_size=3) | _json,
                  "data_offsets": st.lists(st.integers(-5, 20000), min_size=2, max_size=2) | _json},
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=st.dictionaries(st.sampled_from([Q_A, Q_B, "x", "__metadata__"]) | st.text(max_size=20),
                               _header_entry | _json, max_size=3),
       declared=st.none() | st.integers(0, 1 << 64 - 1), tail=st.binary(max_size=2048),
       nesting=st.integers(0, 3000))
def test_fuzzed_safetensors_headers_give_only_typed_errors(
    entries: dict[str, object], declared: int | None, tail: bytes, nesting: int,
    good: Path, validator: AdapterValidator, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = Path(shutil.copytree(good, tmp_path_factory.mktemp("fuzz") / "a"))
    header = json.dumps(entries).encode() if nesting < 2000 else b"[" * nesting + b"]" * nesting
    length = len(header) if declared is None else declared
    (folder / "adapter_model.safetensors").write_bytes(length.to_bytes(8, "little") + header + tail)

    with pytest.raises(AdapterError) as caught:
        validator.validate(folder)

    _assert_deliberate(caught.value)


def test_an_unreadable_weights_file_is_a_format_error(good: Path, tmp_path: Path) -> None:
    folder = _copy(good, tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.safetensors").mkdir()  # a folder where the file belongs: EISDIR

    with pytest.raises(AdapterFormatError, match="cannot be read"):
        adapter_sha256(folder)
    with pytest.raises(AdapterFormatError):
        AdapterStore(tmp_path / "store").put(folder)


@pytest.mark.timeout(60)  # opening a FIFO for reading would wait for a writer for ever
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(good: Path, tmp_path: Path) -> None:
    import os

    folder = _copy(good, tmp_path)
    (folder / "adapter_config.json").unlink()
    os.mkfifo(folder / "adapter_config.json")

    with pytest.raises(AdapterFormatError, match="not a regular file"):
        AdapterStore(tmp_path / "store").put(folder)
