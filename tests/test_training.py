"""LoRA training on the tiny model: it learns, it is reproducible, vLLM serves what it wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarm.adapters.store import AdapterStore
from swarm.adapters.tensorfile import read_safetensors
from swarm.adapters.validate import AdapterValidator, adapter_sha256
from swarm.errors import TrainingError
from swarm.serving.settings import LoraSection
from swarm.serving.training import Trainer, TrainJob, train_lora
from swarm.skills import evaluate, make_dataset, train_test_split

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def trainer(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    store = AdapterStore(tmp_path_factory.mktemp("store"), AdapterValidator(tiny_model))
    return Trainer(tiny_model, store=store, progress=False)


@pytest.fixture(scope="module")
def reverse_data() -> tuple[list[Any], list[Any]]:
    rng = np.random.default_rng(0)
    train, test = train_test_split(make_dataset(["reverse"], 3000, rng), 0.1, rng)
    return train, test[:100]


@pytest.fixture(scope="module")
def learned(
    trainer: Trainer, reverse_data: tuple[list[Any], list[Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Train once on ``reverse`` with a small budget; keep accuracy before and after."""
    train, test = reverse_data
    before = evaluate(trainer.generate, test)
    settings = LoraSection(steps=300)  # the defaults: rank 8 on all seven projections
    job = TrainJob(train, settings, seed=0, out_dir=tmp_path_factory.mktemp("rev") / "a")
    result = trainer.run(job)
    return {"before": before, "after": evaluate(trainer.generate, test), "result": result}


@pytest.mark.slow
def test_training_teaches_reverse(learned: dict[str, Any]) -> None:
    result = learned["result"]

    assert learned["before"] <= 0.05
    assert learned["after"] >= 0.8
    assert result.losses[-1] < result.losses[0] - 2.0


