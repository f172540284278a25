"""Validation of untrusted LoRA adapters, reading only bytes.

``AdapterValidator`` checks an adapter against a base model before anything
uses it (a pickle file is refused without being opened by any unpickler; the
safetensors header is parsed by ``swarm.adapters.tensorfile`` with bounds
checks): files present, config usable, file not truncated, key names, dtypes,
rank, shapes, finite values and a bound on each layer's update
``scale * B @ A``. Each failure raises its own ``AdapterError`` subclass naming
what is wrong; nothing else escapes. The config is read by
``swarm.adapters.peft_config``, which evaluates no pattern from it;
``normal_form`` gives the config as the store keeps it (explicit module lists),
so peft and vLLM load exactly the modules that were checked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from swarm.adapters.peft_config import (
    CONFIG_FILE,
    load_config,
    normalize_config,
    rank_for,
    scale_for,
)
from swarm.adapters.tensorfile import FLOAT_DTYPES, read_safetensors, read_safetensors_header
from swarm.errors import (
    AdapterCorruptError,
    AdapterDtypeError,
    AdapterError,
    AdapterFormatError,
    AdapterKeyError,
    AdapterNonFiniteError,
    AdapterNormError,
    AdapterPickleError,
    AdapterRankError,
    AdapterShapeError,
)

__all__ = [
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "PICKLE_SUFFIXES",
    "AdapterValidator",
    "CheckedAdapter",
    "adapter_sha256",
    "delta_norm",
    "is_sha256",
    "lora_modules",
    "normal_form",
    "refuse_links",
    "refuse_pickles",
]

T = TypeVar("T")
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_MAX_KEY_CHARS = 1024
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight\Z")


def adapter_sha256(folder: str | Path) -> str:
    """sha256 (hex) of a PEFT folder's ``adapter_model.safetensors`` bytes.

    Raises:
        AdapterFormatError: the file is missing or unreadable.
    """
    path = Path(folder) / WEIGHTS_FILE
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise AdapterFormatError(f"{folder}: no {WEIGHTS_FILE}") from None
    except OSError as exc:  # unreadable, or a folder where the file belongs
        raise AdapterFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def refuse_pickles(folder: Path) -> None:
    """Refuse a folder holding a pickle weights file (never opened)."""
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            raise AdapterPickleError(
                f"{folder}: {entry.name} is a pickle file; only {WEIGHTS_FILE} is accepted "
                "(pickle files are never opened)"
            )


def refuse_links(folder: Path) -> None:
    """A folder (or one of its two files) that is a symlink could point anywhere: refused."""
    if folder.is_symlink():
        raise AdapterFormatError(f"{folder}: is a symlink; adapters are plain folders")
    if not folder.is_dir():
        raise AdapterFormatError(f"{folder}: not a folder")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if (folder / name).is_symlink():
            raise AdapterFormatError(f"{folder / name}: is a symlink; adapters are plain files")


def lora_modules(header: Mapping[str, Any], known: Container[str] | None = None) -> list[str]:
    """The modules whose LoRA factors ``header`` holds (both ``lora_A`` and ``lora_B``), sorted.

    Raises:
        AdapterKeyError: a tensor is not a LoRA factor (of a module in ``known``,
            when given), a factor lacks its partner, or there are none.
    """
    factors: dict[str, set[str]] = {}
    for key in header:
        match = _LORA_KEY.match(key) if len(key) <= _MAX_KEY_CHARS else None
        if match is None:
            raise AdapterKeyError(f"tensor {_short(key)!r} is not a LoRA factor (…lora_A/B.weight)")
        if known is not None and match["module"] not in known:
            raise AdapterKeyError(f"tensor {key!r}: the base model has no layer {match['module']!r}")
        factors.setdefault(match["module"], set()).add(match["factor"])
    if not factors:
        raise AdapterKeyError("the adapter holds no LoRA tensors")
    for module, have in factors.items():
        if have != {"A", "B"}:
            missing = ({"A", "B"} - have).pop()
            raise AdapterKeyError(f"layer {module!r} lacks its lora_{missing} tensor")
    return sorted(factors)


def normal_form(folder: Path) -> dict[str, Any]:
    """The normalised ``adapter_config.json`` of a PEFT folder, checked against its own
    safetensors keys only (``swarm.adapters.peft_config``; no base model needed).

    Raises:
        AdapterError: a subclass naming what is wrong.
    """
    def run(folder: Path) -> dict[str, Any]:
        config = load_config(folder)
        return normalize_config(config, lora_modules(read_safetensors_header(folder / WEIGHTS_FILE)))

    return _typed(folder, run)


def _typed(folder: Path, check: Callable[[Path], T]) -> T:
    """``check(folder)``, with whatever else a malformed file trips raised as an ``AdapterError``."""
    try:
        return check(folder)
    except AdapterError:
        raise
    except OSError as exc:
        raise AdapterFormatError(f"{folder}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # the safety net: no adapter file may end its caller
        raise AdapterCorruptError(
            f"{folder}: malformed adapter ({type(exc).__name__}: {_short(str(exc))})"
        ) from None


@dataclass(frozen=True)
class CheckedAdapter:
    """What validation returns: the tensors (float32) and the normalised config."""

    tensors: dict[str, np.ndarray]
    config: dict[str, Any]


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
        return self.check(folder).tensors

    def check(self, folder: str | Path) -> CheckedAdapter:
        """``validate``, also returning the normalised config (``swarm.adapters.peft_config``).

        Every failure is an ``AdapterError``: a malformed file that trips
        anything else (a ``TypeError`` deep in numpy, a ``MemoryError``) is
        reported as ``AdapterCorruptError``, so no adapter can end its caller.
        """
        return _typed(Path(folder), self._check)

    def _check(self, folder: Path) -> CheckedAdapter:
        refuse_links(folder)
        refuse_pickles(folder)
        if not (folder / WEIGHTS_FILE).is_file():
            raise AdapterFormatError(f"{folder}: no {WEIGHTS_FILE}")
        config = load_config(folder)
        header = read_safetensors_header(folder / WEIGHTS_FILE)
        modules = lora_modules(header, self.linear_shapes)
        config = normalize_config(config, modules)
        self._check_dtypes(header)
        self._check_shapes(header, modules, config)
        tensors = read_safetensors(folder / WEIGHTS_FILE)
        self._check_values(tensors, modules, config)
        return CheckedAdapter(tensors, config)

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
            rank = rank_for(module, config)
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
            norm = abs(scale_for(module, config)) * delta_norm(tensors[b_key], tensors[a_key])
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


def _short(text: str) -> str:
    return text if len(text) <= 100 else text[:97] + "..."


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


def is_sha256(text: object) -> bool:
    """Whether ``text`` is a full lowercase sha256 hex digest: an adapter's name in a store."""
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)
