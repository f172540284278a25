"""Reading safetensors files from untrusted bytes, with bounds checks and clear errors.

The header is parsed here (8-byte little-endian length, JSON, offsets) so a
truncated or malformed file is reported precisely, and tensors come back as
float32 numpy arrays (bfloat16 included, which numpy lacks) without torch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from swarm.errors import AdapterCorruptError, AdapterDtypeError

__all__ = ["FLOAT_DTYPES", "read_safetensors", "read_safetensors_header"]

MAX_HEADER_BYTES = 100 * 1024 * 1024
FLOAT_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
_ALL_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def read_safetensors_header(path: str | Path) -> dict[str, dict[str, Any]]:
    """Parse and bounds-check a safetensors header: name -> {dtype, shape, data_offsets}.

    Raises:
        AdapterCorruptError: truncated file, bad header, or offsets outside the data.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise AdapterCorruptError(f"{path.name}: truncated ({size} bytes, no header length)")
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise AdapterCorruptError(
                f"{path.name}: truncated or corrupt (header claims {length} bytes, file has {size})"
            )
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:  # not UTF-8, not JSON, or an integer of over 4,300 digits
            raise AdapterCorruptError(f"{path.name}: header is not JSON ({str(exc)[:100]})") from None
        except RecursionError:
            raise AdapterCorruptError(f"{path.name}: header is nested too deeply") from None
    if not isinstance(header, dict):
        raise AdapterCorruptError(f"{path.name}: header is not a JSON object")
    header.pop("__metadata__", None)
    _check_offsets(path.name, header, size - 8 - length)
    return header


def _check_offsets(name: str, header: dict[str, Any], data_bytes: int) -> None:
    end_max = 0
    for key, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if (not _ints(offsets) or len(offsets) != 2 or not _ints(shape) or len(shape) > 8
                or not isinstance(dtype, str) or dtype not in _ALL_DTYPES):  # fmt: skip
            raise AdapterCorruptError(f"{name}: malformed header entry for {key[:100]!r}")
        start, end = offsets
        count = math.prod(shape)  # Python ints: no overflow to hide a mismatch
        width = _ALL_DTYPES[dtype]
        if not 0 <= start <= end or any(d < 0 for d in shape) or end - start != count * width:
            raise AdapterCorruptError(f"{name}: tensor {key!r} has inconsistent offsets")
        end_max = max(end_max, end)
    if end_max > data_bytes:
        raise AdapterCorruptError(
            f"{name}: truncated (tensors need {end_max} data bytes, file has {data_bytes})"
        )


def _ints(value: Any) -> TypeGuard[list[int]]:
    """A JSON list of integers (``true`` is not one)."""
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All float tensors of a safetensors file as float32 numpy arrays (bf16 included).

    Raises:
        AdapterCorruptError: see ``read_safetensors_header``.
        AdapterDtypeError: a tensor is not float32, float16 or bfloat16.
    """
    header = read_safetensors_header(path)
    raw = Path(path).read_bytes()
    base = 8 + int.from_bytes(raw[:8], "little")
    out: dict[str, np.ndarray] = {}
    for key, info in header.items():
        dtype = info["dtype"]
        if dtype not in FLOAT_DTYPES:
            raise AdapterDtypeError(
                f"tensor {key!r} has dtype {dtype}; allowed: {', '.join(FLOAT_DTYPES)}"
            )
        start, end = info["data_offsets"]
        chunk = raw[base + start : base + end]
        if dtype == "BF16":
            bits = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        else:
            array = np.frombuffer(chunk, dtype="<f4" if dtype == "F32" else "<f2")
        out[key] = array.astype(np.float32).reshape(info["shape"])
    return out
