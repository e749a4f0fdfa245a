"""Input sequences read from a file: what ``--input FILE`` drives the model with.

The Jacobians ∂S_T/∂S_k depend on the trajectory, hence on the inputs (Pascanu et al. 2013, §2), so the
gradient flow a model has on its own data can differ from the one it has on noise. A FILE is

* ``.npy`` — one array, read with ``np.load(allow_pickle=False)``;
* ``.npz`` — ``data.npz:name`` picks the array ``name`` (optional when the file holds one array); read
  without pickle (`gradscope.io.formats.read_npz`);
* ``.safetensors`` — ``data.safetensors:name`` picks the tensor (optional when there is one), parsed with
  NumPy alone (`gradscope.io.formats.read_safetensors`); bfloat16 is widened to float32;
* ``.csv`` — rows are steps, columns are features. A first row that is not all numbers is a header. A header
  column named ``sequence``, ``seq``, ``sequence_id`` or ``id`` (any case) is the sequence id: rows with the
  same id form one sequence, in file order, sequences in order of first appearance, and every sequence must
  have the same number of rows. Without such a column the file is one sequence. Every other column is a
  feature.

Arrays are ``(T, m)`` (one sequence) or ``(B, T, m)``. Refused, each with a one-line `ConfigError`: a file
that cannot be read, object (pickled) arrays, a dtype that is not floating point (integers and booleans
included: convert with ``x.astype(np.float32)``), another rank, an empty axis, NaN or ±inf (the first
position is named), a missing or ambiguous array name (the names in the file are listed), CSV rows with
different numbers of fields and CSV sequences of different lengths.

`read_input_file` returns an `InputFile`: the array, always ``(B, T, m)`` and read-only, and ``source``, the
record a report keeps: ``{"file", "array", "shape", "dtype", "sha256"}`` (``shape`` and ``dtype`` as in the
file, ``sha256`` of the file's bytes). JAX is not imported here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradscope._errors import ConfigError

#: file types ``--input`` reads, by suffix (lower case)
SUFFIXES = (".npy", ".npz", ".csv", ".safetensors")
#: CSV header names (lower case) that mark the sequence-id column
ID_COLUMNS = ("sequence", "seq", "sequence_id", "id")
#: files larger than this are refused (the weight readers' limit)
MAX_BYTES = 4 * 2**30


@dataclass(frozen=True)
class InputFile:
    """Inputs read from a file: ``array`` ``(B, T, m)`` (read-only) and the ``source`` record of the report."""

    array: np.ndarray
    source: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(B, T, m)``: sequences, steps, features."""
        B, T, m = self.array.shape
        return int(B), int(T), int(m)


def split_spec(text: str) -> tuple[str, str | None]:
    """``"data.npz:x"`` → ``("data.npz", "x")``; ``"data.npy"`` → ``("data.npy", None)``.

    The text after the last ``:`` is an array name only when the part before it ends in a known suffix (so
    ``C:\\data\\x.npy`` stays a path)."""
    path, sep, name = str(text).rpartition(":")
    if sep and path.lower().endswith(SUFFIXES) and name and not any(c in name for c in "/\\"):
        return path, name
    return str(text), None


def is_file_spec(text: str) -> bool:
    """True when ``text`` names a file: it exists, or ends (before an optional ``:name``) in a known suffix."""
    path, _ = split_spec(text)
    return path.lower().endswith(SUFFIXES) or os.path.exists(path)


