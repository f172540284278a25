"""Content-addressed LoRA adapter store and validation of untrusted adapters.

An adapter is a PEFT folder (``adapter_config.json`` +
``adapter_model.safetensors``), addressed by the sha256 of its safetensors
bytes. The store keeps each adapter once under ``root/<sha256>/``, a folder
that peft and vLLM load unchanged.

``AdapterValidator`` checks an adapter against a base model before anything
uses it, reading only bytes (a pickle file is refused without being opened
by any unpickler; the safetensors header is parsed by ``swarm.tensorfile`` with
bounds checks):
files present, config usable, file not truncated, key names, dtypes, rank,
shapes, finite values and a bound on each layer's update ``scale * B @ A``.
Each failure raises its own ``AdapterError`` subclass naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from swarm.errors import (
    AdapterCorruptError,
    AdapterDtypeError,
    AdapterFormatError,
    AdapterKeyError,
    AdapterNonFiniteError,
    AdapterNormError,
    AdapterNotFound,
    AdapterPickleError,
    AdapterRankError,
    AdapterShapeError,
)
from swarm.tensorfile import FLOAT_DTYPES, read_safetensors, read_safetensors_header

__all__ = [
    "AdapterRef",
    "AdapterStore",
    "AdapterValidator",
    "adapter_sha256",
    "read_safetensors",
    "read_safetensors_header",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
]

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")


@dataclass(frozen=True)
class AdapterRef:
    """One adapter in a store: its content hash, folder and shape facts."""

    sha256: str
    path: Path
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    size_bytes: int
    base_model: str = ""


def adapter_sha256(folder: str | Path) -> str:
    """sha256 (hex) of a PEFT folder's ``adapter_model.safetensors`` bytes.

    Raises:
        AdapterFormatError: the file is missing.
    """
    path = Path(folder) / WEIGHTS_FILE
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise AdapterFormatError(f"{folder}: no {WEIGHTS_FILE}") from None
    return digest.hexdigest()


def _load_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise AdapterFormatError(f"{folder}: no {CONFIG_FILE}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE} is not JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE} is not a LoRA config")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE} has no positive integer 'r' ({rank!r})")
    return config


def _refuse_pickles(folder: Path) -> None:
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            raise AdapterPickleError(
                f"{folder}: {entry.name} is a pickle file; only {WEIGHTS_FILE} is accepted "
                "(pickle files are never opened)"
            )


class AdapterValidator:
    """Checks adapters against one base model (its layer shapes are read once).

    Args:
        base_model_dir: the base model folder (``*.safetensors`` weights).
        max_delta_norm: the largest Frobenius norm allowed for any layer's
            update ``(alpha / r) * B @ A``.
        max_rank: the largest LoRA rank accepted (a serving engine's limit).
    """

    def __init__(
        self, base_model_dir: str | Path, max_delta_norm: float = 1e4, max_rank: int = 256
    ) -> None:
        self.base_model_dir = Path(base_model_dir)
        self.max_delta_norm = max_delta_norm
        self.max_rank = max_rank
        self.linear_shapes = _base_linear_shapes(self.base_model_dir)

    def validate(self, folder: str | Path) -> dict[str, np.ndarray]:
        """Validate a PEFT folder; return its tensors (float32) when it is sound.

        Raises:
            AdapterPickleError, AdapterFormatError, AdapterCorruptError,
            AdapterKeyError, AdapterDtypeError, AdapterRankError,
            AdapterShapeError, AdapterNonFiniteError, AdapterNormError.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise AdapterFormatError(f"{folder}: not a folder")
        _refuse_pickles(folder)
        if not (folder / WEIGHTS_FILE).is_file():
            raise AdapterFormatError(f"{folder}: no {WEIGHTS_FILE}")
        config = _load_config(folder)
        header = read_safetensors_header(folder / WEIGHTS_FILE)
        modules = self._check_keys(header, config)
        self._check_dtypes(header)
        self._check_shapes(header, modules, config)
        tensors = read_safetensors(folder / WEIGHTS_FILE)
        self._check_values(tensors, modules, config)
        return tensors

    def _check_keys(self, header: Mapping[str, Any], config: dict[str, Any]) -> list[str]:
        targets = config.get("target_modules") or []
        factors: dict[str, set[str]] = {}
        for key in header:
            match = _LORA_KEY.match(key)
            if match is None:
                raise AdapterKeyError(f"tensor {key!r} is not a LoRA factor (…lora_A/B.weight)")
            module = match["module"]
            if module not in self.linear_shapes:
                raise AdapterKeyError(f"tensor {key!r}: the base model has no layer {module!r}")
            if not _targeted(module, targets):
                raise AdapterKeyError(f"tensor {key!r}: {module!r} is not in target_modules")
            factors.setdefault(module, set()).add(match["factor"])
        if not factors:
            raise AdapterKeyError("the adapter holds no LoRA tensors")
        for module, have in factors.items():
            if have != {"A", "B"}:
                missing = ({"A", "B"} - have).pop()
                raise AdapterKeyError(f"layer {module!r} lacks its lora_{missing} tensor")
        return sorted(factors)

    @staticmethod
    def _check_dtypes(header: Mapping[str, Any]) -> None:
        for key, info in header.items():
            if info["dtype"] not in FLOAT_DTYPES:
                raise AdapterDtypeError(
                    f"tensor {key!r} has dtype {info['dtype']}; allowed: {', '.join(FLOAT_DTYPES)}"
                )

    def _check_shapes(
        self, header: Mapping[str, Any], modules: list[str], config: dict[str, Any]
    ) -> None:
        for module in modules:
            a_key, b_key = _factor_keys(module)
            a_shape, b_shape = header[a_key]["shape"], header[b_key]["shape"]
            if len(a_shape) != 2 or len(b_shape) != 2:
                raise AdapterShapeError(f"layer {module!r}: LoRA factors must be 2-D matrices")
            rank = _rank_for(module, config)
            if a_shape[0] != rank or b_shape[1] != rank:
                raise AdapterRankError(
                    f"layer {module!r}: lora_A {a_shape} / lora_B {b_shape} have rank "
                    f"{a_shape[0]}/{b_shape[1]}, adapter_config says r={rank}"
                )
            if rank > self.max_rank:
                raise AdapterRankError(f"layer {module!r}: rank {rank} > allowed {self.max_rank}")
            out_dim, in_dim = self.linear_shapes[module]
            if a_shape[1] != in_dim or b_shape[0] != out_dim:
                raise AdapterShapeError(
                    f"layer {module!r}: update is {b_shape[0]}x{a_shape[1]}, "
                    f"the base layer is {out_dim}x{in_dim}"
                )

    def _check_values(
        self, tensors: Mapping[str, np.ndarray], modules: list[str], config: dict[str, Any]
    ) -> None:
        for key, array in tensors.items():
            if not np.isfinite(array).all():
                raise AdapterNonFiniteError(f"tensor {key!r} holds NaN or infinity")
        for module in modules:
            a_key, b_key = _factor_keys(module)
            norm = _scale_for(module, config) * delta_norm(tensors[b_key], tensors[a_key])
            if not norm <= self.max_delta_norm:
                raise AdapterNormError(
                    f"layer {module!r}: update norm {norm:.4g} exceeds the bound "
                    f"{self.max_delta_norm:.4g}"
                )


def delta_norm(b: np.ndarray, a: np.ndarray) -> float:
    """Frobenius norm of ``b @ a`` without forming it (via the r x r Gram matrices)."""
    b64, a64 = b.astype(np.float64), a.astype(np.float64)
    value = float(np.sum((b64.T @ b64) * (a64 @ a64.T)))
    return float(np.sqrt(max(value, 0.0)))


def _factor_keys(module: str) -> tuple[str, str]:
    return f"base_model.model.{module}.lora_A.weight", f"base_model.model.{module}.lora_B.weight"


def _targeted(module: str, targets: Any) -> bool:
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    leaf = module.rsplit(".", 1)[-1]
    return any(module == t or leaf == t or module.endswith("." + t) for t in targets)


def _rank_for(module: str, config: dict[str, Any]) -> int:
    for pattern, rank in (config.get("rank_pattern") or {}).items():
        if re.search(pattern, module):
            return int(rank)
    return int(config["r"])


def _scale_for(module: str, config: dict[str, Any]) -> float:
    alpha = float(config.get("lora_alpha", config["r"]))
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.search(pattern, module):
            alpha = float(value)
    rank = _rank_for(module, config)
    return alpha / (rank**0.5 if config.get("use_rslora") else rank)


def _base_linear_shapes(base_model_dir: Path) -> dict[str, tuple[int, int]]:
    """Module name -> (out, in) for every 2-D ``*.weight`` of the base model's safetensors."""
    files = sorted(base_model_dir.glob("*.safetensors"))
    if not files:
        raise AdapterFormatError(f"{base_model_dir}: base model has no *.safetensors weights")
    shapes: dict[str, tuple[int, int]] = {}
    for path in files:
        for key, info in read_safetensors_header(path).items():
            if key.endswith(".weight") and len(info["shape"]) == 2:
                shapes[key[: -len(".weight")]] = (int(info["shape"][0]), int(info["shape"][1]))
    return shapes


class AdapterStore:
    """Adapters kept once each under ``root/<sha256>/``.

    Args:
        root: the store folder (created if missing).
        validator: if given, ``put`` refuses adapters that fail it.
    """

    def __init__(self, root: str | Path, validator: AdapterValidator | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.validator = validator

    def put(self, folder: str | Path) -> AdapterRef:
        """Copy a PEFT folder in (once per content hash) and return its reference.

        Raises:
            AdapterError: a subclass, when the validator refuses the folder.
        """
        folder = Path(folder)
        if self.validator is not None:
            self.validator.validate(folder)
        else:
            _refuse_pickles(folder)
            _load_config(folder)
        sha = adapter_sha256(folder)
        dest = self.root / sha
        if not dest.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=".put-", dir=self.root))
            for name in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copyfile(folder / name, tmp / name)
            try:
                os.rename(tmp, dest)  # atomic: readers never see half a folder
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # a concurrent put won the race
        return self.ref(sha)

    def has(self, sha: str) -> bool:
        """Whether an adapter with this hash is stored."""
        return _is_sha(sha) and (self.root / sha / WEIGHTS_FILE).is_file()

    def path(self, sha: str) -> Path:
        """The folder of a stored adapter.

        Raises:
            AdapterNotFound: no such adapter.
        """
        if not self.has(sha):
            raise AdapterNotFound(f"no adapter {sha[:12]}… in {self.root}")
        return self.root / sha

    def ref(self, sha: str) -> AdapterRef:
        """The ``AdapterRef`` of a stored adapter (raises ``AdapterNotFound``)."""
        folder = self.path(sha)
        config = _load_config(folder)
        targets = config.get("target_modules") or []
        return AdapterRef(
            sha256=sha,
            path=folder,
            rank=int(config["r"]),
            alpha=float(config.get("lora_alpha", config["r"])),
            target_modules=(targets,) if isinstance(targets, str) else tuple(sorted(targets)),
            size_bytes=(folder / WEIGHTS_FILE).stat().st_size,
            base_model=str(config.get("base_model_name_or_path") or ""),
        )

    def list(self) -> list[str]:
        """Every stored hash, sorted."""
        return sorted(p.name for p in self.root.iterdir() if self.has(p.name))

    def validate(self, sha: str) -> dict[str, np.ndarray]:
        """Re-check a stored adapter (integrity and, with a validator, soundness).

        Raises:
            AdapterCorruptError: the stored bytes no longer hash to ``sha``.
        """
        folder = self.path(sha)
        actual = adapter_sha256(folder)
        if actual != sha:
            raise AdapterCorruptError(f"stored adapter {sha[:12]}… now hashes to {actual[:12]}…")
        if self.validator is None:
            return read_safetensors(folder / WEIGHTS_FILE)
        return self.validator.validate(folder)


def _is_sha(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
