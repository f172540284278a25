"""Serving: the backends on the tiny model and the model server over real ZeroMQ sockets.

The vLLM tests share the session's one engine (``vllm_backend`` in conftest).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from swarm.errors import AdapterError, BackendError, RegistryError, RemoteError
from swarm.serving import BACKENDS, GenResult, MappingResolver, create_backend
from swarm.serving.base import Backend, check_requests
from swarm.serving.server import ModelServer, ServerThread, TrainOutcome
from swarm.serving.settings import ModelSection
from swarm.transport.peers import Client
from swarm.wire.codec import (
    MAX_TEMPERATURE,
    MAX_TOKENS,
    Chat,
    Generate,
    Generated,
    GenRequest,
    Train,
    Trained,
)
from tests.support import random_lora

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [f"agent {i} says reverse a b c =" for i in range(8)]


def sha(folder: Path) -> str:
    return hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()


def run(coro: Coroutine[Any, Any, Any], timeout: float = 120) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def address(tmp_path: Path) -> str:
    return f"ipc://{tmp_path}/model.ipc"


@pytest.fixture(scope="module")
def loras(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, adapter_paths: Any) -> list[str]:
    """Ten random adapters, servable by the session backend; their content hashes."""
    root = tmp_path_factory.mktemp("loras")
    refs = []
    for i in range(10):
        folder = random_lora(tiny_model, root / f"a{i}", seed=100 + i)
        refs.append(adapter_paths.add(sha(folder), folder))
    return refs


def ask(address: str, jobs: list[dict[str, Any]]) -> dict[str, str]:
    """Run a host process whose agents ask the model server concurrently."""
    out = subprocess.run([sys.executable, "-m", "tests.serving_agents", address], cwd=ROOT,
                         input=json.dumps(jobs), capture_output=True, text=True, timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, str] = json.loads(out.stdout)
    return result


# -- units around the backends ------------------------------------------------------


class FakeBackend:
    """Echoes ``adapter:prompt``; knows one adapter. For the server's own logic only."""

    name = "fake"

    def __init__(self) -> None:
        self.known = {"a" * 64}
        self.batches: list[list[GenRequest]] = []

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        self.batches.append(list(requests))
        return [GenResult(text=f"{(r.adapter or 'base')[:4]}:{r.prompt}") for r in requests]

    def load_adapter(self, ref: str) -> None:
        if ref not in self.known:
            raise AdapterError(f"unknown adapter {ref[:8]}")

    def unload_adapter(self, ref: str) -> None:
        pass

    def loaded_adapters(self) -> list[str]:
        return sorted(self.known)

    def close(self) -> None:
        pass


def test_malformed_requests_and_refs_are_typed_errors() -> None:
    resolver = MappingResolver()

    with pytest.raises(AdapterError, match="sha256"):
        check_requests([GenRequest(prompt="x", adapter="not-a-hash")])
    with pytest.raises(BackendError, match="max_tokens"):
        check_requests([GenRequest(prompt="x", max_tokens=0)])
    with pytest.raises(AdapterError, match="unknown adapter"):
        resolver("b" * 64)
    assert isinstance(FakeBackend(), Backend)


def test_backend_registry_names_and_refusals() -> None:
    assert {"vllm", "hf", "openai"} <= set(BACKENDS.names())
    with pytest.raises(RegistryError, match="unknown backend"):
        create_backend(ModelSection(backend="nope"), Path("."), MappingResolver())
    with pytest.raises(BackendError, match="openai_url"):
        create_backend(ModelSection(backend="openai"), Path("."), MappingResolver())


def test_server_batches_messages_and_isolates_a_bad_adapter(address: str) -> None:
    backend = FakeBackend()
    server = ModelServer(backend, address, window_s=5.0, max_batch=3)

    async def main() -> list[Any]:
        async with Client("host-1", address) as client:
            good = [Generate(sender=f"ag{i}", requests=[GenRequest(prompt=f"p{i}", adapter=ref)])
                    for i, ref in enumerate([None, "a" * 64])]  # fmt: skip
            bad = Generate(sender="ag9", requests=[GenRequest(prompt="p9", adapter="c" * 64)])
            return await asyncio.gather(*(client.request(m) for m in [*good, bad]),
                                        return_exceptions=True)  # fmt: skip

    with ServerThread(server):
        first, second, third = run(main())

    assert isinstance(first.msg, Generated) and first.msg.texts == ["base:p0"]
    assert second.msg.texts == ["aaaa:p1"]
    assert isinstance(third, RemoteError) and third.remote_code == "adapter"
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 2
    assert server.stats.last_batch_requests == 2 and server.stats.errors == 1


