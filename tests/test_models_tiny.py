"""The tiny model builder: determinism, loading in transformers and in a real vLLM engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarm.cli.main import main
from swarm.models.tiny import weights_sha256
from tests.support import random_lora


def test_same_seed_same_weights_other_seed_other_weights(tmp_path: Path) -> None:
    args = ["model", "tiny", "--layers", "1", "--hidden", "128", "--vocab", "512"]
    assert main([*args, str(tmp_path / "a"), "--seed", "3"]) == 0
    assert main([*args, str(tmp_path / "b"), "--seed", "3"]) == 0
    assert main([*args, str(tmp_path / "c"), "--seed", "4"]) == 0

    same = weights_sha256(tmp_path / "a"), weights_sha256(tmp_path / "b")
    other = weights_sha256(tmp_path / "c")

    assert same[0] == same[1]
    assert other != same[0]


def test_bad_shape_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "tiny", str(tmp_path / "x"), "--hidden", "100"])

    assert code == 2
    assert "multiple of 64" in capsys.readouterr().err


def test_transformers_loads_and_chats(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "reverse abc"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False)

    assert model.config.head_dim == 64
    assert len(tokenizer) == model.config.vocab_size
    assert prompt.startswith("<|bos|><|user|>reverse abc<|assistant|>")
    assert out.shape[1] == ids.shape[1] + 5 or out[0, -1].item() == tokenizer.eos_token_id
    assert tokenizer.tokenize("12") == ["1", "2"]


@pytest.mark.slow
def test_vllm_serves_two_adapters_in_one_batch(
    tiny_model: Path, vllm_backend: Any, adapter_paths: Any, tmp_path: Path
) -> None:
    from swarm.adapters.validate import adapter_sha256
    from swarm.wire.codec import GenRequest

    first = random_lora(tiny_model, tmp_path / "a1", seed=1)
    second = random_lora(tiny_model, tmp_path / "a2", seed=2)
    refs = [adapter_sha256(first), adapter_sha256(second)]
    adapter_paths.add(refs[0], first)
    adapter_paths.add(refs[1], second)
    prompt = "the agent learns to reverse"

    results = vllm_backend.generate(
        [GenRequest(prompt=prompt, adapter=ref, max_tokens=12) for ref in (None, *refs)]
    )
    base, one, two = (tuple(r.token_ids) for r in results)
    alone = [tuple(r.token_ids) for r in vllm_backend.generate(
        [GenRequest(prompt=prompt, adapter=None, max_tokens=12)])]

    assert len({base, one, two}) == 3
    assert alone == [base]  # the base answer in a mixed batch is the base model's
