"""Merging: peft's weighted merges on real adapters, robust rules against bad adapters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from swarm.adapters.validate import AdapterValidator
from swarm.errors import AdapterError
from swarm.serving.merging import (
    Merger,
    adapter_deltas,
    merge_adapters,
    robust_combine,
    robust_merge,
    robust_merge_deltas,
)
from tests.support import random_lora

RANK = 4
MODULES = [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]


def _write(folder: Path, factors: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A PEFT LoRA folder from (A, B) per module, rank ``RANK``, alpha ``RANK`` (scale 1)."""
    folder.mkdir(parents=True)
    tensors = {}
    for module, (a, b) in factors.items():
        tensors[f"base_model.model.{module}.lora_A.weight"] = a.astype(np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = b.astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "r": RANK, "lora_alpha": RANK,
              "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture()
def honest(tmp_path: Path) -> list[Path]:
    """Five adapters scattered around one common update (independent factor noise)."""
    rng = np.random.default_rng(0)
    center = {m: (rng.normal(0, 0.1, (RANK, 256)), rng.normal(0, 0.1, (256, RANK)))
              for m in MODULES}
    return [
        _write(tmp_path / f"honest{i}", {
            m: (a + rng.normal(0, 0.005, a.shape), b + rng.normal(0, 0.005, b.shape))
            for m, (a, b) in center.items()
        })
        for i in range(5)
    ]


def _corrupt(src: Path, dest: Path, factor: float) -> Path:
    deltas = adapter_deltas(src)  # scale 1, so delta = B @ A
    from safetensors.numpy import load_file

    tensors = load_file(str(src / "adapter_model.safetensors"))
    factors = {}
    for module in deltas:
        a = tensors[f"base_model.model.{module}.lora_A.weight"]
        b = tensors[f"base_model.model.{module}.lora_B.weight"]
        factors[module] = (a, b * factor)
    return _write(dest, factors)


def _distance(merged: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """Relative Frobenius distance over all layers."""
    diff = sum(float(np.sum((merged[m] - reference[m]) ** 2)) for m in reference)
    size = sum(float(np.sum(reference[m] ** 2)) for m in reference)
    return (diff / size) ** 0.5


@pytest.mark.parametrize(
    ("bad", "trim"),
    [
        ({0: -1.0}, 0.2),  # one sign-flipped
        ({0: 100.0}, 0.2),  # one scaled 100x
        ({0: -1.0, 3: 100.0}, 0.4),  # one of each
        ({1: 100.0, 4: 100.0}, 0.4),  # two scaled 100x
    ],
)
def test_robust_rules_resist_bad_adapters(
    honest: list[Path], tmp_path: Path, bad: dict[int, float], trim: float
) -> None:
    clean_mean = robust_merge_deltas(honest, "mean")
    mixed = [
        _corrupt(folder, tmp_path / f"bad{i}", bad[i]) if i in bad else folder
        for i, folder in enumerate(honest)
    ]

    median = robust_merge_deltas(mixed, "median")
    trimmed = robust_merge_deltas(mixed, "trimmed_mean", trim=trim)
    mean = robust_merge_deltas(mixed, "mean")

    assert _distance(median, clean_mean) < 0.15
    assert _distance(trimmed, clean_mean) < 0.15
    assert _distance(mean, clean_mean) > 0.3


def test_norm_clipping_bounds_a_scaled_adapter(honest: list[Path], tmp_path: Path) -> None:
    clean_mean = robust_merge_deltas(honest, "mean")
    mixed = [_corrupt(honest[0], tmp_path / "bad", 100.0), *honest[1:]]

    clipped = robust_merge_deltas(mixed, "clipped_mean")

    assert _distance(clipped, clean_mean) < 0.15
    assert _distance(robust_merge_deltas(mixed, "mean"), clean_mean) > 10


def test_robust_combine_rules_on_numbers() -> None:
    stack = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])

    assert robust_combine(stack, "mean")[0] == 22.0
    assert robust_combine(stack, "median")[0] == 3.0
    assert robust_combine(stack, "trimmed_mean", trim=0.2)[0] == 3.0
    assert robust_combine(stack, "clipped_mean", clip=2.0)[0] == pytest.approx(1.8)
    with pytest.raises(AdapterError, match="unknown robust rule"):
        robust_combine(stack, "max")
    with pytest.raises(AdapterError, match="trim"):
        robust_combine(stack, "trimmed_mean", trim=0.5)


