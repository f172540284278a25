"""A real LLM (SmolLM2-135M-Instruct) on every backend: chat, sampling, structured output,
typed errors for bad requests, and adapters the swarm trained loading in peft and vLLM.

The three backends share one greedy answer for the same chat: vLLM in this
process, transformers (``hf``) in this process, and ``openai`` against vLLM's
OpenAI-compatible server in a subprocess.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from swarm.errors import RequestError, StructuredOutputError, WireError
from swarm.serving.base import MappingResolver
from swarm.serving.client import ModelClient
from swarm.serving.server import ModelServer, ServerThread
from swarm.wire.codec import ChatTurn, GenRequest
from tests.support import api_server

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "What is 17+25?",
             "Name one colour of the rainbow."]


class City(msgspec.Struct):
    name: str
    country: str


CITY = "Give the capital of France as JSON with the fields name and country."


@pytest.fixture(scope="module")
def resolver() -> MappingResolver:
    return MappingResolver()


@pytest.fixture(scope="module")
def smol_vllm(smollm2: Path, resolver: MappingResolver) -> Iterator[Any]:
    from swarm.serving.vllm_backend import VLLMBackend

    backend = VLLMBackend(smollm2, resolver, max_loras=4, max_cpu_loras=8, max_lora_rank=16,
                          max_model_len=1024, gpu_memory_utilization=0.08, dtype="float32")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def smol_hf(smollm2: Path, resolver: MappingResolver) -> Any:
    from swarm.serving.hf_backend import HFBackend

    return HFBackend(smollm2, resolver)


@pytest.fixture(scope="module")
def smol_openai(smollm2: Path, resolver: MappingResolver,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from swarm.serving.openai_backend import OpenAIBackend

    log = tmp_path_factory.mktemp("smol-api") / "server.log"
    with api_server(smollm2, log, "--max-model-len", "1024",
                    "--gpu-memory-utilization", "0.08") as url:
        backend = OpenAIBackend(url, resolver)
        yield backend
        backend.close()


def chat(question: str, **sampling: Any) -> GenRequest:
    return GenRequest(messages=[ChatTurn(role="user", content=question)], **sampling)


def serve(backend: Any, tmp_path: Path, **server: Any) -> ServerThread:
    return ServerThread(ModelServer(backend, f"ipc://{tmp_path}/model.ipc", **server))


def ask(tmp_path: Path, coro: Any) -> Any:
    async def main() -> Any:
        async with ModelClient.connect(f"ipc://{tmp_path}/model.ipc") as model:
            return await coro(model)

    return asyncio.run(main())


def test_every_backend_gives_the_same_greedy_answer_to_a_chat(
        smol_vllm: Any, smol_hf: Any, smol_openai: Any) -> None:
    requests = [chat(q, max_tokens=24) for q in QUESTIONS]
    answers = {b.name: [r.text for r in b.generate(requests)]
               for b in (smol_vllm, smol_hf, smol_openai)}
    assert answers["vllm"] == answers["hf"] == answers["openai"], answers
    assert "Paris" in answers["vllm"][0]
    # A raw prompt is continued as it is, on every backend alike.
    raw = [GenRequest(prompt="The capital of Italy is", max_tokens=8)]
    assert len({b.generate(raw)[0].text for b in (smol_vllm, smol_hf, smol_openai)}) == 1


@pytest.mark.parametrize("backend_name", ["smol_vllm", "smol_hf", "smol_openai"])
def test_a_json_schema_request_returns_an_object_of_that_type(
        backend_name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend = request.getfixturevalue(backend_name)

    async def run(model: ModelClient) -> tuple[City, list[City]]:
        one = await model.chat(CITY, schema=City, max_tokens=64)
        outs = await model.generate([GenRequest(
            messages=[ChatTurn(role="user", content=CITY)], json_schema=_schema(City),
            max_tokens=64, temperature=0.9, seed=3, n=3)])
        return one, [msgspec.json.decode(t, type=City) for t in outs[0].texts]

    with serve(backend, tmp_path):
        city, samples = ask(tmp_path, run)
    assert isinstance(city, City) and city.name and city.country
    assert len(samples) == 3 and all(isinstance(c, City) for c in samples)


def test_bad_requests_get_typed_errors_and_the_server_keeps_serving(
        smol_vllm: Any, smol_hf: Any, tmp_path: Path) -> None:
    for backend in (smol_vllm, smol_hf):  # in process: the backend's own checks
        for bad in (chat("hi", temperature=math.nan), chat("hi", max_tokens=10**6),
                    chat("hi", top_p=0.0), chat("hi", n=99), chat("hi", json_schema='{"type": 5}'),
                    GenRequest(prompt="x", messages=[ChatTurn(role="user", content="y")])):
            with pytest.raises(RequestError):
                backend.generate([bad])

    async def run(model: ModelClient) -> list[Any]:
        seen: list[Any] = []
        for bad in (chat("hi", json_schema='{"type": 5}'), chat("hi", json_schema="not json"),
                    chat("hi", temperature=math.nan), chat("hi", max_tokens=10**6),
                    chat("hi", stop=["x" * 1000])):
            try:
                await model.generate([bad])
            except Exception as exc:
                seen.append(exc)
        try:  # an answer cut off before its JSON closes
            await model.chat(CITY, schema=City, max_tokens=3)
        except Exception as exc:
            seen.append(exc)
        seen.append(await model.chat("What is the capital of France?", max_tokens=16))
        return seen

    with serve(smol_vllm, tmp_path) as server:
        seen = ask(tmp_path, run)
    kinds = [type(e).__name__ for e in seen[:-1]]
    assert kinds == ["RequestError", "RequestError", "WireError", "WireError", "WireError",
                     "StructuredOutputError"], seen
    assert isinstance(seen[2], WireError) and seen[2].kind == "invalid"
    assert "max_tokens" in str(seen[5]) and isinstance(seen[5], StructuredOutputError)
    assert "Paris" in seen[-1]  # and it still answers
    assert server.stats.errors >= 3


def test_sampling_is_seeded_bounded_and_stops_where_asked(smol_vllm: Any, tmp_path: Path) -> None:
    story = "Tell me a short story about a cat."

    async def run(model: ModelClient) -> tuple[Any, ...]:
        seeded = [chat(story, temperature=1.0, top_p=0.9, seed=7, max_tokens=24, n=3)]
        first, again = await model.generate(seeded), await model.generate(seeded)
        other = await model.generate([chat(story, temperature=1.0, top_p=0.9, seed=100,
                                           max_tokens=24)])
        greedy = await model.chat("Count from 1 to 10, separated by commas.", max_tokens=40)
        stopped = await model.chat("Count from 1 to 10, separated by commas.", max_tokens=40,
                                   stop=["5"])
        return first[0], again[0], other[0], greedy, stopped

    with serve(smol_vllm, tmp_path):
        first, again, other, greedy, stopped = ask(tmp_path, run)
    assert first.texts == again.texts and len(first.texts) == 3
    assert len(set(first.texts)) > 1 and other.texts[0] not in first.texts
    assert first.tokens > 0 and len(first.finish_reasons) == 3
    assert "5" in greedy and "5" not in stopped and greedy.startswith(stopped)


def test_an_adapter_the_swarm_trained_loads_in_peft_and_vllm(
        smollm2: Path, smol_vllm: Any, resolver: MappingResolver, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swarm.adapters.store import AdapterStore
    from swarm.serving.jobs import store_trainer
    from swarm.skills import make_dataset
    from swarm.wire.codec import Train, Trained

    store = AdapterStore(tmp_path / "adapters")
    resolver.chain(store.checked_path)
    examples = make_dataset(["add"], 32, np.random.default_rng(0))
    hyper = {"steps": 4, "batch_size": 4, "rank": 8}

    async def run(model: ModelClient) -> str:
        reply = await model.ask(Train(agent_id="a0", examples=examples, hyper=hyper))
        assert isinstance(reply.msg, Trained)
        return reply.msg.adapter

    with serve(smol_vllm, tmp_path, trainer=store_trainer(smollm2, store)):
        sha = ask(tmp_path, run)
    folder = store.path(sha)
    prompt = examples[0].prompt
    served = smol_vllm.generate([GenRequest(prompt=prompt, adapter=sha, max_tokens=6)])[0].text

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2))
    base = AutoModelForCausalLM.from_pretrained(str(smollm2), dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(folder))
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = peft_model.generate(**ids, max_new_tokens=6, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id)
    local = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert local == served


def _schema(type_: Any) -> str:
    from swarm.serving.structured import schema_for

    return schema_for(type_)
