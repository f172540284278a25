"""Helpers shared by tests: random LoRA adapters on a tiny model, a vLLM OpenAI server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


def random_lora(
    model_dir: Path,
    dest: Path,
    seed: int,
    rank: int = 8,
    scale: float = 20.0,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
) -> Path:
    """Write a PEFT LoRA folder with random (non-zero) A and B, scaled so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = LoraConfig(
            r=rank, lora_alpha=2 * rank, target_modules=list(targets), init_lora_weights=False
        )
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_" in name:
                    param.mul_(scale)
    peft_model.save_pretrained(str(dest))
    return dest


def tiny_lora(dest: Path, seed: int = 0, rank: int = 8, dim: int = 64,
              modules: tuple[str, ...] = ("model.layers.0.self_attn.q_proj",)) -> Path:
    """A small valid PEFT LoRA folder written with numpy only (no base model, no torch).

    Its weights differ by ``seed``; enough for the store and the lineage, which
    check the folder against its own safetensors keys, not against a model.
    """
    import json

    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for module in modules:
        tensors[f"base_model.model.{module}.lora_A.weight"] = \
            rng.standard_normal((rank, dim)).astype(np.float32)
        tensors[f"base_model.model.{module}.lora_B.weight"] = \
            rng.standard_normal((dim, rank)).astype(np.float32)
    dest.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest / "adapter_model.safetensors"))
    (dest / "adapter_config.json").write_text(json.dumps({
        "r": rank, "lora_alpha": 2 * rank, "peft_type": "LORA",
        "base_model_name_or_path": "tiny", "target_modules": [m.rsplit(".", 1)[-1] for m in modules],
    }))
    return dest


@contextlib.contextmanager
def api_server(model: Path, log_path: Path, *extra: str, timeout: float = 300.0) -> Iterator[str]:
    """vLLM's OpenAI server on ``model`` with runtime LoRA loading, on a free port: its URL."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--enable-lora", "--max-loras", "4",
           "--max-lora-rank", "16", "--gpu-memory-utilization", "0.1",
           "--dtype", "float32", "--enforce-eager", "--seed", "0", *extra]  # fmt: skip
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"api server did not come up in {timeout} s"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