def test_server_answers_train_and_unsupported_messages(address: str) -> None:
    jobs: list[Train] = []

    def trainer(job: Train) -> TrainOutcome:
        jobs.append(job)
        return TrainOutcome(adapter="d" * 64, metrics={"loss": 0.5})

    async def main(server_address: str) -> tuple[Any, Any]:
        async with Client("host-1", server_address) as client:
            trained = await client.request(Train(sender="ag1", agent_id="ag1"))
            with pytest.raises(RemoteError) as refused:
                await client.request(Chat(sender="ag1", content="hi"))
            return trained, refused.value

    with ServerThread(ModelServer(FakeBackend(), address, trainer=trainer)):
        trained, refused = run(main(address))
    other = address.replace("model.ipc", "untrained.ipc")
    with ServerThread(ModelServer(FakeBackend(), other)), pytest.raises(RemoteError) as no_trainer:
        run(main(other))

    assert isinstance(trained.msg, Trained) and trained.msg.adapter == "d" * 64
    assert trained.msg.metrics == {"loss": 0.5} and jobs[0].agent_id == "ag1"
    assert refused.remote_code == "backend.unsupported"
    assert no_trainer.value.remote_code == "training"


class BrittleBackend(FakeBackend):
    """Fails as broken adapters and requests do: an untyped error loading one adapter
    (as a validator's ``re.error`` did) and a crash of the whole engine call on one prompt."""

    def load_adapter(self, ref: str) -> None:
        if ref == "b" * 64:
            raise re.error("missing ), unterminated subpattern")
        super().load_adapter(ref)

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        if any(r.prompt == "boom" for r in requests):
            raise RuntimeError("engine step failed")
        return super().generate(requests)


def test_one_bad_message_fails_alone_and_the_server_keeps_serving(address: str) -> None:
    backend = BrittleBackend()
    server = ModelServer(backend, address, window_s=5.0, max_batch=4)
    asks = [(None, "p0"), ("a" * 64, "p1"), (None, "boom"), ("b" * 64, "p3")]

    async def main() -> tuple[list[Any], Any]:
        async with Client("host-1", address) as client:
            first = await asyncio.gather(*(
                client.request(Generate(sender=f"ag{i}", requests=[GenRequest(prompt=p, adapter=ref)]),
                               timeout=30)
                for i, (ref, p) in enumerate(asks)), return_exceptions=True)  # fmt: skip
            later = await client.request(Generate(sender="ag9", requests=[GenRequest(prompt="p9")]),
                                         timeout=30)  # fmt: skip
            return first, later

    with ServerThread(server):
        (base, adapted, boom, bad), later = run(main())

    assert base.msg.texts == ["base:p0"] and adapted.msg.texts == ["aaaa:p1"]
    assert isinstance(boom, RemoteError) and boom.remote_code == "backend" and "engine step" in boom.reason
    assert isinstance(bad, RemoteError) and bad.remote_code == "adapter" and "unterminated subpattern" in bad.reason
    assert later.msg.texts == ["base:p9"]
    assert server.stats.errors == 2


def test_unbounded_requests_are_refused() -> None:
    for bad in (GenRequest(prompt="x", max_tokens=2**62),
                GenRequest(prompt="x", max_tokens=MAX_TOKENS + 1), GenRequest(prompt="x", temperature=float("nan")),
                GenRequest(prompt="x", temperature=float("inf"))):  # fmt: skip
        with pytest.raises(BackendError, match="max_tokens|temperature"):
            check_requests([bad])
    check_requests([GenRequest(prompt="x", max_tokens=MAX_TOKENS, temperature=MAX_TEMPERATURE)])


# -- the vLLM backend and the model server on a real engine ------------------------------


