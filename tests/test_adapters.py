"""Adapter store and validation: each kind of bad adapter gets its own typed error."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from swarm.adapters import (
    AdapterStore,
    AdapterValidator,
    adapter_sha256,
    read_safetensors,
)
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


def test_every_bad_kind_has_its_own_class() -> None:
    kinds = [AdapterPickleError, AdapterShapeError, AdapterRankError, AdapterKeyError,
             AdapterNonFiniteError, AdapterNormError, AdapterCorruptError]

    assert len(set(kinds)) == len({k.code for k in kinds}) == 7
    assert all(issubclass(k, AdapterError) for k in kinds)


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
