"""Reading and writing weight files without ever running code from them.

Accepted formats:

* **safetensors** — parsed here with NumPy alone (8-byte little-endian header length, a JSON header
  ``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``, then raw bytes), so
  the `safetensors` package is not needed. Every offset, size and dtype is checked before a byte is
  interpreted.
* **.npz** — ``np.load(..., allow_pickle=False)``: object arrays (the only way a pickle gets into an
  .npz) are refused. An optional ``__metadata__`` entry holds a JSON string (a plain unicode array).
* **.pt / .pth** — ``torch.load(path, weights_only=True, map_location="cpu")`` and only with
  torch >= 2.10 (CVE-2025-32434 gave code execution through ``weights_only=True`` before 2.6, and
  CVE-2026-24747 memory corruption before 2.10).
* **.h5** (Keras ``.weights.h5``) — only when h5py is installed; see `gradscope.io.keras`.

Anything wrong with a file — truncation, a corrupt header, a dtype that is not a float, an object
array, NaN/inf — raises `ImportFormatError` and nothing is returned: there is no partial load.

A small sidecar JSON next to a weight file (``model.safetensors.json``) or the safetensors
``__metadata__`` can carry what a state dict does not hold (``{"kind": "lstm", "nonlinearity": "tanh"}``).

The readers live in `gradscope.io._files` and `gradscope.io._framework_files`, and the shared checks in
`gradscope.io._arrays`; this module re-exports them and picks the reader from the file name (`read_arrays`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gradscope.io._arrays import (
    DEFAULT_MAX_BYTES,
    MAX_HEADER_BYTES,
    MIN_TORCH,
    ImportFormatError,
    _check_size,
    _parse_meta_json,
    check_float_array,
    to_numpy_dict,
)
from gradscope.io._files import read_npz, read_safetensors, write_npz, write_safetensors
from gradscope.io._framework_files import msgpack_tree, read_h5, read_msgpack, read_torch_file, torch_version_ok

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_HEADER_BYTES",
    "MIN_TORCH",
    "FORMATS",
    "ImportFormatError",
    "check_float_array",
    "to_numpy_dict",
    "file_format",
    "read_arrays",
    "read_sidecar",
    "read_safetensors",
    "write_safetensors",
    "read_npz",
    "write_npz",
    "read_torch_file",
    "torch_version_ok",
    "read_msgpack",
    "msgpack_tree",
    "read_h5",
    "_check_size",
]


FORMATS = {
    ".safetensors": "safetensors",
    ".npz": "npz",
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".h5": "h5",
    ".hdf5": "h5",
    ".msgpack": "msgpack",
}


def file_format(path) -> str:
    p = str(path).lower()
    for suf, fmt in FORMATS.items():
        if p.endswith(suf):
            return fmt
    raise ImportFormatError(
        f"{str(path)!r}: unknown weight file type; expected one of "
        + ", ".join(FORMATS)
        + " (pickle-free formats preferred: .safetensors, .npz)"
    )


def read_sidecar(path) -> dict[str, str]:
    """``<file>.json`` next to a weight file (e.g. ``model.safetensors.json``), or ``{}``."""
    side = Path(str(path) + ".json")
    if not side.is_file():
        return {}
    try:
        text = side.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ImportFormatError(f"sidecar {str(side)!r} is unreadable: {e}") from None
    return _parse_meta_json(str(side), text)


def read_arrays(source, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
    """``(arrays, metadata, description)`` from a mapping or a weight file (any supported format).

    ``metadata`` merges the file's own metadata with a sidecar ``<file>.json`` (the sidecar wins).
    """
    if isinstance(source, Mapping):
        return to_numpy_dict(source), {}, "mapping"
    if isinstance(source, (str, os.PathLike)):
        fmt = file_format(source)
        if fmt == "safetensors":
            arrays, meta = read_safetensors(source, max_bytes=max_bytes)
        elif fmt == "npz":
            arrays, meta = read_npz(source, max_bytes=max_bytes)
        elif fmt == "torch":
            arrays, meta = read_torch_file(source, max_bytes=max_bytes)
        elif fmt == "msgpack":
            arrays, meta = read_msgpack(source, max_bytes=max_bytes)
        else:
            arrays, meta = read_h5(source, max_bytes=max_bytes)
        return arrays, {**meta, **read_sidecar(source)}, str(source)
    raise ImportFormatError(
        f"source is a {type(source).__name__}: expected a mapping of arrays or a path "
        "to a .safetensors, .npz, .pt or .h5 file"
    )
