"""Shared pieces of the weight readers: the error type, size limits, and turning nested mappings of
framework tensors into checked NumPy arrays (no file format here; see `gradscope.io.formats`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gradscope._errors import GradscopeError

#: files larger than this are refused unless the caller raises the limit (``max_bytes=``)
DEFAULT_MAX_BYTES = 4 * 2**30
#: a safetensors JSON header larger than this is refused (the format's own reference limit is 100 MB)
MAX_HEADER_BYTES = 100 * 2**20
MIN_TORCH = (2, 10)


class ImportFormatError(GradscopeError, ValueError):
    """A weight file or mapping cannot be read or mapped onto a gradscope model."""


def _check_size(path: Path, max_bytes: int) -> int:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImportFormatError(f"cannot read {str(path)!r}: {e.strerror or e}") from None
    if not path.is_file():
        raise ImportFormatError(f"{str(path)!r} is not a regular file")
    if size > max_bytes:
        raise ImportFormatError(
            f"{str(path)!r} has {size} bytes, more than max_bytes={max_bytes}; "
            "pass a larger max_bytes if the file is trusted to be that big"
        )
    return size


def _parse_meta_json(name, text) -> dict[str, str]:
    if text is None:
        raise ImportFormatError(f"{name!r}: __metadata__ must be a JSON string")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"{name!r}: __metadata__ is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise ImportFormatError(f"{name!r}: __metadata__ must be a JSON object")
    return {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}


#: mappings nested deeper than this are refused (a state dict is a few levels deep)
MAX_DEPTH = 64


def _leaf_to_numpy(key, v, source):
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, without importing torch
        layout = str(getattr(v, "layout", "torch.strided"))
        if layout != "torch.strided" or getattr(v, "is_quantized", False) or getattr(v, "is_nested", False):
            kind = "quantized" if getattr(v, "is_quantized", False) else "nested" if v.is_nested else layout
            raise ImportFormatError(
                f"{source}: entry {key!r} is a {kind} tensor; gradscope reads dense tensors only "
                "(save tensor.to_dense() / tensor.dequantize() instead)"
            )
        t = v.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if (
        hasattr(v, "value")
        and not isinstance(v, np.ndarray)
        and hasattr(type(v), "__module__")
        and "flax" in type(v).__module__
    ):  # a flax Variable wrapping an array
        v = v.value
    try:
        return np.asarray(v)
    except Exception as e:  # noqa: BLE001
        raise ImportFormatError(f"{source}: entry {key!r} is a {type(v).__name__}, not an array ({e})") from None


def to_numpy_dict(tree, *, source="mapping", sep=".") -> dict[str, np.ndarray]:
    """Flatten a nested mapping of arrays (torch tensors, jax/numpy arrays) to ``{"a.b.c": ndarray}``.

    Non-array leaves (ints, strings, None) are dropped; nested keys are joined with ``sep``.
    """
    out: dict[str, np.ndarray] = {}
    stack = [("", tree, 0)]  # iterative: a hostile file's nesting cannot exhaust the interpreter's stack
    while stack:
        prefix, node, depth = stack.pop()
        if isinstance(node, Mapping):
            if depth >= MAX_DEPTH:
                raise ImportFormatError(
                    f"{source}: mappings nested more than {MAX_DEPTH} levels deep; not a state dict"
                )
            stack.extend(
                (f"{prefix}{sep}{k}" if prefix else str(k), v, depth + 1) for k, v in reversed(list(node.items()))
            )
            continue
        if node is None or isinstance(node, (str, bytes, int, float, bool)):
            continue
        out[prefix] = _leaf_to_numpy(prefix, node, source)
    return out


def check_float_array(arr: np.ndarray, key: str, source: str) -> np.ndarray:
    """Refuse non-float dtypes (object arrays included) and NaN/inf values, naming the tensor."""
    if arr.dtype.kind != "f":
        raise ImportFormatError(f"{source}: tensor {key!r} has dtype {arr.dtype}; expected a floating-point array")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ImportFormatError(f"{source}: tensor {key!r} has {bad} NaN/inf value(s); refusing to import it")
    return arr


#: the classic cells by their number of gate blocks (PyTorch and Keras stack the gates' weights alike)
KIND_BY_GATES = {1: "rnn", 3: "gru", 4: "lstm"}


def kind_by_gates(
    w_shape: tuple[int, ...], blocks: int, hidden: int, kind: str | None, where: str, rnn: str = "RNN"
) -> tuple[int, str]:
    """The gate count G = ``blocks`` / ``hidden`` of a stacked weight of shape ``w_shape`` and the cell kind it
    means (1 rnn, 3 gru, 4 lstm); a remainder, another G, or a ``kind`` that disagrees is an `ImportFormatError`
    naming ``where`` (the file and tensor); ``rnn`` is the framework's name of the plain cell."""
    if hidden <= 0 or blocks % hidden:
        raise ImportFormatError(
            f"{where} has shape {w_shape}: its gate blocks are not a multiple (1, 3 or 4) of hidden_size={hidden}"
        )
    gates = blocks // hidden
    if gates not in KIND_BY_GATES:
        expected = f"expected 1 ({rnn}), 3 (GRU) or 4 (LSTM)"
        raise ImportFormatError(f"{where} has shape {w_shape}: {gates} gate blocks, {expected}")
    inferred = KIND_BY_GATES[gates]
    if kind is not None and kind != inferred:
        raise ImportFormatError(
            f"{where}: kind={kind!r} was given but the shapes say {inferred!r} ({gates} gate block(s), shape {w_shape})"
        )
    return gates, inferred
