"""Content-addressed LoRA adapter store and validation of untrusted adapters.

An adapter is a PEFT folder (``adapter_config.json`` +
``adapter_model.safetensors``), addressed by the sha256 of its safetensors
bytes. The store keeps each adapter once under ``root/<sha256>/``, a folder
that peft and vLLM load unchanged.

``AdapterValidator`` checks an adapter against a base model before anything
uses it, reading only bytes (a pickle file is refused without being opened
by any unpickler; the safetensors header is parsed by ``swarm.adapters.tensorfile`` with
bounds checks):
files present, config usable, file not truncated, key names, dtypes, rank,
shapes, finite values and a bound on each layer's update ``scale * B @ A``.
Each failure raises its own ``AdapterError`` subclass naming what is wrong;
nothing else escapes. The config is read by ``swarm.adapters.peft_config``, which
evaluates no pattern from it, and stored in its normal form (explicit module
lists), so peft and vLLM load exactly the modules that were checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
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
from swarm.durable import fsync_dir, write_durably
from swarm.errors import (
    AdapterCorruptError,
    AdapterDtypeError,
    AdapterError,
    AdapterFormatError,
    AdapterKeyError,
    AdapterNonFiniteError,
    AdapterNormError,
    AdapterNotFound,
    AdapterPickleError,
    AdapterRankError,
    AdapterShapeError,
)

__all__ = [
    "AdapterRef",
    "CheckedAdapter",
    "lora_modules",
    "normal_form",
    "refuse_links",
    "refuse_pickles",
    "COMPLETE_MARKER",
    "is_sha256",
    "AdapterStore",
    "AdapterValidator",
    "adapter_sha256",
    "read_safetensors",
    "read_safetensors_header",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
]

T = TypeVar("T")
WEIGHTS_FILE = "adapter_model.safetensors"
COMPLETE_MARKER = ".swarm-complete"  # written last into a store entry, before its rename
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_MAX_KEY_CHARS = 1024
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<factor>[AB])\.weight\Z")


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



class AdapterStore:
    """Adapters kept once each under ``root/<sha256>/``.

    An entry is written in a hidden temporary folder (the two files copied
    without following symlinks, the config in its normal form, then the
    ``COMPLETE_MARKER`` file), every file and the folder fsynced, and only then
    renamed to its hash and the root fsynced: ``put`` acknowledges only what a
    crash cannot take back, and ``has`` counts only entries with the marker.
    What is validated is the copy, so the source changing meanwhile cannot slip
    unchecked bytes in.

    Args:
        root: the store folder (created if missing).
        validator: if given, ``put`` refuses adapters that fail it.
    """

    def __init__(self, root: str | Path, validator: AdapterValidator | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.validator = validator
        self._verified: set[str] = set()  # unmarked entries whose hash checked out once

    def put(self, folder: str | Path) -> AdapterRef:
        """Copy a PEFT folder in (once per content hash) and return its reference.

        Raises:
            AdapterFormatError: the folder or one of its files is a symlink.
            AdapterError: a subclass, when the validator refuses the folder.
        """
        folder = Path(folder)
        refuse_links(folder)
        refuse_pickles(folder)
        tmp = Path(tempfile.mkdtemp(prefix=".put-", dir=self.root))
        try:
            _copy_no_follow(folder / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
            _copy_no_follow(folder / CONFIG_FILE, tmp / CONFIG_FILE)
            config = self.validator.check(tmp).config if self.validator else normal_form(tmp)
            write_durably(tmp / CONFIG_FILE,
                          [(json.dumps(config, indent=2, sort_keys=True) + "\n").encode()])
            sha = adapter_sha256(tmp)
            if not self.has(sha):
                self._commit(tmp, sha)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.ref(sha)

    def _commit(self, tmp: Path, sha: str) -> None:
        write_durably(tmp / COMPLETE_MARKER, [sha.encode()])
        fsync_dir(tmp)
        dest = self.root / sha
        if self.has(sha):  # a concurrent put finished first
            return
        if dest.exists():  # a torn entry (no marker): set it aside, never read it again
            torn = Path(tempfile.mkdtemp(prefix=".torn-", dir=self.root))
            os.rename(dest, torn / sha)
            shutil.rmtree(torn, ignore_errors=True)
        try:
            os.rename(tmp, dest)  # atomic: readers never see half a folder
        except OSError:
            if not self.has(sha):  # not a concurrent put that won the race
                raise
        fsync_dir(self.root)

    def has(self, sha: str) -> bool:
        """Whether a complete adapter with this hash is stored.

        An entry written before the marker existed counts once its bytes hash
        to ``sha`` and its config parses (the marker is then added).
        """
        if not is_sha256(sha):
            return False
        folder = self.root / sha
        if (folder / COMPLETE_MARKER).is_file():
            return True
        if folder.is_symlink() or not (folder / WEIGHTS_FILE).is_file():
            return False
        if sha in self._verified:  # hashed once already (a read-only store keeps no marker)
            return True
        try:
            if adapter_sha256(folder) != sha:
                return False
            load_config(folder)
        except AdapterError:
            return False
        self._verified.add(sha)
        with contextlib.suppress(OSError):  # a read-only store is still readable
            write_durably(folder / COMPLETE_MARKER, [sha.encode()])
        return True

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
        config = load_config(folder)
        targets = config.get("target_modules") or []
        if isinstance(targets, list):  # the normal form lists full module paths; the ref their kinds
            targets = sorted({t.rsplit(".", 1)[-1] for t in targets})
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

    def checked_path(self, sha: str) -> Path:
        """``validate`` then ``path``: the ``Resolver`` a model server serves from.

        Raises:
            AdapterError: a subclass; unknown, tampered with or invalid.
        """
        self.validate(sha)
        return self.root / sha


def _copy_no_follow(src: Path, dest: Path) -> None:
    """Copy one file without following a symlink at ``src``, fsynced before it returns."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    except FileNotFoundError:
        raise AdapterFormatError(f"{src.parent}: no {src.name}") from None
    except OSError as exc:
        raise AdapterFormatError(f"{src}: cannot be read ({exc.strerror}); symlinks are refused") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise AdapterFormatError(f"{src}: cannot be read (not a regular file)")
    with os.fdopen(fd, "rb") as source, open(dest, "wb") as target:
        shutil.copyfileobj(source, target, 1 << 20)
        target.flush()
        os.fsync(target.fileno())


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a full lowercase sha256 hex digest: an adapter's name in a store."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