@pytest.mark.slow
def test_model_server_serves_8_agents_with_8_adapters_in_one_batch(
    vllm_backend: Any, loras: list[str], address: str
) -> None:
    alone = {
        f"agent{i}": vllm_backend.generate([GenRequest(prompt=p, adapter=ref, max_tokens=12)])[0].text
        for i, (p, ref) in enumerate(zip(PROMPTS, loras[:8], strict=True))
    }
    jobs = [{"agent": f"agent{i}", "prompt": p, "adapter": ref, "max_tokens": 12}
            for i, (p, ref) in enumerate(zip(PROMPTS, loras[:8], strict=True))]  # fmt: skip
    server = ModelServer(vllm_backend, address, window_s=60.0, max_batch=8)

    with ServerThread(server):
        hosts = [subprocess.Popen([sys.executable, "-m", "tests.serving_agents", address], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]  # fmt: skip
        for k, host in enumerate(hosts):  # both hosts get their jobs before either is awaited
            assert host.stdin is not None
            host.stdin.write(json.dumps(jobs[k::2]))
            host.stdin.close()
        outs = [host.stdout.read() for host in hosts if host.stdout is not None]
        assert [host.wait(timeout=60) for host in hosts] == [0, 0]
    answers = {agent: text for out in outs for agent, text in json.loads(out).items()}

    assert answers == alone
    assert len(set(alone.values())) == 8
    assert server.stats.batches == 1
    assert server.stats.last_batch_requests == 8 and server.stats.last_batch_adapters == 8


@pytest.mark.slow
def test_base_requests_mixed_with_adapters_get_base_answers(vllm_backend: Any, loras: list[str]) -> None:
    # On this CPU no zero adapter stands in: the grouped kernels in the engine process do it.
    assert vllm_backend.grouped_kernels and vllm_backend._zero is None
    base_alone = [r.token_ids for r in vllm_backend.generate([GenRequest(prompt=p) for p in PROMPTS[:3]])]
    mixed = vllm_backend.generate(
        [GenRequest(prompt=p) for p in PROMPTS[:3]]
        + [GenRequest(prompt=p, adapter=ref) for p, ref in zip(PROMPTS, loras[:8], strict=True)]
    )

    assert [r.token_ids for r in mixed[:3]] == base_alone
    assert all(r.token_ids != b for r, b in zip(mixed[3:6], base_alone, strict=True))


@pytest.mark.slow
def test_more_distinct_adapters_than_max_loras_in_one_batch(vllm_backend: Any, loras: list[str]) -> None:
    requests = [GenRequest(prompt=PROMPTS[i % 8], adapter=ref, max_tokens=8)
                for i, ref in enumerate(loras)] + [GenRequest(prompt=PROMPTS[0], max_tokens=8)]  # fmt: skip
    alone = [vllm_backend.generate([r])[0].token_ids for r in requests]

    together = [r.token_ids for r in vllm_backend.generate(requests)]  # 10 adapters, 8 per step

    assert together == alone


@pytest.mark.slow
def test_replaced_adapter_is_served_by_its_new_hash_never_stale(
    vllm_backend: Any, adapter_paths: Any, tiny_model: Path, tmp_path: Path
) -> None:
    old = random_lora(tiny_model, tmp_path / "v1", seed=201)
    new = random_lora(tiny_model, tmp_path / "v2", seed=202)
    request = GenRequest(prompt=PROMPTS[0], max_tokens=12)
    expected_new = _served(vllm_backend, adapter_paths, new, request)
    vllm_backend.unload_adapter(sha(new))
    agent_dir = tmp_path / "agent-adapter"  # one folder the agent keeps rewriting
    _copy_adapter(old, agent_dir)
    old_text = _served(vllm_backend, adapter_paths, agent_dir, request)

    _copy_adapter(new, agent_dir)  # retrained in place: same folder, new bytes, new hash
    new_text = _served(vllm_backend, adapter_paths, agent_dir, request)

    assert old_text != expected_new
    assert new_text == expected_new
    assert vllm_backend.lora_id(sha(new)) != vllm_backend.lora_id(sha(old))


def _served(backend: Any, paths: Any, folder: Path, request: GenRequest) -> str:
    ref = paths.add(sha(folder), folder)
    text: str = backend.generate([GenRequest(prompt=request.prompt, adapter=ref,
                                             max_tokens=request.max_tokens)])[0].text  # fmt: skip
    return text


def _copy_adapter(src: Path, dest: Path) -> None:
    dest.mkdir(exist_ok=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (dest / name).write_bytes((src / name).read_bytes())


@pytest.mark.slow
def test_refused_adapter_errors_without_hurting_the_batch(
    vllm_backend: Any, adapter_paths: Any, loras: list[str], tiny_model: Path, tmp_path: Path,
    address: str,
) -> None:
    too_big = random_lora(tiny_model, tmp_path / "r32", seed=7, rank=32)
    bad = adapter_paths.add(sha(too_big), too_big)
    jobs = [{"agent": "good", "prompt": PROMPTS[1], "adapter": loras[1], "max_tokens": 8},
            {"agent": "bad", "prompt": PROMPTS[1], "adapter": bad, "max_tokens": 8},
            {"agent": "unknown", "prompt": PROMPTS[1], "adapter": "e" * 64, "max_tokens": 8}]
    alone = vllm_backend.generate([GenRequest(prompt=PROMPTS[1], adapter=loras[1], max_tokens=8)])

    with pytest.raises(AdapterError, match="rank"):
        vllm_backend.load_adapter(bad)
    with ServerThread(ModelServer(vllm_backend, address, window_s=0.5)):
        answers = ask(address, jobs)

    assert answers == {"good": alone[0].text, "bad": "error: adapter",
                       "unknown": "error: adapter.not_found"}
    assert bad not in vllm_backend.loaded_adapters()


@pytest.mark.slow
def test_unloaded_adapter_comes_back_under_a_fresh_id(vllm_backend: Any, loras: list[str]) -> None:
    request = GenRequest(prompt=PROMPTS[2], adapter=loras[2], max_tokens=8)
    before = vllm_backend.generate([request])[0].token_ids
    first_id = vllm_backend.lora_id(loras[2])

    vllm_backend.unload_adapter(loras[2])
    gone = loras[2] not in vllm_backend.loaded_adapters()
    after = vllm_backend.generate([request])[0].token_ids

    assert gone and after == before
    assert vllm_backend.lora_id(loras[2]) not in (None, first_id)


@pytest.mark.slow
def test_a_corrupt_stored_adapter_fails_alone_in_a_batch_on_the_real_engine(
    vllm_backend: Any, adapter_paths: Any, loras: list[str], tiny_model: Path, tmp_path: Path,
    address: str,
) -> None:
    from swarm.adapters.store import AdapterStore
    from swarm.adapters.validate import AdapterValidator

    store = AdapterStore(tmp_path / "store", AdapterValidator(tiny_model, max_rank=16))
    good, bad_regex, redos = (store.put(random_lora(tiny_model, tmp_path / f"s{i}", seed=300 + i))
                              for i in range(3))  # fmt: skip
    for ref, field in ((bad_regex, {"target_modules": "("}), (redos, {"rank_pattern": {"(.*.*)*!": 8}})):
        config = ref.path / "adapter_config.json"  # changed on disk after it was stored
        config.write_text(json.dumps({**json.loads(config.read_text()), **field}))
    adapter_paths.chain(store.checked_path)  # what ``serve`` resolves through
    wanted = {"stored": good.sha256, "mapped": loras[3], "base": None}
    jobs = [{"agent": name, "prompt": PROMPTS[4], "adapter": ref, "max_tokens": 8}
            for name, ref in [*wanted.items(), ("regex", bad_regex.sha256), ("redos", redos.sha256)]]
    alone = {name: vllm_backend.generate([GenRequest(prompt=PROMPTS[4], adapter=ref, max_tokens=8)])[0].text
             for name, ref in wanted.items()}  # fmt: skip
    server = ModelServer(vllm_backend, address, window_s=60.0, max_batch=len(jobs))

    with ServerThread(server):
        first = ask(address, jobs)
        again = ask(address, jobs)  # the server is still serving, the engine still sound

    errors = {"regex": "error: adapter.format", "redos": "error: adapter.format"}
    assert first == again == {**alone, **errors}
    assert len(set(alone.values())) == 3
    assert server.stats.batches == 2 and server.stats.last_batch_requests == 3
    assert server.stats.errors == 4


# -- the transformers + peft backend -----------------------------------------------------


@pytest.fixture(scope="module")
def hf_backend(tiny_model: Path, adapter_paths: Any) -> Iterator[Any]:
    from swarm.serving.hf_backend import HFBackend

    backend = HFBackend(tiny_model, adapter_paths, max_adapters=2)
    yield backend
    backend.close()


@pytest.mark.slow
def test_hf_gives_vllm_greedy_tokens_for_base_and_adapters(
    hf_backend: Any, vllm_backend: Any, loras: list[str]
) -> None:
    requests = [GenRequest(prompt=p, max_tokens=12) for p in PROMPTS[:3]] + [
        GenRequest(prompt=p, adapter=ref, max_tokens=12)
        for p, ref in zip(PROMPTS[:3], loras[:3], strict=True)
    ]

    hf = [r.token_ids for r in hf_backend.generate(requests)]
    vllm = [r.token_ids for r in vllm_backend.generate(requests)]

    held_for_batch = hf_backend.loaded_adapters()
    hf_backend.generate([GenRequest(prompt=PROMPTS[3], adapter=loras[3], max_tokens=2)])

    assert hf == vllm
    assert set(loras[:3]) <= set(held_for_batch)  # a batch keeps every adapter it needs
    assert hf_backend.loaded_adapters()[-1] == loras[3] and len(hf_backend.loaded_adapters()) == 2


# -- training on the model server --------------------------------------------------------


@pytest.mark.slow
def test_trained_then_retrained_adapter_is_served_by_its_new_hash(
    vllm_backend: Any, hf_backend: Any, adapter_paths: Any, tiny_model: Path, tmp_path: Path,
    address: str,
) -> None:
    import numpy as np

    from swarm.adapters.store import AdapterStore
    from swarm.adapters.validate import AdapterValidator
    from swarm.serving.jobs import store_trainer
    from swarm.serving.settings import LoraSection
    from swarm.skills import make_dataset
    from swarm.wire.codec import Example

    store = AdapterStore(tmp_path / "store", AdapterValidator(tiny_model, max_rank=16))
    adapter_paths.chain(store.path)
    lora = LoraSection(rank=8, steps=12, batch_size=8, learning_rate=5e-3)
    trainer = store_trainer(tiny_model, store, lora=lora, seed=3)
    data = make_dataset(["reverse"], 48, np.random.default_rng(0))
    examples = [Example(prompt=e.prompt, completion=e.completion) for e in data[:40]]
    prompts = [e.prompt for e in data[40:44]]

    async def main() -> tuple[list[str], list[list[str]]]:
        async with Client("host-1", address) as client:
            first = await client.request(Train(sender="ag", agent_id="ag", examples=examples),
                                         timeout=300)  # fmt: skip
            again = Train(sender="ag", agent_id="ag", base_adapter=first.msg.adapter,
                          examples=examples, hyper={"steps": 24, "learning_rate": 2e-2})
            second = await client.request(again, timeout=300)
            shas = [first.msg.adapter, second.msg.adapter]
            replies = [await client.request(Generate(sender="ag", requests=[
                GenRequest(prompt=p, adapter=ref, max_tokens=8) for p in prompts]))
                for ref in shas]  # fmt: skip
            return shas, [r.msg.texts for r in replies]

    with ServerThread(ModelServer(vllm_backend, address, trainer=trainer)):
        (v1, v2), (served1, served2) = run(main(), timeout=600)
    expected = [[r.text for r in hf_backend.generate(
        [GenRequest(prompt=p, adapter=ref, max_tokens=8) for p in prompts])] for ref in (v1, v2)]

    assert v1 != v2 and store.has(v1) and store.has(v2)
    assert served2 == expected[1] and served1 == expected[0]
    assert served2 != served1


# -- the model server process as the launcher starts it ----------------------------------


@pytest.mark.slow
def test_model_server_process_serves_and_trains_with_the_hf_backend(
    tiny_model: Path, hf_backend: Any, adapter_paths: Any, tmp_path: Path
) -> None:
    import os
    import signal

    import numpy as np

    from swarm.adapters.store import AdapterStore
    from swarm.config import load_config
    from swarm.runtime.local_launcher import start_model_server
    from swarm.skills import make_dataset
    from swarm.wire.codec import Example

    address = f"ipc://{tmp_path}/proc.ipc"
    config = load_config(ROOT / "configs" / "quickstart.yaml", [
        "model.backend=hf", f"model.path={tiny_model}", f"model.server={address}",
        f"model.adapter_store={tmp_path / 'store'}", f"swarm.lineage={tmp_path / 'run' / 'lineage'}"])  # fmt: skip
    data = make_dataset(["sort"], 20, np.random.default_rng(1))
    examples = [Example(prompt=e.prompt, completion=e.completion) for e in data[:16]]
    adapter_paths.chain(AdapterStore(tmp_path / "store").path)

    async def main() -> tuple[str, list[str]]:
        async with Client("host-1", address) as client:
            job = Train(sender="ag", agent_id="ag", examples=examples, hyper={"steps": 4, "seed": 5})
            trained = await client.request(job, timeout=300, reliable=True)
            ref = trained.msg.adapter
            reply = await client.request(Generate(sender="ag", requests=[
                GenRequest(prompt=e.prompt, adapter=a, max_tokens=6)
                for e in data[16:] for a in (None, ref)]), timeout=120, reliable=True)  # fmt: skip
            return ref, reply.msg.texts

    server = start_model_server(config, tmp_path / "run" / "server")
    try:
        ref, texts = run(main(), timeout=400)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    local = hf_backend.generate([GenRequest(prompt=e.prompt, adapter=a, max_tokens=6)
                                 for e in data[16:] for a in (None, ref)])  # fmt: skip

    assert texts == [r.text for r in local]
    assert (tmp_path / "store" / ref / "adapter_model.safetensors").is_file()
    assert server.returncode == 0
