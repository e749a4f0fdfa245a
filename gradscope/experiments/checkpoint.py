"""Pickle-free checkpoints: one ``.npz`` of arrays plus a JSON sidecar, written atomically.

Layout of a checkpoint directory::

    ckpt-00000500.npz    every leaf of the saved pytree, named by its key path (``.params.rnn.layers[0].bias``)
    ckpt-00000500.json   {"schema", "step", "names", "meta": {...}}  (meta: rng key data, curves so far, ...)
    latest.json          {"step": 500}  — written last, so it only ever points at a complete checkpoint

Arrays are read back with ``allow_pickle=False`` and put into a *template* pytree of the same structure
(e.g. freshly initialised parameters and optimizer state), so nothing executable is ever loaded. Every
file is written to a temporary name in the same directory and moved into place with `os.replace`, so a
crash leaves either the old checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import jax
import numpy as np

from gradscope._atomic import write_with
from gradscope._errors import ConfigError, GradscopeError
from gradscope._json import dumps

SCHEMA = "gradscope.checkpoint/1"
#: a checkpoint directory: a path string or path object
PathLike = str | os.PathLike[str]


class CheckpointError(GradscopeError):
    """A checkpoint is missing, incomplete or does not match the model being restored."""


_atomic_write = write_with  # the one atomic writer (gradscope._atomic)


def _write_json(path: Path, obj: Any) -> None:
    def fill(f: BinaryIO) -> None:
        f.write(dumps(obj, indent=1).encode("utf-8"))

    _atomic_write(path, fill)


def leaf_names(tree: Any) -> list[str]:
    """The key-path names of the leaves of ``tree``, in flattening order."""
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _stem(step: int) -> str:
    return f"ckpt-{int(step):08d}"


def save(
    directory: PathLike, step: int, tree: Any, meta: dict[str, Any] | None = None, *, keep: int | None = 2
) -> Path:
    """Save ``tree`` (any pytree of arrays) as checkpoint ``step``; ``meta`` must be JSON-serialisable.

    Keeps the newest ``keep`` checkpoints (None keeps all). Returns the path of the ``.npz`` file.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    names = [jax.tree_util.keystr(p) for p, _ in flat]
    if len(set(names)) != len(names):
        raise CheckpointError("the pytree has leaves with identical key paths; cannot name them uniquely")
    arrays = {f"a{i}": np.asarray(leaf) for i, (_, leaf) in enumerate(flat)}
    for name, a in zip(names, arrays.values()):
        if a.dtype == object:
            raise CheckpointError(f"leaf {name} is not a numeric array (dtype object)")
    npz = d / f"{_stem(step)}.npz"
    _atomic_write(npz, lambda f: np.savez(f, allow_pickle=False, **arrays))  # no object arrays (checked above)
    _write_json(d / f"{_stem(step)}.json", {"schema": SCHEMA, "step": int(step), "names": names, "meta": meta or {}})
    _write_json(d / "latest.json", {"schema": SCHEMA, "step": int(step)})
    if keep is not None:
        for old in sorted(steps(d))[:-keep]:
            for suffix in (".npz", ".json"):
                (d / f"{_stem(old)}{suffix}").unlink(missing_ok=True)
    return npz


def steps(directory: PathLike) -> list[int]:
    """The steps of the complete checkpoints in ``directory`` (both files present), ascending."""
    d = Path(directory)
    out = []
    for p in d.glob("ckpt-*.json"):
        try:
            s = int(p.stem.split("-", 1)[1])
        except ValueError:
            continue
        if (d / f"{_stem(s)}.npz").exists():
            out.append(s)
    return sorted(out)


def latest(directory: PathLike) -> int | None:
    """The step recorded in ``latest.json``, or None when the directory holds no checkpoint."""
    p = Path(directory) / "latest.json"
    if not p.exists():
        return None
    return int(json.loads(p.read_text())["step"])


def path(directory: PathLike, step: int) -> Path:
    return Path(directory) / f"{_stem(step)}.npz"


def load(directory: PathLike, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restore checkpoint ``step`` (default: the latest) into the structure of ``template``.

    Returns ``(tree, meta)``. Leaf names, shapes and dtypes must match the template's exactly.
    """
    d = Path(directory)
    if step is None:
        step = latest(d)
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(d)!r} (latest.json is missing)")
    side = d / f"{_stem(step)}.json"
    npz = d / f"{_stem(step)}.npz"
    if not side.exists() or not npz.exists():
        raise CheckpointError(f"checkpoint step {step} in {str(d)!r} is incomplete or missing")
    info = json.loads(side.read_text())
    if info.get("schema") != SCHEMA:
        raise CheckpointError(f"{side} has schema {info.get('schema')!r}, expected {SCHEMA!r}")
    leaves, treedef = jax.tree_util.tree_flatten(template)
    names = leaf_names(template)
    if names != info["names"]:
        missing = sorted(set(names) - set(info["names"]))
        extra = sorted(set(info["names"]) - set(names))
        raise CheckpointError(
            f"checkpoint {npz} does not match the model: missing leaves {missing[:3]}, unexpected leaves {extra[:3]}"
        )
    with np.load(npz, allow_pickle=False) as z:
        arrays = [z[f"a{i}"] for i in range(len(names))]
    out = []
    for name, ref, a in zip(names, leaves, arrays):
        ref_shape, ref_dtype = np.shape(ref), np.asarray(ref).dtype if not hasattr(ref, "dtype") else ref.dtype
        if tuple(a.shape) != tuple(ref_shape) or a.dtype != ref_dtype:
            raise CheckpointError(
                f"leaf {name} in {npz} has shape {a.shape} dtype {a.dtype}, "
                f"the model expects {tuple(ref_shape)} {ref_dtype}"
            )
        out.append(jax.numpy.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, out), info["meta"]


def check_directory(directory: PathLike | None) -> Path:
    if directory is None:
        raise ConfigError("checkpoint_dir=None is not allowed here: give a directory")
    return Path(directory)
