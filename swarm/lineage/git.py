"""Object-level Git writing: encode objects, write them as one durable pack, update refs.

The lineage writer never goes through an index or a working tree. It encodes
blobs, trees, commits and tags itself, writes each batch as a single packfile
(``.pack`` then ``.idx``, each fsynced before its atomic rename, then the
directory fsynced) and only then moves refs with an atomic compare-and-swap
transaction in one persistent ``git update-ref --stdin`` process. Objects of an
unfinished batch can at worst be left unreferenced (``git fsck`` accepts that);
a ref can never point at an object that is not on disk.

Two persistent git processes serve a writer (``git cat-file --batch`` to read
trees, ``git update-ref --stdin`` to move refs); both are restarted if they die
and closed by ``close()``, so a long-running writer holds a constant number of
file descriptors and child processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import subprocess
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from swarm.durable import fsync_dir, write_durably
from swarm.errors import LineageError
from swarm.lineage.names import is_sha

__all__ = [
    "ZERO_OID",
    "TREE_MODE",
    "BLOB_MODE",
    "object_id",
    "encode_tree",
    "parse_tree",
    "encode_commit",
    "parse_commit_tree",
    "encode_tag",
    "signature",
    "write_pack",
    "for_each_ref",
    "CatFile",
    "RefUpdater",
]

ZERO_OID = "0" * 40
TREE_MODE = "40000"
BLOB_MODE = "100644"
_TYPE_CODES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
_BATCH_FORMAT = "%(objectname) %(objecttype) %(objectsize) %(rest)"

TreeEntries = Mapping[str, tuple[str, str]]


def object_id(kind: str, data: bytes) -> str:
    """The SHA-1 object name git gives ``data`` stored as an object of type ``kind``."""
    h = hashlib.sha1(f"{kind} {len(data)}\0".encode())
    h.update(data)
    return h.hexdigest()


def encode_tree(entries: TreeEntries) -> bytes:
    """Encode ``{name: (mode, sha)}`` as a tree object body, in git's canonical order.

    Git sorts entries as if tree names ended in ``/``; ``fsck --strict`` rejects
    any other order.
    """

    def key(name: str) -> bytes:
        return (name + "/" if entries[name][0] == TREE_MODE else name).encode()

    out = bytearray()
    for name in sorted(entries, key=key):
        mode, sha = entries[name]
        out += f"{mode} {name}\0".encode() + bytes.fromhex(sha)
    return bytes(out)


def parse_tree(data: bytes) -> dict[str, tuple[str, str]]:
    """Decode a tree object body into ``{name: (mode, sha)}``."""
    entries: dict[str, tuple[str, str]] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode()
        name = data[space + 1 : nul].decode()
        entries[name] = (mode, data[nul + 1 : nul + 21].hex())
        pos = nul + 21
    return entries


def signature(ident: str, when: float) -> str:
    """A git identity line body: ``Name <email> <unix seconds> +0000``.

    ``ident`` is either ``"Name <email>"`` or a bare name (the email is derived).
    """
    if any(c in ident for c in "\n\0"):
        raise LineageError(f"identity {ident!r} holds a newline or NUL")
    if "<" in ident:
        name, _, rest = ident.partition("<")
        email = rest.rstrip(">").strip()
        name = name.strip()
    else:
        name = ident.strip()
        email = "".join(c if c.isalnum() or c in "._-" else "-" for c in name) + "@swarm.local"
    if not name or "<" in name or ">" in name or "<" in email or ">" in email or not email:
        raise LineageError(f"identity {ident!r} is not 'Name' or 'Name <email>'")
    return f"{name} <{email}> {int(when)} +0000"


def encode_commit(
    tree: str, parents: Sequence[str], author: str, committer: str, message: str
) -> bytes:
    """Encode a commit object body (``author``/``committer`` come from ``signature``)."""
    lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
    lines += [f"author {author}", f"committer {committer}", "", message]
    return "\n".join(lines).encode()


def parse_commit_tree(data: bytes) -> str:
    """The root tree sha named by a commit object body."""
    if not data.startswith(b"tree "):
        raise LineageError("object is not a commit")
    return data[5:45].decode()


def encode_tag(target: str, kind: str, name: str, tagger: str, message: str) -> bytes:
    """Encode an annotated tag object body pointing at ``target`` (of type ``kind``)."""
    return f"object {target}\ntype {kind}\ntag {name}\ntagger {tagger}\n\n{message}".encode()


def _pack_header(kind: str, size: int) -> bytes:
    byte = (_TYPE_CODES[kind] << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def write_pack(git_dir: Path, objects: Mapping[str, tuple[str, bytes]]) -> Path | None:
    """Write ``{sha: (type, body)}`` as one durable packfile plus index; return the .pack path.

    Order matters for crash safety: the pack is complete and fsynced before its
    rename, the index (which is what makes git see the pack) likewise after it,
    and the directory is fsynced last. Nothing is written for an empty batch.

    Raises:
        LineageError: the disk is full or read-only (nothing half-written is left visible).
    """
    if not objects:
        return None
    pack_dir = git_dir / "objects" / "pack"
    body = bytearray(b"PACK" + struct.pack(">II", 2, len(objects)))
    index: list[tuple[bytes, int, int]] = []
    for sha, (kind, data) in objects.items():
        offset = len(body)
        record = _pack_header(kind, len(data)) + zlib.compress(data, 1)
        body += record
        index.append((bytes.fromhex(sha), zlib.crc32(record), offset))
    pack_sum = hashlib.sha1(body).digest()
    body += pack_sum
    name = f"pack-{pack_sum.hex()}"
    final_pack, final_idx = pack_dir / f"{name}.pack", pack_dir / f"{name}.idx"
    if final_idx.exists():  # identical batch written before: nothing to add
        return final_pack
    tmp_pack, tmp_idx = pack_dir / f"tmp_pack_{name}", pack_dir / f"tmp_idx_{name}"
    try:
        write_durably(tmp_pack, [bytes(body)])
        os.replace(tmp_pack, final_pack)
        write_durably(tmp_idx, [_encode_idx(sorted(index), pack_sum)])
        os.replace(tmp_idx, final_idx)
        fsync_dir(pack_dir)
    except OSError as exc:  # full or read-only disk: no index, so git never sees the pack
        for leftover in (tmp_pack, tmp_idx):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        raise LineageError(f"cannot write to the lineage {git_dir}: {exc.strerror}") from None
    return final_pack


def _encode_idx(index: list[tuple[bytes, int, int]], pack_sum: bytes) -> bytes:
    """A version-2 pack index for ``(sha, crc32, offset)`` rows sorted by sha."""
    fanout = [0] * 256
    for sha, _, _ in index:
        fanout[sha[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    small: list[int] = []
    large: list[int] = []
    for _, _, offset in index:
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    out = bytearray(b"\377tOc" + struct.pack(">I", 2))
    out += struct.pack(">256I", *fanout)
    out += b"".join(sha for sha, _, _ in index)
    out += struct.pack(f">{len(index)}I", *(crc for _, crc, _ in index))
    out += struct.pack(f">{len(small)}I", *small)
    out += struct.pack(f">{len(large)}Q", *large)
    out += pack_sum
    out += hashlib.sha1(out).digest()
    return bytes(out)


def for_each_ref(git_dir: Path, prefix: str = "refs/", keep_fds: Sequence[int] = ()) -> dict[str, str]:
    """A snapshot of every ref under ``prefix``: ``{ref: sha}`` (tags as tag-object shas).

    Raises:
        LineageError: git failed (its stderr is the message).
    """
    proc = subprocess.run(
        ["git", "--git-dir", str(git_dir), "for-each-ref", "--format=%(objectname) %(refname)",
         prefix],
        capture_output=True, pass_fds=tuple(keep_fds), check=False,
    )
    if proc.returncode != 0:
        msg = "; ".join(proc.stderr.decode(errors="replace").strip().splitlines())
        raise LineageError(f"git for-each-ref failed in {git_dir}: {msg}")
    out = proc.stdout.decode()
    return {ref: sha for sha, _, ref in (ln.partition(" ") for ln in out.splitlines())}


class _GitProcess:
    """One persistent git child speaking over stdin/stdout; restarted when it dies."""

    def __init__(self, git_dir: Path, args: Sequence[str], keep_fds: Sequence[int] = ()) -> None:
        self._git_dir = git_dir
        self._args = list(args)
        self._keep_fds = tuple(keep_fds)
        self._proc: subprocess.Popen[bytes] | None = None

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._proc = subprocess.Popen(
                ["git", "--git-dir", str(self._git_dir), *self._args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=self._keep_fds,
            )
        return self._proc

    def pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        """The child's stdin and stdout (started first if it is not running)."""
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        return proc.stdin, proc.stdout

    def _failure(self) -> str:
        """Collect the child's stderr after it died, then forget it."""
        proc = self._proc
        text = ""
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            text = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        self.close()
        return text or "git exited unexpectedly"

    def close(self) -> None:
        """Stop the child and close its pipes (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class CatFile(_GitProcess):
    """A persistent ``git cat-file --batch`` reader that checks every answer is the one asked for.

    Each request carries a sequence number that git echoes back (``%(rest)``),
    and a request for a sha must be answered with that sha. A reply that does
    not match means the reader and git are out of step (a name with a newline
    is two requests): the child is restarted and the read fails, so no later
    read can be answered with an earlier request's object.
    """

    def __init__(self, git_dir: Path, keep_fds: Sequence[int] = ()) -> None:
        super().__init__(git_dir, ["cat-file", f"--batch={_BATCH_FORMAT}"], keep_fds)
        self._seq = 0

    def read(self, name: str) -> tuple[str, bytes]:
        """Return ``(type, body)`` of the object ``name`` (a sha or ``rev:path``).

        Raises:
            LineageError: the object does not exist, or git answered another request.
        """
        _, kind, data = self.lookup(name)
        return kind, data

    def lookup(self, name: str) -> tuple[str, str, bytes]:
        """Return ``(sha, type, body)`` of the object ``name`` (any revision expression).

        Raises:
            LineageError: ``name`` holds whitespace or a control character, the
                object does not exist, or git answered another request.
        """
        if not name or any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in name):
            raise LineageError(f"{name!r} is not an object name (whitespace or a control character)")
        self._seq += 1
        token = str(self._seq)
        stdin, stdout = self.pipes()
        try:
            stdin.write(f"{name} {token}\n".encode())
            stdin.flush()
        except BrokenPipeError:
            raise LineageError(f"cat-file died: {self._failure()}") from None
        header = stdout.readline()
        if not header:
            raise LineageError(f"cat-file died: {self._failure()}")
        parts = header.decode(errors="replace").split()
        if parts == [name, "missing"] or parts == [name, "ambiguous"]:
            raise LineageError(f"no object {name!r} in the lineage repository {self._git_dir}")
        if len(parts) != 4 or parts[3] != token or not parts[2].isdigit() or (
                is_sha(name) and parts[0] != name):
            self.close()  # out of step: whatever is buffered answers other requests
            raise LineageError(
                f"cat-file answered {header[:120]!r} to the request for {name!r}; reader restarted")
        data = stdout.read(int(parts[2]) + 1)[:-1]
        return parts[0], parts[1], data


class RefUpdater(_GitProcess):
    """Atomic multi-ref compare-and-swap through a persistent ``git update-ref --stdin``."""

    def __init__(self, git_dir: Path, keep_fds: Sequence[int] = ()) -> None:
        super().__init__(git_dir, ["update-ref", "--stdin"], keep_fds)

    def apply(self, updates: Mapping[str, tuple[str | None, str | None]]) -> None:
        """Move every ``ref: (old, new)`` at once, or none of them.

        ``old`` None means the ref must not exist; ``new`` None deletes it. The
        call returns only after git reports the transaction committed (with
        ``core.fsync=reference`` the ref files are on disk by then).

        Raises:
            LineageError: a ref was not at ``old`` (lost compare-and-swap) or git failed.
        """
        if not updates:
            return
        lines = ["start"]
        for ref, (old, new) in updates.items():
            if new is None:
                lines.append(f"delete {ref} {old or ''}".rstrip())
            else:
                lines.append(f"update {ref} {new} {old or ZERO_OID}")
        lines += ["prepare", "commit", ""]
        stdin, stdout = self.pipes()
        try:
            stdin.write("\n".join(lines).encode())
            stdin.flush()
        except BrokenPipeError:
            raise LineageError(f"ref update refused: {self._failure()}") from None
        for step in ("start", "prepare", "commit"):
            reply = stdout.readline().decode().strip()
            if reply != f"{step}: ok":
                raise LineageError(f"ref update refused: {self._failure()}")
