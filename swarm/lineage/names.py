"""The names that may enter the lineage: refs, agent ids, revisions and tree paths.

Every name that reaches the lineage from a peer or a person (an agent or
teacher id in a host report, a parent, a tag, a CLI argument) is checked here
where it enters, before git sees it. The rules are git's ``check-ref-format``
rules plus what keeps a name from being read as something else: no control
characters or whitespace (a newline in a ``cat-file --batch`` request is two
requests), no leading ``-`` (an option), no component of 255 bytes or more
(one file in ``refs/``).
"""

from __future__ import annotations

from swarm.errors import LineageError

__all__ = ["branch_ref", "check_ref_name", "check_id", "check_rev", "check_tree_path", "is_sha"]

_HEX = frozenset("0123456789abcdef")
_REF_BAD_CHARS = frozenset(" ~^:?*[\\\x7f")
_MAX_COMPONENT = 255
_MAX_ID = 128


def is_sha(name: str) -> bool:
    """Whether ``name`` is a full 40-digit lowercase object name."""
    return len(name) == 40 and set(name) <= _HEX


def branch_ref(name: str) -> str:
    """The full ref of a branch name: ``agent/a`` -> ``refs/heads/agent/a``; refs stay as given."""
    return name if name.startswith("refs/") else f"refs/heads/{name}"


def _component_problem(part: str) -> str | None:
    """Why ``part`` may not be one ``/``-separated component of a ref, or None."""
    if not part:
        return "it has an empty component"
    if part.startswith("."):
        return f"component {part!r} starts with '.'"
    if part.startswith("-"):
        return f"component {part!r} starts with '-'"
    if part.endswith((".lock", ".")):
        return f"component {part!r} ends with '.lock' or '.'"
    if len(part.encode()) >= _MAX_COMPONENT:
        return f"it has a component of {len(part.encode())} bytes (at most {_MAX_COMPONENT - 1})"
    return None


def _chars_problem(name: str) -> str | None:
    if any(ord(c) < 32 or c in _REF_BAD_CHARS for c in name):
        return "it holds a control character, a space or one of ~^:?*[\\"
    if ".." in name or "@{" in name:
        return "it holds '..' or '@{'"
    return None


def check_ref_name(ref: str) -> None:
    """Refuse names that ``git check-ref-format`` would refuse, or that read as an option.

    Raises:
        LineageError: the name is not a valid ref.
    """
    if not isinstance(ref, str) or not ref or ref == "@":
        raise LineageError(f"{ref!r} is not a valid git ref name")
    problem = _chars_problem(ref) or next(
        (p for p in map(_component_problem, ref.split("/")) if p), None)
    if problem:
        raise LineageError(f"{ref!r} is not a valid git ref name ({problem})")


def check_id(kind: str, value: str) -> str:
    """Check an agent id, teacher id or tag name: one valid ref component; return it.

    It becomes a branch (``agent/<id>``) and a folder (``agents/<id>/``), so a
    ``/`` would nest one agent inside another's folder.

    Raises:
        LineageError: naming ``kind`` and the value.
    """
    if not isinstance(value, str):
        raise LineageError(f"{kind} {value!r} is not a string")
    problem: str | None
    if not value:
        problem = "it is empty"
    elif "/" in value:
        problem = "it holds a '/'"
    elif len(value) > _MAX_ID:
        problem = f"it is {len(value)} characters long (at most {_MAX_ID})"
    else:
        problem = _chars_problem(value) or _component_problem(value)
    if problem:
        raise LineageError(f"{kind} {value!r} is not allowed ({problem})")
    return value


def check_rev(name: str) -> str:
    """Check a name used to find a commit (sha, ref, branch, agent id or tag); return it.

    Raises:
        LineageError: it is neither a full sha nor a valid ref name.
    """
    if isinstance(name, str) and is_sha(name):
        return name
    check_ref_name(name)
    return name


def check_tree_path(path: str) -> tuple[str, ...]:
    """The components of a path inside a commit's tree.

    Raises:
        LineageError: an empty, ``.``, ``..``, ``.git*``, control-character or
            over-long component.
    """
    if not isinstance(path, str):
        raise LineageError(f"path {path!r} is not a string")
    parts = tuple(path.strip("/").split("/"))
    for part in parts:
        if part in ("", ".", "..") or part.lower().startswith(".git"):
            raise LineageError(f"path {path!r}: component {part!r} is not allowed")
        if any(ord(c) < 32 or c == "\x7f" for c in part):
            raise LineageError(f"path {path!r}: component {part!r} holds a control character")
        if len(part.encode()) >= _MAX_COMPONENT:
            raise LineageError(f"path {path!r}: a component of {len(part.encode())} bytes")
    return parts
