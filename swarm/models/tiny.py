"""Build a tiny Llama-architecture model folder locally (no model hub needed).

The folder is a real Hugging Face model: ``config.json``,
``model.safetensors``, a byte-level BPE tokenizer trained here on a built-in
corpus, and a chat template. transformers, peft and vLLM load it unchanged.

Digits are pre-tokenized one per token (as LLaMA does), so a model this small
can learn arithmetic digit by digit; words are ordinary byte-level BPE pieces
learnt from a synthetic corpus that fills the whole vocabulary, so every id
the model can emit decodes to text.

The same arguments give byte-identical weights.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TinySpec", "build_tiny_model", "weights_sha256", "CHAT_TEMPLATE", "SPECIAL_TOKENS"]

HEAD_DIM = 64  # a head size vLLM's CPU attention supports (16 fails there)

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. ``hidden`` must be a multiple of 64 (the head size)."""

    layers: int = 2
    hidden: int = 256
    vocab: int = 1024
    seed: int = 0
    max_positions: int = 1024

    def __post_init__(self) -> None:
        if self.hidden < HEAD_DIM or self.hidden % HEAD_DIM:
            raise ValueError(f"hidden must be a positive multiple of {HEAD_DIM}, got {self.hidden}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")
        if self.vocab < 300:
            raise ValueError(f"vocab must be >= 300 (256 bytes + specials), got {self.vocab}")


def build_tiny_model(dest: str | Path, spec: TinySpec | None = None) -> Path:
    """Write a tiny model folder to ``dest`` and return its path.

    Args:
        dest: target folder; created if missing, files in it are overwritten.
        spec: model shape and seed; defaults fit vLLM's CPU backend.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = spec or TinySpec()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(spec)
    tokenizer.save_pretrained(str(dest))
    config = LlamaConfig(
        vocab_size=spec.vocab,
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * 4,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.hidden // HEAD_DIM,
        num_key_value_heads=spec.hidden // HEAD_DIM,
        head_dim=HEAD_DIM,
        max_position_embeddings=spec.max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(str(dest), safe_serialization=True)
    (dest / "swarm_tiny.json").write_text(json.dumps(spec.__dict__, indent=2) + "\n")
    return dest


def weights_sha256(folder: str | Path) -> str:
    """sha256 of a model folder's ``model.safetensors``."""
    digest = hashlib.sha256()
    with open(Path(folder) / "model.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _train_tokenizer(spec: TinySpec):  # type: ignore[no-untyped-def]
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[0-9]"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(spec.seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        model_max_length=spec.max_positions,
        chat_template=CHAT_TEMPLATE,
    )
    fast.padding_side = "left"
    return fast


def _corpus(seed: int) -> list[str]:
    """A deterministic corpus: pseudo-words from syllables, real words, numbers, symbols.

    Varied enough that BPE training fills any vocabulary up to 65536 ids.
    """
    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v",
              "w", "z", "st", "tr", "pl", "ch", "sh", "th", "br", "gr"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
    words = (
        "the a of to and in is that for it as with was on be by this are from at or "
        "agent swarm learn adapter model round pair teacher student reverse sort add "
        "count question answer what is the sum of letters word number list"
    ).split()
    for _ in range(3000):
        syllables = rng.randint(1, 3)
        words.append("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                             for _ in range(syllables)))
    lines = []
    for _ in range(6000):
        n = rng.randint(3, 14)
        line = " ".join(rng.choice(words) for _ in range(n))
        lines.append(line.capitalize() + rng.choice(".?!:;,"))
        lines.append(f"{rng.randint(0, 999)} + {rng.randint(0, 999)} = {rng.randint(0, 1998)}")
        lines.append(" ".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8))))
        lines.append(rng.choice(["  ", "\n", "\t", " -> ", " = ", "(", ")", "[", "]", "{", "}"]))
    return lines