def _fail(spec: str, why: str) -> ConfigError:
    return ConfigError(f"input file {spec!r}: {why}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pick(spec: str, arrays: dict[str, np.ndarray], name: str | None, what: str) -> tuple[str, np.ndarray]:
    """The array ``name`` of ``arrays`` (the only one when ``name`` is None), or an error listing the names."""
    listed = ", ".join(sorted(arrays)) or "none"
    if name is None:
        if len(arrays) == 1:
            return next(iter(arrays.items()))
        why = "holds no arrays" if not arrays else f"holds {len(arrays)} {what}s ({listed})"
        raise _fail(spec, f"{why}: name one, e.g. --input {split_spec(spec)[0]}:{sorted(arrays or {'NAME': 0})[0]}")
    if name not in arrays:
        raise _fail(spec, f"has no {what} {name!r}; its {what}s are: {listed}")
    return name, arrays[name]


def _read_npy(spec: str, path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise _fail(
                spec,
                "holds an object (pickled) array; gradscope never unpickles data: save a plain "
                "floating-point array (np.save(path, x.astype(np.float32)))",
            ) from None
        raise _fail(spec, f"is not a readable .npy file: {e}") from None
    except (OSError, EOFError) as e:
        raise _fail(spec, f"is not a readable .npy file (truncated or corrupt): {e}") from None
    if not isinstance(arr, np.ndarray):  # np.load of a .npz-in-disguise returns an NpzFile
        raise _fail(spec, "is not a .npy file (it reads as an archive): rename it to .npz")
    return arr


def _read_archive(spec: str, path: Path, name: str | None, kind: str) -> tuple[str, np.ndarray]:
    from gradscope.io._files import read_npz, read_safetensors  # NumPy-only readers: no pickle, checked headers

    reader = read_npz if kind == ".npz" else read_safetensors
    try:
        arrays, _ = reader(path, max_bytes=MAX_BYTES)
    except ValueError as e:  # ImportFormatError, which starts with the path: said once, by _fail
        msg = str(e)
        msg = msg[len(repr(str(path))) :].lstrip(": ") if msg.startswith(repr(str(path))) else msg
        raise _fail(spec, msg) from None
    return _pick(spec, arrays, name, "tensor" if kind == ".safetensors" else "array")


def _number(spec: str, cell: str, line: int, column: str) -> float:
    try:
        v = float(cell)
    except ValueError:
        raise _fail(spec, f"line {line}, column {column!r}: {cell!r} is not a number") from None
    if not np.isfinite(v):
        raise _fail(
            spec,
            f"line {line}, column {column!r} is {cell.strip()!r}: remove or impute the missing/"
            "infinite values before analysing",
        )
    return v


def _read_csv(spec: str, path: Path) -> np.ndarray:
    """Rows = steps, columns = features; a header column named sequence/seq/sequence_id/id groups rows
    into sequences (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(spec, f"is not a readable UTF-8 CSV file: {e}") from None
    rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in r)]
    if not rows:
        raise _fail(spec, "is empty: expected rows of numbers (one row per step, one column per feature)")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    first = rows[0][1]
    header = None if all(numeric(c) for c in first) else [c.strip() for c in first]
    body = rows[1:] if header is not None else rows
    width = len(first)
    for line, r in body:
        if len(r) != width:
            raise _fail(
                spec,
                f"line {line} has {len(r)} fields but line {rows[0][0]} has {width}: every row "
                "must have the same columns (ragged rows)",
            )
    if not body:
        raise _fail(spec, "has a header but no data rows")
    names = header if header is not None else [str(j) for j in range(width)]
    ids = [j for j, n in enumerate(names) if n.lower() in ID_COLUMNS]
    if len(ids) > 1:
        raise _fail(spec, f"has {len(ids)} sequence-id columns ({', '.join(names[j] for j in ids)}): keep one")
    id_col = ids[0] if ids else None
    features = [j for j in range(width) if j != id_col]
    if not features:
        raise _fail(spec, "has no feature columns besides the sequence id")
    seqs: dict[str, list[list[float]]] = {}
    for line, r in body:
        key = r[id_col].strip() if id_col is not None else ""
        seqs.setdefault(key, []).append([_number(spec, r[j], line, names[j]) for j in features])
    lengths = {k: len(v) for k, v in seqs.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in list(lengths.items())[:6])
        raise _fail(
            spec,
            f"its sequences have different numbers of steps ({shown}{', …' if len(lengths) > 6 else ''}"
            "): every sequence needs the same length (ragged sequences); trim or pad them",
        )
    arr = np.asarray(list(seqs.values()), dtype=np.float64)
    return arr if id_col is not None else arr[0]


def _check(spec: str, arr: np.ndarray) -> np.ndarray:
    """Floating dtype, rank 2 or 3, no empty axis, every value finite; returns ``(B, T, m)``."""
    if arr.dtype.kind != "f":
        fix = "" if arr.dtype.kind == "O" else ": convert it first, e.g. x.astype(np.float32)"
        raise _fail(spec, f"has dtype {arr.dtype}; gradscope needs floating-point inputs{fix}")
    if arr.ndim not in (2, 3):
        raise _fail(
            spec,
            f"has shape {tuple(arr.shape)} (rank {arr.ndim}): expected (T, m) for one sequence or "
            "(B, T, m) for a batch (steps T, features m)",
        )
    if 0 in arr.shape:
        raise _fail(
            spec, f"has shape {tuple(arr.shape)}, an empty axis: expected at least one sequence, step and feature"
        )
    finite = np.isfinite(arr)
    if not finite.all():
        pos = tuple(int(i) for i in np.argwhere(~finite)[0])
        axes = ("batch", "t", "feature")[-arr.ndim :]
        where = ", ".join(f"{a}={i}" for a, i in zip(axes, pos))
        count = int(arr.size - np.count_nonzero(finite))
        raise _fail(
            spec,
            f"holds {count} non-finite value{'s' * (count != 1)}: [{where}] is {float(arr[pos])!r}; "
            "remove or impute the missing/infinite values before analysing",
        )
    return arr if arr.ndim == 3 else arr[None]


def read_input_file(spec: str | os.PathLike) -> InputFile:
    """Read and validate the inputs named by ``spec`` (``path`` or ``path:name``); see the module docstring."""
    text = os.fspath(spec)
    path_text, name = split_spec(text)
    path = Path(path_text)
    suffix = path.suffix.lower()
    if not path.exists():
        raise _fail(text, f"no such file: check the path, or use a generated source ({', '.join(_source_names())})")
    if not path.is_file():
        raise _fail(text, "is not a regular file: give a .npy, .npz, .csv or .safetensors file")
    if suffix not in SUFFIXES:
        raise _fail(text, f"unknown file type {suffix or '(no suffix)'!r}: expected one of {', '.join(SUFFIXES)}")
    if name is not None and suffix in (".npy", ".csv"):
        raise _fail(text, f"a {suffix} file holds one array: drop ':{name}'")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise _fail(text, f"has {size} bytes, more than the {MAX_BYTES}-byte limit for input files")
    if suffix == ".npy":
        array_name, arr = None, _read_npy(text, path)
    elif suffix == ".csv":
        array_name, arr = None, _read_csv(text, path)
    else:
        array_name, arr = _read_archive(text, path, name, suffix)
    shape, dtype = [int(s) for s in arr.shape], str(arr.dtype)
    data = np.array(_check(text, arr))  # a private copy, read-only below
    data.setflags(write=False)
    source = {"file": path_text, "array": array_name, "shape": shape, "dtype": dtype, "sha256": _sha256(path)}
    return InputFile(array=data, source=source)


_CACHE: dict[tuple, InputFile] = {}


def load(spec: str) -> InputFile:
    """`read_input_file`, kept for the file's current size and modification time (a command reads a file once,
    however many configurations it drives)."""
    path_text, _ = split_spec(spec)
    try:
        st = os.stat(path_text)
        key: tuple[Any, ...] = (str(spec), os.path.abspath(path_text), st.st_size, st.st_mtime_ns)
    except OSError:
        return read_input_file(spec)  # names the problem
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.clear()
        _CACHE[key] = read_input_file(spec)
    return _CACHE[key]


def _source_names() -> list[str]:
    from gradscope.experiments.inputs import SOURCES

    return list(SOURCES)
