"""The container formats of `gradscope.io.formats`, each read without running code from the file:
safetensors (parsed with NumPy alone) and .npz (``allow_pickle=False``). The formats read through a framework's
package (.pt, Flax msgpack, HDF5) are in `gradscope.io._framework_files`."""

from __future__ import annotations

import json
import math
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gradscope.io._arrays import (
    DEFAULT_MAX_BYTES,
    MAX_HEADER_BYTES,
    ImportFormatError,
    _check_size,
    _parse_meta_json,
)

# safetensors dtype tag -> numpy dtype (BF16 is widened to float32 after reading)
_ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "C64": np.dtype("<c8"),  # complex64: what the safetensors package writes for torch.complex64 (lru-pytorch B, C)
}
_NP_TO_ST = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("complex64"): "C64",
}


def _bf16_to_f32(u16: np.ndarray) -> np.ndarray:
    return (u16.astype(np.uint32) << 16).view(np.float32)


# --------------------------------------------------------------------------------- safetensors
#: JSON nesting deeper than this is refused before parsing (a safetensors header is two levels deep)
MAX_JSON_DEPTH = 64


def _load_header_json(name: str, raw: bytes):
    """The safetensors header as JSON, refusing nesting deeper than `MAX_JSON_DEPTH` before ``json.loads``
    recurses into it (a 200 000-deep header would otherwise exhaust the interpreter's stack)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImportFormatError(f"{name!r}: corrupt safetensors header (not UTF-8: {e})") from None
    if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ImportFormatError(
            f"{name!r}: corrupt safetensors header: JSON nested more than {MAX_JSON_DEPTH} levels deep"
        )
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ImportFormatError(f"{name!r}: corrupt safetensors header (not valid JSON: {e})") from None


def json_depth(text: str, limit: int | None = None) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings are not counted); the scan
    stops as soon as it passes ``limit``."""
    depth = deepest = 0
    in_str = False
    for m in re.finditer(r'\\.|[\[\]{}"]', text, flags=re.S):  # an escape sequence is one token
        tok = m.group()
        if tok == '"':
            in_str = not in_str
        elif in_str or len(tok) == 2:
            continue
        elif tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if limit is not None and deepest > limit:
                break
        else:
            depth -= 1
    return deepest


def read_safetensors(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, metadata)`` from a .safetensors file, every header field validated."""
    path = Path(path)
    size = _check_size(path, max_bytes)
    name = str(path)
    if size < 8:
        raise ImportFormatError(
            f"{name!r} is not a safetensors file: {size} bytes, shorter than the 8-byte header length"
        )
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise ImportFormatError(
                f"{name!r}: corrupt safetensors header: it claims {n} header bytes, "
                f"the file has {size - 8} after the length field (truncated or not safetensors)"
            )
        raw = fh.read(n)
        data = fh.read()
    header = _load_header_json(name, raw)
    if not isinstance(header, dict):
        raise ImportFormatError(f"{name!r}: corrupt safetensors header: expected a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ImportFormatError(f"{name!r}: safetensors __metadata__ must map strings to strings")
    out: dict[str, np.ndarray] = {}
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ImportFormatError(f"{name!r}: tensor {key!r} has a malformed header entry {info!r}")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _ST_DTYPES:
            raise ImportFormatError(
                f"{name!r}: tensor {key!r} has unknown dtype {dt!r}; known: {', '.join(_ST_DTYPES)}"
            )
        if (
            not isinstance(shape, list)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            or not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
        ):
            raise ImportFormatError(f"{name!r}: tensor {key!r} has a malformed shape {shape!r} or offsets {offs!r}")
        begin, end = offs
        nbytes = _ST_DTYPES[dt].itemsize * math.prod(shape)  # Python ints: a shape cannot overflow int64 here
        if not (0 <= begin <= end <= len(data)) or end - begin != nbytes:
            raise ImportFormatError(
                f"{name!r}: tensor {key!r} (dtype {dt}, shape {tuple(shape)}) needs {nbytes} bytes but its offsets "
                f"are [{begin}, {end}] in a data section of {len(data)} bytes (truncated or corrupt file)"
            )
        spans.append((begin, end, key))
        arr = np.frombuffer(data, dtype=_ST_DTYPES[dt], count=nbytes // _ST_DTYPES[dt].itemsize, offset=begin)
        arr = arr.reshape(shape)
        out[key] = _bf16_to_f32(arr) if dt == "BF16" else arr.copy()
    spans.sort()
    for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ImportFormatError(f"{name!r}: tensors {k0!r} and {k1!r} overlap in the data section (corrupt file)")
    return out, dict(meta)


def write_safetensors(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (float arrays) in the safetensors format, with string ``metadata``."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        if arr.dtype not in _NP_TO_ST:
            raise ImportFormatError(
                f"tensor {key!r} has dtype {arr.dtype}; safetensors export takes float16/32/64 or complex64"
            )
        b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[key] = {"dtype": _NP_TO_ST[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8-byte alignment
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for b in blobs:
            fh.write(b)


# ---------------------------------------------------------------------------------------- npz
def read_npz(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(arrays, metadata)`` from an .npz, with ``allow_pickle=False`` (object arrays are refused)."""
    path = Path(path)
    _check_size(path, max_bytes)
    name = str(path)
    try:
        with zipfile.ZipFile(path) as zf:  # refuse decompression bombs before numpy inflates anything
            total = sum(i.file_size for i in zf.infolist())
            if total > max_bytes:
                raise ImportFormatError(f"{name!r} inflates to {total} bytes, more than max_bytes={max_bytes}")
            for info in zf.infolist():
                _check_npy_member(zf, info, name)
        out, meta = {}, {}
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                arr = z[key]
                if key == "__metadata__":
                    meta = _parse_meta_json(name, str(arr[()]) if arr.dtype.kind == "U" else None)
                    continue
                out[key] = arr
    except ImportFormatError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise ImportFormatError(
                f"{name!r} contains an object (pickled) array; gradscope never unpickles "
                "data. Save plain numeric arrays instead"
            ) from None
        raise ImportFormatError(f"{name!r} is not a readable .npz file: {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, struct.error, NotImplementedError, RecursionError) as e:
        raise ImportFormatError(f"{name!r} is not a readable .npz file (truncated or corrupt): {e}") from None
    return out, meta


def _check_npy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> None:
    """The ``.npy`` header of one .npz member, read before its data: the bytes its shape and dtype declare
    (Python ints, no overflow) must be what the member holds, so no array is allocated from a lying header."""
    if not info.filename.endswith(".npy"):
        return
    fmt = np.lib.format
    with zf.open(info) as fh:
        try:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            header_end = fh.tell()
        except (ValueError, SyntaxError, TypeError, RecursionError) as e:
            raise ImportFormatError(f"{name!r}: member {info.filename!r} has a corrupt .npy header ({e})") from None
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with its own message
    declared = dtype.itemsize * math.prod(shape)
    if declared != info.file_size - header_end:
        raise ImportFormatError(
            f"{name!r}: member {info.filename!r} declares shape {tuple(shape)} of {dtype} ({declared} bytes) but "
            f"holds {info.file_size - header_end} bytes of data (truncated or corrupt file)"
        )


def write_npz(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in tensors.items()}
    if metadata:
        arrays["__metadata__"] = np.array(json.dumps(dict(metadata)))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