@pytest.mark.slow
def test_the_result_is_a_stored_valid_peft_folder(learned: dict[str, Any], tiny_model: Path) -> None:
    result = learned["result"]
    config = json.loads((result.path / "adapter_config.json").read_text())

    assert result.ref is not None and result.ref.sha256 == adapter_sha256(result.path)
    assert result.ref.rank == 8 and set(result.ref.target_modules) == set(ALL_LINEAR)
    assert config["base_model_name_or_path"] == str(tiny_model)
    assert sorted(p.name for p in result.path.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    AdapterValidator(tiny_model).validate(result.ref.path)


def test_same_seed_same_bytes_other_seed_other_bytes(trainer: Trainer, tmp_path: Path) -> None:
    data = make_dataset(["sort", "add"], 64, np.random.default_rng(1))
    settings = LoraSection(steps=4, batch_size=8, dropout=0.1)

    a = trainer.train(data, settings, 5, tmp_path / "a")
    other = trainer.train(data, settings, 6, tmp_path / "other")
    b = trainer.train(data, settings, 5, tmp_path / "b")

    assert adapter_sha256(a) == adapter_sha256(b)
    assert adapter_sha256(a) != adapter_sha256(other)


def test_a_fresh_trainer_reproduces_the_bytes(
    trainer: Trainer, tiny_model: Path, tmp_path: Path
) -> None:
    data = make_dataset(["count"], 32, np.random.default_rng(2))
    settings = LoraSection(rank=4, steps=3, batch_size=4)

    first = trainer.train(data, settings, 9, tmp_path / "a")
    second = train_lora(tiny_model, data, settings, 9, tmp_path / "b")

    assert adapter_sha256(first) == adapter_sha256(second)
    assert json.loads((second / "adapter_config.json").read_text())["r"] == 4


def test_continue_training_starts_from_the_init_adapter(trainer: Trainer, tmp_path: Path) -> None:
    data = make_dataset(["add"], 32, np.random.default_rng(3))
    init = trainer.train(data, LoraSection(rank=4, alpha=8, steps=5, batch_size=8), 1,
                         tmp_path / "init")
    # A different shape in settings: the init adapter's own shape wins.
    nudge = LoraSection(rank=8, learning_rate=1e-9, steps=1, batch_size=8)

    cont = trainer.train(data, nudge, 2, tmp_path / "cont", init_adapter=init)

    before = read_safetensors(init / "adapter_model.safetensors")
    after = read_safetensors(cont / "adapter_model.safetensors")
    assert sorted(before) == sorted(after)
    assert all(np.allclose(before[k], after[k], atol=1e-5) for k in before)
    assert any(np.abs(before[k]).max() > 1e-3 for k in before if "lora_B" in k)


def test_bad_jobs_are_training_errors(trainer: Trainer, tmp_path: Path) -> None:
    data = make_dataset(["add"], 8, np.random.default_rng(4))

    with pytest.raises(TrainingError, match="at least one example"):
        trainer.train([], LoraSection(steps=1), 0, tmp_path / "x")
    with pytest.raises(TrainingError, match="init adapter"):
        trainer.train(data, LoraSection(steps=1), 0, tmp_path / "y", init_adapter=tmp_path)
    with pytest.raises(TrainingError, match="cannot load base model"):
        Trainer(tmp_path / "missing", progress=False)


def test_progress_bar_can_be_on(tiny_model: Path, trainer: Trainer, tmp_path: Path) -> None:
    data = make_dataset(["add"], 8, np.random.default_rng(5))
    trainer.progress = True
    try:
        out = trainer.train(data, LoraSection(steps=2, batch_size=4), 0, tmp_path / "p")
    finally:
        trainer.progress = False

    assert (out / "adapter_model.safetensors").is_file()


def test_the_trainer_draws_nothing_unless_asked(tiny_model: Path, trainer: Trainer,
                                                tmp_path: Path) -> None:
    data = make_dataset(["add"], 8, np.random.default_rng(6))
    seen: list[tuple[int, int, float]] = []
    trainer.progress = lambda step, steps, loss: seen.append((step, steps, loss))
    try:
        trainer.train(data, LoraSection(steps=3, batch_size=4), 0, tmp_path / "c")
    finally:
        trainer.progress = False

    assert Trainer(tiny_model).progress is False  # no bar by default
    assert [(step, steps) for step, steps, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert all(np.isfinite(loss) for _, _, loss in seen)


@pytest.mark.slow
def test_vllm_serves_the_trained_adapter(
    learned: dict[str, Any],
    reverse_data: tuple[list[Any], list[Any]],
    vllm_backend: Any,
    adapter_paths: Any,
) -> None:
    from swarm.wire.codec import GenRequest

    ref = learned["result"].ref
    _, test = reverse_data
    adapter_paths.add(ref.sha256, ref.path)
    requests = [GenRequest(prompt=ex.prompt, adapter=ref.sha256, max_tokens=12)
                for ex in test[:40]]

    served = [result.text for result in vllm_backend.generate(requests)]

    assert evaluate(lambda ps: served, test[:40]) >= 0.8


def test_a_diverging_job_is_a_training_error(trainer: Trainer, tmp_path: Path) -> None:
    data = make_dataset(["add"], 16, np.random.default_rng(6))
    wild = LoraSection(learning_rate=1e30, steps=6, batch_size=8)

    with pytest.raises(TrainingError, match="diverged"):
        trainer.train(data, wild, 0, tmp_path / "wild")
    assert not (tmp_path / "wild").exists()


def test_a_train_message_with_a_bad_seed_is_a_training_error(tiny_model: Path, tmp_path: Path) -> None:
    from swarm.serving.jobs import store_trainer
    from swarm.wire.codec import Example, Train

    run = store_trainer(tiny_model, AdapterStore(tmp_path / "store"))
    examples = [Example(prompt="add: 1 + 1 =", completion=" 2")]
    job = Train(sender="ag", agent_id="ag", examples=examples, hyper={"seed": 2.5, "steps": 1})

    with pytest.raises(TrainingError, match="seed must be an integer"):
        run(job)
    assert list((tmp_path / "store").iterdir()) == []
    for seed in (10**30, "x"):  # out of the message's own bounds: no such Train exists
        with pytest.raises(ValueError, match="seed"):
            Train(sender="ag", agent_id="ag", examples=examples,
                  hyper={"seed": seed, "steps": 1})  # type: ignore[dict-item]
