"""Merging LoRA adapters: peft's weighted merges and Byzantine-robust rules.

Two families:

- ``merge_adapters`` / ``Merger.merge``: the methods of peft's
  ``add_weighted_adapter`` (``linear``, ``cat``, ``svd``, ``ties``,
  ``ties_svd``, ``dare_linear``, ``dare_ties``, ``dare_linear_svd``,
  ``dare_ties_svd``, ``magnitude_prune``, ``magnitude_prune_svd``), run on a
  loaded base model and written as a PEFT folder. This is what a pair of
  agents calls (``weight`` is the teacher's share). peft's non-``_svd``
  methods mix the A and B factors separately (cheap, approximate); the
  ``svd`` variants combine the exact updates ``scale * B @ A`` and factor the
  result back to a rank.
- ``robust_merge``: coordinate-wise median, trimmed mean and norm-clipped mean
  over many adapters, computed with numpy directly on the safetensors
  tensors. They work on each layer's effective update ``delta = scale * B @ A``,
  not on the factors: the factors of independently trained adapters are not
  comparable coordinate by coordinate (``B @ A == (B M) @ (M^-1 A)``), the
  updates are. The combined update is factored back to rank ``rank`` by a
  truncated SVD (``B = U_r S_r``, ``A = V_r^T``, alpha = rank, so scale 1).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from swarm.adapters.peft_config import CONFIG_FILE
from swarm.adapters.tensorfile import read_safetensors
from swarm.adapters.validate import WEIGHTS_FILE, AdapterValidator
from swarm.errors import AdapterError

__all__ = [
    "PEFT_METHODS",
    "ROBUST_RULES",
    "Merger",
    "merge_adapters",
    "adapter_deltas",
    "robust_combine",
    "robust_merge",
    "robust_merge_deltas",
    "write_adapter_from_deltas",
]

PEFT_METHODS = (
    "linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties",
    "dare_linear_svd", "dare_ties_svd", "magnitude_prune", "magnitude_prune_svd",
)
_NEEDS_DENSITY = ("ties", "dare", "magnitude")
Rule = Literal["mean", "median", "trimmed_mean", "clipped_mean"]
ROBUST_RULES: tuple[str, ...] = ("mean", "median", "trimmed_mean", "clipped_mean")
_PREFIX, _A, _B = "base_model.model.", ".lora_A.weight", ".lora_B.weight"


class Merger:
    """A base model kept loaded for repeated peft merges of adapters on it.

    Args:
        base_model_dir: the base model folder the adapters were trained on.
        validator: checks every input adapter before peft opens it (default:
            an ``AdapterValidator`` of the base model with its default bounds).
    """

    def __init__(
        self, base_model_dir: str | Path, validator: AdapterValidator | None = None
    ) -> None:
        from transformers import AutoModelForCausalLM

        self.base_model_dir = Path(base_model_dir)
        self.validator = validator or AdapterValidator(self.base_model_dir)
        self._base: Any = AutoModelForCausalLM.from_pretrained(
            str(self.base_model_dir), dtype="float32"
        )

    def merge(
        self,
        adapter_dirs: Sequence[str | Path],
        weights: Sequence[float],
        out_dir: str | Path,
        method: str = "svd",
        *,
        density: float = 0.5,
        rank: int | None = None,
        seed: int = 0,
    ) -> Path:
        """Merge adapters with ``weights`` by ``method``; write a PEFT folder to ``out_dir``.

        Args:
            density: share of entries kept by ``ties``/``dare``/``magnitude_prune``.
            rank: output rank of the ``*svd`` methods (default: the largest input rank).
            seed: fixes DARE's random drops.

        Raises:
            AdapterError: unknown method, adapters/weights that do not match, or
                (a subclass) an input adapter that fails validation.
        """
        import torch
        from peft import PeftModel
        from safetensors import SafetensorError

        _check_merge_args(adapter_dirs, weights, method, density)
        for folder in adapter_dirs:
            self.validator.validate(folder)
        names = [f"a{i}" for i in range(len(adapter_dirs))]
        model: Any = None
        try:
            model = PeftModel.from_pretrained(self._base, str(adapter_dirs[0]), adapter_name="a0")
            for name, folder in zip(names[1:], adapter_dirs[1:], strict=True):
                model.load_adapter(str(folder), adapter_name=name)
            options: dict[str, Any] = {"combination_type": method, "svd_rank": rank}
            if method.startswith(_NEEDS_DENSITY):
                options["density"] = density
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model.add_weighted_adapter(names, [float(w) for w in weights], "merged", **options)
            _save_one(model, "merged", Path(out_dir), self.base_model_dir)
        except (ValueError, RuntimeError, KeyError, OSError, SafetensorError) as exc:
            raise AdapterError(f"peft cannot merge with {method!r}: {exc}") from exc
        finally:
            self._restore(model)
        return Path(out_dir)

    def _restore(self, model: Any) -> None:
        """Drop every LoRA layer and keep the base model (reload it if loading broke midway)."""
        from transformers import AutoModelForCausalLM

        if model is not None:
            self._base = model.unload()
        else:
            self._base = AutoModelForCausalLM.from_pretrained(
                str(self.base_model_dir), dtype="float32"
            )


def merge_adapters(
    student_dir: str | Path,
    teacher_dir: str | Path,
    weight: float,
    method: str,
    out_dir: str | Path,
    *,
    base_model_dir: str | Path | None = None,
    merger: Merger | None = None,
    density: float = 0.5,
    seed: int = 0,
) -> Path:
    """Merge a teacher's adapter into a student's: ``(1 - weight) * student + weight * teacher``.

    Args:
        weight: the teacher's share, in [0, 1].
        method: one of ``PEFT_METHODS``.
        base_model_dir: the base model (default: the student's ``base_model_name_or_path``).
        merger: a ``Merger`` to reuse (saves loading the base model again).

    Raises:
        AdapterError: bad weight or method, or adapters peft cannot merge.
    """
    if not 0.0 <= weight <= 1.0:
        raise AdapterError(f"merge weight must be in [0, 1], got {weight}")
    if merger is None:
        base = base_model_dir or _base_of(Path(student_dir))
        merger = Merger(base)
    return merger.merge(
        [student_dir, teacher_dir], [1.0 - weight, weight], out_dir, method,
        density=density, seed=seed,
    )


def _check_merge_args(
    adapter_dirs: Sequence[str | Path], weights: Sequence[float], method: str, density: float
) -> None:
    if method not in PEFT_METHODS:
        raise AdapterError(f"unknown merge method {method!r}; known: {', '.join(PEFT_METHODS)}")
    if not adapter_dirs or len(adapter_dirs) != len(weights):
        raise AdapterError(f"{len(adapter_dirs)} adapters but {len(weights)} weights")
    if not 0.0 < density <= 1.0:
        raise AdapterError(f"density must be in (0, 1], got {density}")


def _base_of(folder: Path) -> str:
    config = json.loads((folder / CONFIG_FILE).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise AdapterError(f"{folder}: adapter_config.json names no base model; pass base_model_dir")
    return str(base)


def _save_one(model: Any, name: str, out_dir: Path, base_model_dir: Path) -> None:
    """Write adapter ``name`` alone as a PEFT folder (peft nests non-default names)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        model.save_pretrained(tmp, selected_adapters=[name], safe_serialization=True)
        nested = Path(tmp) / name
        for file in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.move(str(nested / file), str(out_dir / file))
    _tidy_config(out_dir, base_model_dir)


def _tidy_config(out_dir: Path, base_model_dir: Path | str) -> None:
    path = out_dir / CONFIG_FILE
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = str(base_model_dir)
    config["inference_mode"] = True
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- robust rules


def adapter_deltas(folder: str | Path) -> dict[str, np.ndarray]:
    """Each layer's effective update ``scale * B @ A`` (float64), keyed by module name."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterError(f"{folder}: rank_pattern/alpha_pattern adapters are not supported here")
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / (rank**0.5 if config.get("use_rslora") else rank)
    tensors = read_safetensors(folder / WEIGHTS_FILE)
    deltas = {}
    for key, a in tensors.items():
        if key.endswith(_A):
            module = key[len(_PREFIX) : -len(_A)]
            b = tensors[_PREFIX + module + _B]
            deltas[module] = scale * (b.astype(np.float64) @ a.astype(np.float64))
    return deltas


def robust_combine(
    stack: np.ndarray, rule: str, *, trim: float = 0.2, clip: float | None = None
) -> np.ndarray:
    """Combine ``stack[i]`` (one row per adapter) into one array by ``rule``.

    Args:
        rule: ``mean``, ``median`` (coordinate-wise), ``trimmed_mean`` (drops the
            ``floor(trim * n)`` largest and smallest values per coordinate) or
            ``clipped_mean`` (each row scaled down to norm ``clip`` at most,
            then averaged; default ``clip`` is the median row norm).
    """
    if rule == "mean":
        return np.asarray(stack.mean(axis=0))
    if rule == "median":
        return np.asarray(np.median(stack, axis=0))
    if rule == "trimmed_mean":
        k = int(np.floor(trim * stack.shape[0]))
        if not 0 <= trim < 0.5:
            raise AdapterError(f"trim must be in [0, 0.5), got {trim}")
        ordered = np.sort(stack, axis=0)
        return np.asarray(ordered[k : stack.shape[0] - k].mean(axis=0))
    if rule == "clipped_mean":
        norms = np.linalg.norm(stack.reshape(stack.shape[0], -1), axis=1)
        bound = float(np.median(norms)) if clip is None else clip
        factors = np.minimum(1.0, bound / np.maximum(norms, 1e-12))
        return np.asarray((stack * factors.reshape((-1,) + (1,) * (stack.ndim - 1))).mean(axis=0))
    raise AdapterError(f"unknown robust rule {rule!r}; known: {', '.join(ROBUST_RULES)}")


def robust_merge_deltas(
    adapter_dirs: Sequence[str | Path],
    rule: str,
    *,
    trim: float = 0.2,
    clip: float | None = None,
    validator: AdapterValidator | None = None,
) -> dict[str, np.ndarray]:
    """Combine many adapters' per-layer updates by ``rule`` (see ``robust_combine``).

    ``clipped_mean`` clips each adapter's whole update (all layers together),
    so one adapter cannot hide a large change by spreading it over layers.
    With ``validator``, every adapter is validated first.

    Raises:
        AdapterError: the adapters touch different layers or shapes, or
            (a subclass) one fails the validator.
    """
    if not adapter_dirs:
        raise AdapterError("robust_merge needs at least one adapter")
    if validator is not None:
        for folder in adapter_dirs:
            validator.validate(folder)
    all_deltas = [adapter_deltas(d) for d in adapter_dirs]
    modules = sorted(all_deltas[0])
    for folder, deltas in zip(adapter_dirs, all_deltas, strict=True):
        if sorted(deltas) != modules:
            raise AdapterError(f"{folder}: adapts other layers than {adapter_dirs[0]}")
    if rule == "clipped_mean":
        flat = np.stack([np.concatenate([d[m].ravel() for m in modules]) for d in all_deltas])
        merged = robust_combine(flat, rule, clip=clip)
        out, offset = {}, 0
        for m in modules:
            size = all_deltas[0][m].size
            out[m] = merged[offset : offset + size].reshape(all_deltas[0][m].shape)
            offset += size
        return out
    return {m: robust_combine(np.stack([d[m] for d in all_deltas]), rule, trim=trim)
            for m in modules}


def write_adapter_from_deltas(
    deltas: Mapping[str, np.ndarray],
    out_dir: str | Path,
    rank: int,
    template_config: Mapping[str, Any],
) -> Path:
    """Factor each update by truncated SVD to ``rank`` and write a PEFT folder.

    The config is ``template_config`` with ``r = lora_alpha = rank`` (scale 1)
    and no rank/alpha patterns.
    """
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for module, delta in sorted(deltas.items()):
        u, s, vt = np.linalg.svd(delta, full_matrices=False)
        k = min(rank, s.size)
        b = np.zeros((delta.shape[0], rank), dtype=np.float32)
        a = np.zeros((rank, delta.shape[1]), dtype=np.float32)
        b[:, :k] = u[:, :k] * s[:k]
        a[:k] = vt[:k]
        tensors[_PREFIX + module + _A] = a
        tensors[_PREFIX + module + _B] = b
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    config = dict(template_config)
    config.update(r=rank, lora_alpha=float(rank), rank_pattern={}, alpha_pattern={},
                  use_rslora=False, inference_mode=True)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def robust_merge(
    adapter_dirs: Sequence[str | Path],
    rule: str,
    out_dir: str | Path,
    *,
    trim: float = 0.2,
    clip: float | None = None,
    rank: int | None = None,
    validator: AdapterValidator | None = None,
) -> Path:
    """Combine many adapters by a robust rule and write the result as a PEFT folder.

    Args:
        rule: ``mean``, ``median``, ``trimmed_mean`` or ``clipped_mean``.
        rank: rank of the written adapter (default: the first adapter's rank).
        validator: if given, every input adapter is validated first.
    """
    deltas = robust_merge_deltas(adapter_dirs, rule, trim=trim, clip=clip, validator=validator)
    template = json.loads((Path(adapter_dirs[0]) / CONFIG_FILE).read_text())
    return write_adapter_from_deltas(deltas, out_dir, rank or int(template["r"]), template)
