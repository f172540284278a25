"""The model server's merge jobs on real trained adapters: every method, robust rules, poison."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from swarm.adapters.store import AdapterStore
from swarm.adapters.validate import AdapterValidator
from swarm.errors import AdapterError
from swarm.serving.jobs import store_merger
from swarm.serving.merging import PEFT_METHODS, ROBUST_RULES, adapter_deltas
from swarm.serving.settings import LoraSection
from swarm.serving.training import Trainer, TrainJob
from swarm.skills import make_dataset
from swarm.wire.codec import Merge


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three adapters trained for real (two on ``reverse``, one on ``add``), in a store."""
    root = tmp_path_factory.mktemp("jobs")
    store = AdapterStore(root / "store")
    trainer = Trainer(tiny_model, store=store)
    settings = msgspec.structs.replace(LoraSection(), steps=15)
    out = {}
    for name, skill, seed in (("rev_a", "reverse", 1), ("rev_b", "reverse", 2), ("add", "add", 3)):
        data = make_dataset([skill], 64, np.random.default_rng(seed))
        result = trainer.run(TrainJob(data, settings, seed, root / name))
        assert result.ref is not None
        out[name] = result.ref.sha256
    out["root"] = str(root)
    return out


@pytest.fixture(scope="module")
def merge(tiny_model: Path, trained: dict[str, str]):  # type: ignore[no-untyped-def]
    return store_merger(tiny_model, AdapterStore(Path(trained["root"]) / "store"))


@pytest.mark.parametrize("method", [*PEFT_METHODS, *ROBUST_RULES])
def test_every_merge_method_gives_an_adapter_peft_loads(
    method: str, trained: dict[str, str], merge, tiny_model: Path  # type: ignore[no-untyped-def]
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store = AdapterStore(Path(trained["root"]) / "store")
    inputs = [trained["rev_a"], trained["rev_b"], trained["add"]]

    sha = merge(Merge(sender="t", adapters=tuple(inputs), weights=(1.0, 0.5, 0.5),
                      method=method, density=0.5))

    folder = store.path(sha)
    AdapterValidator(tiny_model).validate(folder)
    merged, first = adapter_deltas(folder), adapter_deltas(store.path(inputs[0]))
    assert set(merged) == set(first)
    for module, delta in merged.items():
        assert delta.shape == first[module].shape and np.isfinite(delta).all()
    assert any(np.abs(d).max() > 0 for d in merged.values())
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    loaded = PeftModel.from_pretrained(base, str(folder))
    assert any("lora_A" in name for name, _ in loaded.named_parameters())


def test_a_median_over_teachers_shrugs_off_a_sign_flipped_teacher(
    trained: dict[str, str], merge  # type: ignore[no-untyped-def]
) -> None:
    store = AdapterStore(Path(trained["root"]) / "store")
    honest = [trained["rev_a"], trained["rev_b"]]
    poison = merge(Merge(sender="t", adapters=(honest[0],), weights=(-4.0,), method="cat"))
    flipped, original = adapter_deltas(store.path(poison)), adapter_deltas(store.path(honest[0]))
    for module in original:  # the attack is what it says: -4 times the honest update
        assert np.allclose(flipped[module], -4.0 * original[module], atol=1e-4)

    mean = merge(Merge(sender="t", adapters=(*honest, poison), method="mean"))
    median = merge(Merge(sender="t", adapters=(*honest, poison), method="median"))

    reference = [adapter_deltas(store.path(h)) for h in honest]
    def distance(sha: str) -> float:
        got = adapter_deltas(store.path(sha))
        return float(sum(np.linalg.norm(got[m] - (reference[0][m] + reference[1][m]) / 2)
                         for m in got))
    assert distance(median) < 0.5 * distance(mean)


def test_bad_merge_jobs_are_adapter_errors(trained: dict[str, str], merge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AdapterError, match="as many weights"):
        merge(Merge(sender="t", adapters=(trained["rev_a"], trained["add"]), weights=(1.0,)))
    with pytest.raises(AdapterError, match="unknown merge method"):
        merge(Merge(sender="t", adapters=(trained["rev_a"], trained["add"]), weights=(1.0, 1.0),
                    method="average"))


def test_the_two_adapter_form_is_student_plus_weight_teacher(
    trained: dict[str, str], merge  # type: ignore[no-untyped-def]
) -> None:
    store = AdapterStore(Path(trained["root"]) / "store")
    sha = merge(Merge(sender="t", student_adapter=trained["rev_a"],
                      teacher_adapter=trained["add"], weight=0.5, method="cat"))
    got, s = adapter_deltas(store.path(sha)), adapter_deltas(store.path(trained["rev_a"]))
    t = adapter_deltas(store.path(trained["add"]))
    for module in got:
        assert np.allclose(got[module], s[module] + 0.5 * t[module], atol=1e-4)
    assert json.loads((store.path(sha) / "adapter_config.json").read_text())["r"] >= 8