def test_robust_merge_writes_a_valid_adapter_of_the_asked_rank(
    honest: list[Path], tmp_path: Path, tiny_model: Path
) -> None:
    out = robust_merge(honest, "median", tmp_path / "merged", rank=2 * RANK)
    median = robust_merge_deltas(honest, "median")

    written = adapter_deltas(out)
    tensors = AdapterValidator(tiny_model).validate(out)

    assert json.loads((out / "adapter_config.json").read_text())["r"] == 2 * RANK
    assert tensors[f"base_model.model.{MODULES[0]}.lora_A.weight"].shape == (2 * RANK, 256)
    # The median of rank-4 updates is not rank 8, but an 8-SVD keeps most of it.
    assert _distance(written, median) < 0.5


@pytest.fixture(scope="module")
def pair(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pair")
    return (
        random_lora(tiny_model, root / "student", seed=1, scale=1.0),
        random_lora(tiny_model, root / "teacher", seed=2, scale=1.0),
    )


@pytest.fixture(scope="module")
def merger(tiny_model: Path) -> Merger:
    return Merger(tiny_model)


def test_cat_merge_is_the_exact_weighted_sum(
    pair: tuple[Path, Path], merger: Merger, tmp_path: Path
) -> None:
    student, teacher = pair

    out = merge_adapters(student, teacher, 0.3, "cat", tmp_path / "m", merger=merger)

    merged, s, t = adapter_deltas(out), adapter_deltas(student), adapter_deltas(teacher)
    for module in s:
        expected = 0.7 * s[module] + 0.3 * t[module]
        assert np.allclose(merged[module], expected, atol=1e-5)


@pytest.mark.parametrize("method", ["linear", "svd", "ties", "dare_linear", "dare_ties_svd"])
def test_peft_methods_give_valid_adapters_that_peft_loads(
    pair: tuple[Path, Path], merger: Merger, tmp_path: Path, tiny_model: Path, method: str
) -> None:
    from peft import PeftModel

    out = merge_adapters(*pair, 0.5, method, tmp_path / method, merger=merger)

    AdapterValidator(tiny_model).validate(out)
    loaded = PeftModel.from_pretrained(merger._base, str(out))
    student = adapter_deltas(pair[0])
    assert set(adapter_deltas(out)) == set(student)
    assert any("lora_A" in name for name, _ in loaded.named_parameters())
    merger._base = loaded.unload()


def test_svd_merge_of_full_rank_is_exact_and_bad_input_is_refused(
    pair: tuple[Path, Path], merger: Merger, tmp_path: Path
) -> None:
    student, teacher = pair
    out = merger.merge([student, teacher], [0.5, 0.5], tmp_path / "svd", "svd", rank=16)

    merged, s, t = adapter_deltas(out), adapter_deltas(student), adapter_deltas(teacher)
    for module in s:
        assert np.allclose(merged[module], 0.5 * (s[module] + t[module]), atol=1e-4)
    with pytest.raises(AdapterError, match="unknown merge method"):
        merge_adapters(student, teacher, 0.5, "average", tmp_path / "x", merger=merger)
    with pytest.raises(AdapterError, match="weight"):
        merge_adapters(student, teacher, 1.5, "svd", tmp_path / "x", merger=merger)


def test_merge_finds_the_base_model_from_the_adapter_config(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    student, teacher = pair

    out = merge_adapters(student, teacher, 0.0, "cat", tmp_path / "m")

    merged, s = adapter_deltas(out), adapter_deltas(student)
    assert all(np.allclose(merged[m], s[m], atol=1e-6) for m in s)


def test_robust_merge_can_validate_its_inputs(
    honest: list[Path], tmp_path: Path, tiny_model: Path
) -> None:
    from safetensors.numpy import load_file

    from swarm.errors import AdapterNonFiniteError

    poisoned = _corrupt(honest[0], tmp_path / "nan", 1.0)
    tensors = load_file(str(poisoned / "adapter_model.safetensors"))
    key = f"base_model.model.{MODULES[0]}.lora_A.weight"
    tensors[key][0, 0] = np.nan
    save_file(tensors, str(poisoned / "adapter_model.safetensors"))

    with pytest.raises(AdapterNonFiniteError, match="q_proj"):
        robust_merge([poisoned, *honest[1:]], "median", tmp_path / "m",
                     validator=AdapterValidator(tiny_model))


def test_a_failed_merge_leaves_the_merger_usable(
    pair: tuple[Path, Path], merger: Merger, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((pair[1] / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 16)

    with pytest.raises(AdapterError):
        merger.merge([pair[0], broken], [0.5, 0.5], tmp_path / "x", "cat")
    out = merger.merge([pair[0], pair[1]], [1.0, 0.0], tmp_path / "ok", "cat")

    merged, student = adapter_deltas(out), adapter_deltas(pair[0])
    assert all(np.allclose(merged[m], student[m], atol=1e-6) for m in student)
