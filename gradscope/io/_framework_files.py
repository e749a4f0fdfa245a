"""The container formats read through a framework's own package, each without running code from the file:
.pt (``torch.load(weights_only=True)``, torch >= 2.10), Flax msgpack (decoded with the ``msgpack`` package as Flax
decodes it, without importing Flax or JAX) and HDF5 (links and external data refused).
The NumPy-only formats (safetensors, .npz) are in `gradscope.io._files`."""

from __future__ import annotations

import importlib
import math
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gradscope.io._arrays import DEFAULT_MAX_BYTES, MIN_TORCH, ImportFormatError, _check_size, to_numpy_dict


def _open(path, max_bytes: int, module: str, missing: str) -> tuple[Path, ModuleType]:
    """``path`` checked against ``max_bytes`` and the reader's package, imported; ``missing`` (formatted with
    the file's name) says how to do without the package when it is not installed."""
    path = Path(path)
    _check_size(path, max_bytes)
    try:
        return path, importlib.import_module(module)
    except ImportError:
        raise ImportFormatError(missing.format(name=repr(str(path)))) from None


# ------------------------------------------------------------------------------------ torch .pt
def torch_version_ok(version: str) -> bool:
    m = re.match(r"(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= MIN_TORCH


def _check_zip_members(path: Path, max_bytes: int) -> None:
    """A zip container (torch's .pt since 1.6) whose members declare more than ``max_bytes`` in all is refused
    before anything is inflated; a legacy (non-zip) file is left to the loader."""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as e:
        raise ImportFormatError(f"{str(path)!r} is not a readable zip container (truncated or corrupt): {e}") from None
    if total > max_bytes:
        raise ImportFormatError(
            f"{str(path)!r} declares {total} bytes of data, more than max_bytes={max_bytes}; "
            "pass a larger max_bytes if the file is trusted to be that big"
        )


#: sentences of torch's errors that advise loading unsafely; they are never passed on
_UNSAFE_ADVICE = re.compile(r"weights_only|trusted source|safe_globals|arbitrary code|documentation of torch", re.I)


def _torch_reason(exc: BaseException) -> str:
    """The reason in a ``torch.load(weights_only=True)`` error, one line, without torch's advice to retry
    with ``weights_only=False`` (which would run code from the file)."""
    if isinstance(exc, RecursionError):
        return "its objects are nested too deeply"
    keep = []
    for para in str(exc).split("\n"):
        for sentence in re.split(r"(?<=[.!?])\s+", para.strip()):
            if sentence and not _UNSAFE_ADVICE.search(sentence):
                keep.append(sentence)
    reason = " ".join(keep).strip().rstrip(".")
    if "GLOBAL" in reason or "global" in reason:
        reason = f"it holds Python objects other than tensors ({reason})"
    return reason[:300] or f"{type(exc).__name__} while unpickling"


def read_torch_file(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A state dict from a .pt/.pth file via ``torch.load(weights_only=True, map_location="cpu")``."""
    path, torch = _open(
        path,
        max_bytes,
        "torch",
        "{name} is a PyTorch file: install torch>=2.10 (the [torch] extra) to read it, or convert it to .safetensors",
    )
    name = str(path)
    if not torch_version_ok(torch.__version__):
        raise ImportFormatError(
            f"{name!r}: reading .pt files needs torch>=2.10 (installed: {torch.__version__}); "
            "older versions have known weights_only escapes. Convert to .safetensors"
        )
    _check_zip_members(path, max_bytes)
    try:
        with warnings.catch_warnings():  # torch's own warnings (and their advice) are not passed on
            warnings.simplefilter("ignore")
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - the unpickler raises many types; none may escape as a crash
        raise ImportFormatError(
            f"{name!r} could not be loaded safely: {_torch_reason(e)}; gradscope never runs code from a file: "
            "save a state_dict of tensors (torch.save(model.state_dict(), ...)) or convert it to .safetensors"
        ) from None
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


#: Flax's msgpack extension types (``flax.serialization``): an array as msgpack ``(shape, dtype name, bytes)``, a
#: Python complex as ``(real, imag)``, a NumPy scalar as a 0-d array
_ARRAY, _COMPLEX, _SCALAR = 1, 2, 3
#: the key that marks an array Flax split into chunks (arrays over 2**30 bytes)
_CHUNKED = "__msgpack_chunked_array__"


def _msgpack_array(data: bytes) -> np.ndarray:
    import msgpack

    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    if dtype_name == b"bfloat16":  # JAX's bfloat16 is ml_dtypes'
        import ml_dtypes

        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(dtype_name)
    return np.frombuffer(buffer, dtype=dtype, count=-1, offset=0).reshape(shape, order="C")


def _msgpack_ext(code: int, data: bytes) -> Any:
    import msgpack

    if code == _ARRAY:
        return _msgpack_array(data)
    if code == _COMPLEX:
        pair = msgpack.unpackb(data)
        return complex(pair[0], pair[1])
    if code == _SCALAR:
        return _msgpack_array(data)[()]
    return msgpack.ExtType(code, data)


def _unchunk(tree: Any) -> Any:
    """``tree`` with Flax's chunked arrays joined again (in place, as ``flax.serialization`` does)."""
    if not isinstance(tree, dict):
        return tree
    if _CHUNKED in tree:
        shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
        chunks = tuple(tree["chunks"][str(i)] for i in range(len(tree["chunks"])))
        return np.concatenate(chunks).reshape(shape)
    for k, v in tree.items():
        tree[k] = _unchunk(v)
    return tree


def msgpack_tree(data: bytes, name: str = "msgpack bytes") -> Any:
    """The tree that Flax's ``serialization.to_bytes`` wrote into ``data`` (dicts, lists, arrays, numbers), decoded
    as ``flax.serialization.msgpack_restore`` decodes it, with the ``msgpack`` package (a dependency of Flax) and
    NumPy alone."""
    try:
        import msgpack
    except ImportError:
        raise ImportFormatError(f"{name}: reading Flax msgpack needs flax installed") from None
    try:
        return _unchunk(msgpack.unpackb(bytes(data), ext_hook=_msgpack_ext, raw=False, strict_map_key=False))
    except Exception as e:  # noqa: BLE001
        raise ImportFormatError(f"{name} is not valid Flax msgpack: {e}") from None


# -------------------------------------------------------------------------------------- .h5
#: a compressed HDF5 dataset may inflate to at most MAX_INFLATION times its stored bytes once it declares
#: more than MAX_INFLATED_BYTES (trained weights compress by less than 2:1; 100:1 is a decompression bomb)
MAX_INFLATION = 100
MAX_INFLATED_BYTES = 64 * 2**20


def read_h5(path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every float dataset of an HDF5 file as ``{"a.b.c": array}``, treating the file as untrusted:
    soft/external links, external and virtual datasets are refused, and each dataset's size is
    checked against ``max_bytes`` before it is read (no decompression bombs)."""
    path, h5py = _open(
        path,
        max_bytes,
        "h5py",
        "{name} is an HDF5 file: install h5py to read it, or export the weights to .safetensors/.npz with "
        "layer.get_weights()",
    )
    name = str(path)
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
            nbytes = math.prod(obj.shape or ()) * obj.dtype.itemsize
            budget[0] -= nbytes
            if budget[0] < 0:
                raise ImportFormatError(f"{name!r}: datasets add up to more than max_bytes={max_bytes}")
            stored = obj.id.get_storage_size()
            if nbytes > MAX_INFLATED_BYTES and nbytes > MAX_INFLATION * stored:
                raise ImportFormatError(
                    f"{name!r}: dataset {full!r} declares {nbytes} bytes stored in {stored} (compressed more than "
                    f"{MAX_INFLATION}:1, a decompression bomb?); refused before inflating it"
                )
            out[full] = np.asarray(obj[()])

    try:
        with h5py.File(path, "r") as f:
            walk(f, "")
    except ImportFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/KeyError/ValueError/RuntimeError on corrupt files
        raise ImportFormatError(f"{name!r} is not a readable HDF5 file (truncated or corrupt): {e}") from None
    return out, {}
