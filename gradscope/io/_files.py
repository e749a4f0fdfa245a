"""The container formats of `gradscope.io.formats`, each read without running code from the file:
safetensors (parsed with NumPy alone), .npz (``allow_pickle=False``), .pt (``torch.load(weights_only=True)``,
torch >= 2.10), Flax msgpack and HDF5 (links and external data refused)."""

from __future__ import annotations

import json
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
    MIN_TORCH,
    ImportFormatError,
    _check_size,
    _parse_meta_json,
    to_numpy_dict,
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
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ImportFormatError(f"{name!r}: corrupt safetensors header (not valid JSON: {e})") from None
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
        nbytes = int(np.prod(shape, dtype=np.int64)) * _ST_DTYPES[dt].itemsize if shape else _ST_DTYPES[dt].itemsize
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
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, struct.error, NotImplementedError) as e:
        raise ImportFormatError(f"{name!r} is not a readable .npz file (truncated or corrupt): {e}") from None
    return out, meta


def write_npz(path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in tensors.items()}
    if metadata:
        arrays["__metadata__"] = np.array(json.dumps(dict(metadata)))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


# ------------------------------------------------------------------------------------ torch .pt
def torch_version_ok(version: str) -> bool:
    m = re.match(r"(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= MIN_TORCH


def read_torch_file(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A state dict from a .pt/.pth file via ``torch.load(weights_only=True, map_location="cpu")``."""
    path = Path(path)
    _check_size(path, max_bytes)
    name = str(path)
    try:
        import torch
    except ImportError:
        raise ImportFormatError(
            f"{name!r} is a PyTorch file: install torch>=2.10 (the [torch] extra) to read it, "
            "or convert it to .safetensors"
        ) from None
    if not torch_version_ok(torch.__version__):
        raise ImportFormatError(
            f"{name!r}: reading .pt files needs torch>=2.10 (installed: {torch.__version__}); "
            "older versions have known weights_only escapes. Convert to .safetensors"
        )
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - the unpickler raises many types; none may escape as a crash
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImportFormatError(f"{name!r} could not be loaded safely (weights_only=True): {first}") from None
    if isinstance(obj, Mapping):
        for k in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(k), Mapping):
                obj = obj[k]
                break
    if not isinstance(obj, Mapping):
        raise ImportFormatError(f"{name!r} holds a {type(obj).__name__}, expected a state dict (a mapping of tensors)")
    return to_numpy_dict(obj, source=name), {}


def read_msgpack(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Flax ``serialization.to_bytes`` output (msgpack; arrays as (shape, dtype, bytes), no pickle)."""
    path = Path(path)
    _check_size(path, max_bytes)
    return to_numpy_dict(msgpack_tree(path.read_bytes(), str(path)), source=str(path)), {}


def msgpack_tree(data: bytes, name="msgpack bytes"):
    try:
        from flax import serialization
    except ImportError:
        raise ImportFormatError(f"{name}: reading Flax msgpack needs flax installed") from None
    try:
        return serialization.msgpack_restore(bytes(data))
    except Exception as e:  # noqa: BLE001
        raise ImportFormatError(f"{name} is not valid Flax msgpack: {e}") from None


# -------------------------------------------------------------------------------------- .h5
def read_h5(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every float dataset of an HDF5 file as ``{"a.b.c": array}``, treating the file as untrusted:
    soft/external links, external and virtual datasets are refused, and each dataset's size is
    checked against ``max_bytes`` before it is read (no decompression bombs)."""
    path = Path(path)
    _check_size(path, max_bytes)
    name = str(path)
    try:
        import h5py
    except ImportError:
        raise ImportFormatError(
            f"{name!r} is an HDF5 file: install h5py to read it, or export the weights "
            "to .safetensors/.npz with layer.get_weights()"
        ) from None
    out: dict[str, np.ndarray] = {}
    budget = [max_bytes]

    def walk(group, prefix):
        for key in group.keys():
            link = group.get(key, getlink=True)
            full = f"{prefix}.{key}" if prefix else key
            if not isinstance(link, h5py.HardLink):
                raise ImportFormatError(f"{name!r}: {full!r} is a {type(link).__name__}; links are not followed")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                walk(obj, full)
                continue
            if not isinstance(obj, h5py.Dataset):
                continue
            if obj.external or obj.is_virtual:
                raise ImportFormatError(f"{name!r}: dataset {full!r} stores its data outside the file; refused")
            if obj.dtype.kind != "f":
                raise ImportFormatError(f"{name!r}: dataset {full!r} has dtype {obj.dtype}; expected floats")
            nbytes = int(np.prod(obj.shape, dtype=np.int64)) * obj.dtype.itemsize
            budget[0] -= nbytes
            if budget[0] < 0:
                raise ImportFormatError(f"{name!r}: datasets add up to more than max_bytes={max_bytes}")
            out[full] = np.asarray(obj[()])

    try:
        with h5py.File(path, "r") as f:
            walk(f, "")
    except ImportFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/KeyError/ValueError/RuntimeError on corrupt files
        raise ImportFormatError(f"{name!r} is not a readable HDF5 file (truncated or corrupt): {e}") from None
    return out, {}
