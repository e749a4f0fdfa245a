"""Import LRU layers (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences") into
`gradscope.cells.lru.LRU`.

Two layouts of one layer (n states, m inputs, p outputs) are recognised, by their tensor names:

* the paper's Flax reference code (Appendix A; also its PyTorch ports) — real and imaginary parts apart::

      nu_log, theta_log, gamma_log   (n,)
      B_re, B_im                     (n, m)
      C_re, C_im                     (p, n)
      D                              (m,)  (p = m, y = Re(C h) + D ⊙ x)  or  (p, m)

* the ``lru-pytorch`` package (``LRU_pytorch.LRU``, v0.1.3) — complex tensors::

      nu_log, theta_log, gamma_log   (n,)
      B                              (n, m) complex
      C                              (p, n) complex
      D                              (p, m) real   (y = Re(C h) + D x)

Both compute λ = exp(−exp(nu_log) + i·exp(theta_log)), h_t = λ ⊙ h_{t−1} + exp(gamma_log) ⊙ (B x_t), so
the cell is built with ``normalise=True`` and the tensors copied as they are. Several layers under prefixes
(``0.``, ``layers.1.``, a flattened Flax tree's ``params.LRU_0.``) give a `gradscope.nets.Stack` in the
prefixes' natural order; ``prefix=`` picks one layer of a bigger model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradscope.io._build import Importer, expect, resolve_dtype
from gradscope.io._plan import CellPlan, ModelPlan, stack
from gradscope.io.formats import ImportFormatError, to_numpy_dict

LAMBDA = ("nu_log", "theta_log", "gamma_log")
SPLIT = ("B_re", "B_im", "C_re", "C_im", "D")  # the Flax reference's names
COMPLEX = ("B", "C", "D")  # lru-pytorch's names
SUFFIXES = LAMBDA + SPLIT + ("B", "C")


def _split_key(key: str):
    """``(prefix, suffix)`` for a key ending in an LRU tensor name (after a ``.`` or ``/``), else None."""
    for s in SUFFIXES:
        if key == s or key.endswith("." + s) or key.endswith("/" + s):
            return key[: len(key) - len(s)], s
    return None


def layer_prefixes(keys) -> list[str]:
    """Prefixes that hold an LRU layer (its ``nu_log``), in natural order (``2.`` before ``10.``)."""
    found = {p for p, s in filter(None, map(_split_key, keys)) if s == "nu_log"}
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])


def recognise(keys: set[str]) -> bool:
    """Whether ``keys`` are those of LRU layers (the Flax reference's or ``lru-pytorch``'s), and nothing else:
    every key is an LRU tensor name under a prefix that also holds ``nu_log``, ``theta_log`` and ``gamma_log``."""
    keys = set(keys)
    prefixes = set(layer_prefixes(keys))
    if not keys or not prefixes:
        return False
    for k in keys:
        parts = _split_key(k)
        if parts is None or parts[0] not in prefixes:
            return False
    return all(p + s in keys for p in prefixes for s in LAMBDA)


def _finite(arr: np.ndarray, key: str, source: str) -> np.ndarray:
    if arr.dtype.kind not in "fc":
        raise ImportFormatError(f"{source}: tensor {key!r} has dtype {arr.dtype}; expected a floating-point array")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ImportFormatError(f"{source}: tensor {key!r} has {bad} NaN/inf value(s); refusing to import it")
    return arr


def _complex(arrays, key: str, shape, source: str):
    """``(real, imag)`` of the complex tensor ``key`` of ``shape`` (a real tensor has zero imaginary part)."""
    if key not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {key!r} (expected a complex tensor of shape {shape})")
    arr = _finite(np.asarray(arrays[key]), key, source)
    if tuple(arr.shape) != tuple(shape):
        raise ImportFormatError(f"{source}: tensor {key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    return np.real(arr), np.imag(arr)


def _layer(arrays: Mapping[str, Any], prefix: str, source: str, dtype) -> CellPlan:
    if prefix + "nu_log" not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {prefix + 'nu_log'!r}")
    nu = _finite(np.asarray(arrays[prefix + "nu_log"]), prefix + "nu_log", source)
    if nu.ndim != 1 or nu.shape[0] == 0 or nu.dtype.kind != "f":
        raise ImportFormatError(
            f"{source}: tensor {prefix + 'nu_log'!r} has shape {tuple(nu.shape)} and dtype "
            f"{nu.dtype}, expected a real vector (n,)"
        )
    n = nu.shape[0]
    theta = expect(arrays, prefix + "theta_log", (n,), source)
    gamma = expect(arrays, prefix + "gamma_log", (n,), source)
    split = prefix + "B_re" in arrays
    bkey = prefix + ("B_re" if split else "B")
    if bkey not in arrays:
        raise ImportFormatError(
            f"{source}: missing tensor {prefix + 'B_re'!r} (Flax layout) or {prefix + 'B'!r} (lru-pytorch layout)"
        )
    b_shape = np.shape(arrays[bkey])
    if len(b_shape) != 2 or b_shape[0] != n or b_shape[1] == 0:
        raise ImportFormatError(f"{source}: tensor {bkey!r} has shape {tuple(b_shape)}, expected ({n}, m)")
    m = b_shape[1]
    ckey = prefix + ("C_re" if split else "C")
    c_shape = np.shape(arrays[ckey]) if ckey in arrays else None
    if c_shape is None:
        raise ImportFormatError(f"{source}: missing tensor {ckey!r} (expected shape (p, {n}))")
    if len(c_shape) != 2 or c_shape[1] != n or c_shape[0] == 0:
        raise ImportFormatError(f"{source}: tensor {ckey!r} has shape {tuple(c_shape)}, expected (p, {n})")
    p = c_shape[0]
    if split:
        b_re, b_im = (expect(arrays, prefix + k, (n, m), source) for k in ("B_re", "B_im"))
        c_re, c_im = (expect(arrays, prefix + k, (p, n), source) for k in ("C_re", "C_im"))
    else:
        b_re, b_im = _complex(arrays, prefix + "B", (n, m), source)
        c_re, c_im = _complex(arrays, prefix + "C", (p, n), source)
    d_ndim = np.ndim(arrays[prefix + "D"]) if prefix + "D" in arrays else 2
    if d_ndim == 1 and p != m:
        raise ImportFormatError(
            f"{source}: tensor {prefix + 'D'!r} is a vector, which needs p = m, but C has "
            f"{p} rows and B {m} columns: expected D of shape ({p}, {m})"
        )
    D = expect(arrays, prefix + "D", (m,) if d_ndim == 1 else (p, m), source)
    weights = {
        "nu_log": nu,
        "theta_log": theta,
        "gamma_log": gamma,
        "B_re": b_re,
        "B_im": b_im,
        "C_re": c_re,
        "C_im": c_im,
        "D": D,
    }
    return CellPlan("lru", "LRU", {"input_size": m, "hidden_size": n, "normalise": True}, weights, dtype, name="lru")


@Importer
def from_state_dict(sd: Mapping, *, prefix: str | None = None, dtype=None, source: str = "state dict") -> ModelPlan:
    """The gradscope model equal to the LRU layer(s) whose tensors are ``sd`` (a ``state_dict()``, or a
    nested/flattened Flax parameter tree): one layer → an `LRU` cell, several → a `gradscope.nets.Stack`
    (``from_state_dict.plan``: its plan).

    ``dtype``: float32 / float64 (default: float64 when every tensor is float64/complex128 and JAX has x64,
    else float32). Missing tensors, wrong shapes, NaN/inf values and unrelated tensors raise
    `ImportFormatError` naming them.
    """
    arrays = to_numpy_dict(sd, source=source)
    found = layer_prefixes(arrays)
    if prefix is not None:
        if prefix not in found and prefix + "." in found:
            prefix += "."  # "layers.0" for "layers.0."
        if prefix not in found:
            raise ImportFormatError(
                f"{source}: prefix={prefix!r} names no LRU layer (no {prefix + 'nu_log'!r}); "
                f"layers found: {found or 'none'}"
            )
        prefixes = [prefix]
    else:
        if not found:
            raise ImportFormatError(f"{source}: no LRU tensors found (missing tensor 'nu_log')")
        extra = sorted(k for k in arrays if (_split_key(k) or (None,))[0] not in found)
        if extra:
            raise ImportFormatError(
                f"{source}: unexpected tensor {extra[0]!r} (and {len(extra) - 1} more) besides "
                f"the LRU layers {found}: pass prefix= to import one layer"
            )
        prefixes = found
    used = [np.real(np.asarray(arrays[k])) for k in arrays if any(k == q + s for q in prefixes for s in SUFFIXES)]
    dt = resolve_dtype(dtype, used)
    return stack([_layer(arrays, q, source, dt) for q in prefixes])
