"""An untrusted ``adapter_config.json`` read into a normal form that holds no regular expression.

peft and vLLM read several LoRA config fields as regular expressions: a string
``target_modules`` and ``exclude_modules`` (``re.fullmatch``), the keys of
``rank_pattern`` and ``alpha_pattern`` (``re.match(rf"(.*\\.)?({key})$")``),
``layers_pattern`` and the entries of ``modules_to_save``. A pattern from a peer
can then end a process (``"("`` raises ``re.error``) or hang the engine thread
(``"(.*.*)*!"`` backtracks for ever). So no pattern from an adapter is ever
evaluated here, and none reaches peft or vLLM:

- ``target_modules`` must be a list of module names (a string only if it is a
  plain module name or ``all-linear``); names match as peft matches list
  entries (the module itself or a ``.``-suffix of its path), with no regex;
- ``rank_pattern``/``alpha_pattern`` keys must be plain module names
  (``[A-Za-z0-9_]`` segments joined by ``.``; ``\\.`` is read as a literal dot),
  matched the same way;
- ``modules_to_save``, ``target_parameters``, ``trainable_token_indices``,
  ``layer_replication`` and ``megatron_config`` must be empty
  (swarm adapters are LoRA factors only; the last ones make peft copy layers
  or import a module by name).

``normalize_config`` then rewrites the config against the modules the weights
actually hold: ``target_modules`` becomes the sorted list of their full names,
``rank_pattern``/``alpha_pattern`` map each full name (dots escaped, so a regex
reader matches exactly that module) whose rank or alpha is not the default,
``layers_pattern``, ``layers_to_transform`` and ``exclude_modules`` are
dropped (the explicit list already says which layers), and an
``init_lora_weights`` that rewrites base weights on load (``pissa``...) becomes
``true``. The store keeps that
form, so peft and vLLM load exactly the modules the validator checked.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from swarm.errors import AdapterFormatError, AdapterKeyError

__all__ = [
    "CONFIG_FILE",
    "MAX_CONFIG_BYTES",
    "load_config",
    "normalize_config",
    "rank_for",
    "scale_for",
    "is_targeted",
    "read_no_follow",
]

CONFIG_FILE = "adapter_config.json"
MAX_CONFIG_BYTES = 1 << 20
MAX_NAME_CHARS = 512
MAX_NAMES = 4096  # matching is names x modules: a million names would stall the engine thread
MAX_RANK = 1 << 16
# Fixed and linear (segments and separators are disjoint): the only regex applied to names.
_NAME = re.compile(r"[A-Za-z0-9_]+(?:\\?\.[A-Za-z0-9_]+)*")
_DROPPED = ("layers_pattern", "layers_to_transform", "exclude_modules")
# Full-weight modules, parameter targets, replicated layers (memory), a module peft imports by name.
_MUST_BE_EMPTY = ("modules_to_save", "target_parameters", "trainable_token_indices",
                  "layer_replication", "megatron_config")  # fmt: skip


def read_no_follow(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` (at most ``limit``), refusing a symlink at the last component.

    Raises:
        AdapterFormatError: the file is a symlink, missing, unreadable or too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO must not block
    except FileNotFoundError:
        raise AdapterFormatError(f"{path.parent}: no {path.name}") from None
    except OSError as exc:
        if path.is_symlink():
            raise AdapterFormatError(f"{path}: is a symlink; adapters are plain files") from None
        raise AdapterFormatError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise AdapterFormatError(f"{path}: cannot be read (not a regular file)")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise AdapterFormatError(f"{path}: larger than {limit} bytes")
    return data


def load_config(folder: Path) -> dict[str, Any]:
    """Parse and type-check ``folder/adapter_config.json`` (no field is evaluated as a pattern).

    Raises:
        AdapterFormatError: missing, a symlink, not UTF-8 JSON, too large or too
            deep, not a LoRA config, or a field of the wrong type or a pattern.
    """
    raw = read_no_follow(folder / CONFIG_FILE, MAX_CONFIG_BYTES)
    try:
        config = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4,300 digits
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE} is not JSON ({_short(str(exc))})") from None
    except RecursionError:
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE} is nested too deeply") from None
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE} is not a LoRA config")
    try:
        _check_fields(config)
    except AdapterFormatError as exc:
        raise AdapterFormatError(f"{folder}: {CONFIG_FILE}: {exc}") from None
    return config


def _check_fields(config: dict[str, Any]) -> None:
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= MAX_RANK:
        raise AdapterFormatError(f"no positive integer 'r' ({_short(rank)})")
    if "lora_alpha" in config and not _is_number(config["lora_alpha"]):
        raise AdapterFormatError(f"'lora_alpha' must be a finite number, got {_short(config['lora_alpha'])}")
    if not isinstance(config.get("use_rslora", False), bool):
        raise AdapterFormatError(f"'use_rslora' must be true or false, got {_short(config['use_rslora'])}")
    base = config.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise AdapterFormatError(f"'base_model_name_or_path' must be a string, got {_short(base)}")
    _target_names(config.get("target_modules"))
    _pattern(config, "rank_pattern", lambda v: _is_int(v) and 1 <= v <= MAX_RANK, "a rank in 1..65536")
    _pattern(config, "alpha_pattern", _is_number, "a finite number")
    for key in _MUST_BE_EMPTY:
        if config.get(key):
            raise AdapterFormatError(f"{key!r} is not supported (swarm adapters hold LoRA factors only)")


def _target_names(targets: Any) -> list[str] | None:
    """The literal names of ``target_modules`` (``None`` = every module, for ``all-linear``)."""
    if targets is None:
        return []
    if isinstance(targets, str):
        if targets == "all-linear":
            return None
        return [_literal(targets, "target_modules")]
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise AdapterFormatError(f"'target_modules' must be a list of module names, got {_short(targets)}")
    if len(targets) > MAX_NAMES:
        raise AdapterFormatError(f"'target_modules' lists {len(targets)} names; at most {MAX_NAMES}")
    if any(len(t) > MAX_NAME_CHARS for t in targets):
        raise AdapterFormatError(f"'target_modules' holds a name over {MAX_NAME_CHARS} characters")
    return list(targets)


def _pattern(config: dict[str, Any], field: str, ok: Any, what: str) -> dict[str, Any]:
    value = config.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdapterFormatError(f"{field!r} must be an object of module name -> {what}")
    if len(value) > MAX_NAMES:
        raise AdapterFormatError(f"{field!r} holds {len(value)} entries; at most {MAX_NAMES}")
    out = {}
    for key, item in value.items():
        if not ok(item):
            raise AdapterFormatError(f"{field!r}[{_short(key)}] must be {what}, got {_short(item)}")
        out[_literal(key, field)] = item
    return out


def _literal(name: str, field: str) -> str:
    """A plain module name with ``\\.`` read as ``.``; anything else is a pattern, refused."""
    if len(name) > MAX_NAME_CHARS or _NAME.fullmatch(name) is None:
        raise AdapterFormatError(
            f"{field!r} entry {_short(name)} is not a plain module name (letters, digits, '_' "
            "and '.'); regular expressions are refused, list the module names"
        )
    return name.replace("\\.", ".")


def _matches(module: str, name: str) -> bool:
    return module == name or module.endswith("." + name)


def is_targeted(module: str, config: dict[str, Any]) -> bool:
    """Whether ``target_modules`` names ``module`` (peft's list rule, literally)."""
    targets = _target_names(config.get("target_modules"))
    return targets is None or any(_matches(module, t) for t in targets)


def _lookup(module: str, patterns: dict[str, Any]) -> Any:
    for name, value in patterns.items():  # the first match wins, as in peft and vLLM
        if _matches(module, name):
            return value
    return None


def rank_for(module: str, config: dict[str, Any]) -> int:
    """The rank of ``module``: its ``rank_pattern`` entry, else ``r``."""
    rank = _lookup(module, _pattern(config, "rank_pattern", _is_int, "a rank"))
    return int(config["r"] if rank is None else rank)


def scale_for(module: str, config: dict[str, Any]) -> float:
    """``alpha / r`` of ``module`` (``alpha / sqrt(r)`` with rsLoRA), patterns applied."""
    alpha = _lookup(module, _pattern(config, "alpha_pattern", _is_number, "a number"))
    alpha = float(config.get("lora_alpha", config["r"]) if alpha is None else alpha)
    rank = rank_for(module, config)
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)


