"""The machine's content-addressed store of LoRA adapters (``AdapterStore``).

An adapter is a PEFT folder (``adapter_config.json`` +
``adapter_model.safetensors``), addressed by the sha256 of its safetensors
bytes. A machine has one store, and it keeps each adapter once under
``root/<sha256>/``, a folder that peft and vLLM load unchanged: the model
server writes there what it trains and merges, hosts and the coordinator look
there for what agents report, and the lineage on that machine keeps there the
durable copy of every adapter a commit references (``swarm.lineage``), so
committing an adapter or resuming a run copies nothing.

The store's interface is what a transfer between machines needs as well: put
by hash, verified while it is written (``put(folder, sha=...)``,
``put_stream``), ``has``, ``open``, ``verify``. Lineages that keep their
adapters here record themselves (``record_user``), so that ``swarm lineage gc``
run from one of them keeps what the others reference.

Validation of untrusted adapters lives in ``swarm.adapters.validate``.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from swarm.adapters.files import (
    copy_hashed,
    is_regular,
    make_dirs_durably,
    open_no_follow,
    write_hashed,
)
from swarm.adapters.peft_config import CONFIG_FILE, MAX_CONFIG_BYTES, load_config, read_no_follow
from swarm.adapters.tensorfile import read_safetensors
from swarm.adapters.validate import (
    WEIGHTS_FILE,
    AdapterValidator,
    adapter_sha256,
    is_sha256,
    normal_form,
    refuse_links,
    refuse_pickles,
)
from swarm.durable import fsync_dir, write_durably
from swarm.errors import AdapterCorruptError, AdapterError, AdapterFormatError, AdapterNotFound

__all__ = [
    "AdapterRef",
    "AdapterStore",
    "COMPLETE_MARKER",
    "ENTRY_FILES",
]

COMPLETE_MARKER = ".swarm-complete"  # written last into a store entry, before its rename
ENTRY_FILES = frozenset({WEIGHTS_FILE, CONFIG_FILE, COMPLETE_MARKER})  # all an entry holds
TEMP_PREFIXES = (".put-", ".torn-", ".gc-")  # folders the store makes and removes again
USERS_DIR = ".users"
_USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHUNK = 1 << 20


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


class AdapterStore:
    """Adapters kept once each under ``root/<sha256>/``.

    An entry is written in a hidden temporary folder (the two files copied
    without following symlinks and hashed while they are copied, the config
    in its normal form, then the ``COMPLETE_MARKER`` file), every file and the
    folder fsynced, and only then renamed to its hash and the root fsynced:
    ``put`` acknowledges only what a crash cannot take back, and ``has`` counts
    only entries with the marker. Every folder the store creates (the root
    and its missing parents) is made durable as well. What is validated is
    the copy, so the source changing meanwhile cannot slip unchecked bytes in.

    Args:
        root: the store folder.
        validator: if given, ``put`` refuses adapters that fail it.
        create: create ``root`` (durably) if it is missing; a reader passes False.
    """

    def __init__(
        self, root: str | Path, validator: AdapterValidator | None = None, *, create: bool = True
    ) -> None:
        self.root = Path(root)
        if create:
            make_dirs_durably(self.root)
        self.validator = validator
        self._verified: set[str] = set()  # unmarked entries whose hash checked out once

    # -- writing --------------------------------------------------------------

    def put(self, folder: str | Path, sha: str | None = None) -> AdapterRef:
        """Copy a PEFT folder in (once per content hash) and return its reference.

        With ``sha`` (put by hash) nothing is copied when the store holds it
        already, and bytes that do not hash to ``sha`` are refused.

        Raises:
            AdapterFormatError: the folder or one of its files is a symlink.
            AdapterCorruptError: the weights do not hash to ``sha``.
            AdapterError: a subclass, when the validator refuses the folder.
        """
        if sha is not None and self.has(sha):
            return self.ref(sha)
        folder = Path(folder)
        refuse_links(folder)
        refuse_pickles(folder)

        def fill(tmp: Path) -> str:
            sha = copy_hashed(folder / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
            copy_hashed(folder / CONFIG_FILE, tmp / CONFIG_FILE)
            return sha

        return self._stage(fill, sha)

    def put_stream(self, sha: str, weights: IO[bytes], config: bytes) -> AdapterRef:
        """Store an adapter that arrives as a stream (a transfer), verified as it is written.

        Nothing is read when the store holds ``sha`` already.

        Raises:
            AdapterCorruptError: the weights do not hash to ``sha``.
            AdapterError: a subclass, when the adapter is not a valid one.
        """
        if not is_sha256(sha):
            raise AdapterFormatError(f"{sha!r} is not a lowercase sha256 hex digest")
        if self.has(sha):
            return self.ref(sha)

        def fill(tmp: Path) -> str:
            write_durably(tmp / CONFIG_FILE, [config])
            return write_hashed(weights, tmp / WEIGHTS_FILE)

        return self._stage(fill, sha)

    def _stage(self, fill: Callable[[Path], str], expect: str | None) -> AdapterRef:
        make_dirs_durably(self.root)
        tmp = Path(tempfile.mkdtemp(prefix=".put-", dir=self.root))
        try:
            sha = fill(tmp)
            if expect is not None and sha != expect:
                raise AdapterCorruptError(
                    f"adapter bytes hash to {sha[:12]}…, not to {expect[:12]}… as they were named")
            config = self.validator.check(tmp).config if self.validator else normal_form(tmp)
            write_durably(tmp / CONFIG_FILE,
                          [(json.dumps(config, indent=2, sort_keys=True) + "\n").encode()])
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

    # -- reading --------------------------------------------------------------

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
            raise AdapterNotFound(f"no adapter {str(sha)[:12]}… in {self.root}")
        return self.root / sha

    def open(self, sha: str, name: str = WEIGHTS_FILE) -> IO[bytes]:
        """One file of a stored adapter, opened for reading (a symlink is never followed).

        Raises:
            AdapterNotFound: no such adapter.
            AdapterFormatError: ``name`` is not one of the entry's two files, or
                the file is not a regular one.
        """
        if name not in (WEIGHTS_FILE, CONFIG_FILE):
            raise AdapterFormatError(f"{name!r}: an entry holds {WEIGHTS_FILE} and {CONFIG_FILE}")
        fd = open_no_follow(self.path(sha) / name)
        return os.fdopen(fd, "rb")

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

    def config_sha256(self, sha: str) -> str:
        """The sha256 of a stored adapter's ``adapter_config.json`` (its normal form)."""
        raw = read_no_follow(self.path(sha) / CONFIG_FILE, MAX_CONFIG_BYTES)
        return hashlib.sha256(raw).hexdigest()

    def entry_size(self, sha: str) -> int:
        """Bytes a stored adapter takes (its files)."""
        folder = self.path(sha)
        return sum(p.lstat().st_size for p in folder.iterdir())

    def list(self) -> list[str]:
        """Every stored hash, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if self.has(p.name))

    def verify(self, sha: str) -> bool:
        """Whether the adapter is stored whole: its weights still hash to ``sha``, its config parses."""
        try:
            return self.has(sha) and adapter_sha256(self.root / sha) == sha and \
                bool(load_config(self.root / sha))
        except (AdapterError, OSError):
            return False

    def export(self, sha: str, dest: str | Path) -> Path:
        """Copy a stored adapter out as the PEFT folder ``dest`` (each file atomically); return it.

        Raises:
            AdapterNotFound: no such adapter.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            tmp = dest / f".{name}.tmp-{os.getpid()}"
            with self.open(sha, name) as source, open(tmp, "wb") as target:
                shutil.copyfileobj(source, target, _CHUNK)
            os.replace(tmp, dest / name)
        return dest

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

    # -- removing (``swarm lineage gc``) --------------------------------------

    def removal_refusal(self, sha: str) -> str | None:
        """Why ``remove(sha)`` would leave the entry alone, or None when it would remove it.

        Only a folder named by its hash that holds the store's complete marker
        for that hash and nothing but the entry's regular files is removable:
        a file a person put there keeps the entry where it is.
        """
        folder = self.root / sha
        if not self.has(sha) or folder.is_symlink():
            return f"{folder}: no such entry"
        marker = folder / COMPLETE_MARKER
        foreign = sorted(p.name for p in folder.iterdir()
                         if p.name not in ENTRY_FILES or not is_regular(p))
        if foreign:
            return f"{folder}: kept, it also holds {', '.join(foreign)}"
        if not is_regular(marker) or marker.read_bytes() != sha.encode():
            return f"{folder}: kept, it lacks the store's complete marker"
        return None

    def remove(self, sha: str) -> int:
        """Delete an entry the store wrote whole (``removal_refusal``); return the bytes freed.

        The entry is renamed aside first (the root fsynced), so no reader sees half of it.

        Raises:
            AdapterError: the entry is not there, or not one the store wrote (it is left alone).
        """
        refusal = self.removal_refusal(sha)
        if refusal is not None:
            raise AdapterError(refusal)
        folder = self.root / sha
        size = sum(p.lstat().st_size for p in folder.iterdir())
        trash = Path(tempfile.mkdtemp(prefix=".gc-", dir=self.root))
        os.rename(folder, trash / sha)
        fsync_dir(self.root)
        self._verified.discard(sha)
        shutil.rmtree(trash, ignore_errors=True)
        return size

    def stale_temps(self, older_than: float = 3600.0) -> builtins.list[Path]:
        """Temporary folders of puts and removals that died, untouched for ``older_than`` seconds."""
        if not self.root.is_dir():
            return []
        cutoff = time.time() - older_than
        found = []
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(TEMP_PREFIXES) and path.is_dir() and not path.is_symlink():
                newest = max([path.lstat().st_mtime,
                              *(p.lstat().st_mtime for p in path.rglob("*"))])
                if newest < cutoff:
                    found.append(path)
        return found

    # -- users: the lineages that keep adapters here --------------------------

    def record_user(self, name: str, info: Mapping[str, Any]) -> None:
        """Record that ``name`` (a lineage's id) keeps adapters here; ``info`` says where it is."""
        folder = self.root / USERS_DIR
        make_dirs_durably(folder)
        path = folder / f"{_user_name(name)}.json"
        tmp = folder / f".{path.name}.tmp-{os.getpid()}"
        write_durably(tmp, [(json.dumps(dict(info), indent=2, sort_keys=True) + "\n").encode()])
        os.replace(tmp, path)
        fsync_dir(folder)

    def users(self) -> dict[str, dict[str, Any]]:
        """Every recorded user: ``{name: info}`` (an unreadable record reads as ``{}``)."""
        folder = self.root / USERS_DIR
        if not folder.is_dir():
            return {}
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(folder.glob("*.json")):
            try:
                info = json.loads(read_no_follow(path, MAX_CONFIG_BYTES))
            except (AdapterError, ValueError):
                info = {}
            out[path.stem] = info if isinstance(info, dict) else {}
        return out

    def forget_user(self, name: str) -> None:
        """Remove the record of ``name`` (a lineage that no longer exists)."""
        (self.root / USERS_DIR / f"{_user_name(name)}.json").unlink(missing_ok=True)


def _user_name(name: str) -> str:
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        raise AdapterFormatError(f"{name!r} is not a store user's name (letters, digits, _ and -)")
    return name
