"""Helpers shared by tests: random LoRA adapters on a tiny model."""

from __future__ import annotations

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