def normalize_config(config: dict[str, Any], modules: Iterable[str]) -> dict[str, Any]:
    """``config`` rewritten against the ``modules`` the weights hold (see the module docstring).

    Raises:
        AdapterKeyError: a module is not in ``target_modules``.
    """
    modules = sorted(modules)
    for module in modules:
        if not is_targeted(module, config):
            raise AdapterKeyError(f"{module!r} is not in target_modules")
    default_alpha = config.get("lora_alpha", config["r"])
    ranks = {m: rank_for(m, config) for m in modules}
    alphas = {m: _lookup(m, _pattern(config, "alpha_pattern", _is_number, "a number")) for m in modules}
    out = dict(config)
    out["target_modules"] = modules
    out["rank_pattern"] = {_escape(m): r for m, r in ranks.items() if r != config["r"]}
    out["alpha_pattern"] = {_escape(m): a for m, a in alphas.items() if a is not None and a != default_alpha}
    for key in _DROPPED:
        out[key] = None
    if not isinstance(out.get("init_lora_weights", True), bool):
        # "pissa", "olora"... rewrite the *base* weights when peft loads the adapter; the
        # stored factors are what is served, so the plain initialisation is equivalent.
        out["init_lora_weights"] = True
    return out


def _escape(module: str) -> str:
    return module.replace(".", "\\.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # The bound first: a huge int does not convert to float.
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and abs(value) <= 1e12)  # fmt: skip


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
