"""Import the RG-LRU layer of ``recurrentgemma`` (Google DeepMind's Griffin / RecurrentGemma code) into
`gradscope.cells.rglru.RGLRU`.

The JAX (Flax linen) layer ``recurrentgemma.jax.layers.RGLRU(width=n, num_heads=H)`` has the parameter tree
``{"a_param": (n,), "input_gate": {"w": (H, n/H, n/H), "b": (H, n/H)}, "a_gate": {"w", "b"}}``.
Keys are the tree flattened with ``/`` (``flax.traverse_util.flatten_dict(params, sep="/")``, e.g.
``params/input_gate/w``); a nested mapping is flattened that way here. The PyTorch port's ``state_dict()``
(``a_param``, ``input_gate.w``, …) uses the same names joined with ``.`` and is read the same way.
The tensors map one to one onto the cell's fields (``input_gate/w`` → ``input_gate_w``, …).

A full Griffin model holds one RG-LRU per recurrent block (``…/blocks.3/recurrent_block/rg_lru/a_param``)
among other tensors (projections, convolution, MLP, attention); those blocks are not a stack of RG-LRUs, so
``prefix=`` must then name the one layer to import. The complex variant (``only_real=False``,
``a_imag_param``) is refused. ``reset_at_start`` chooses the first-step behaviour (see the cell's docstring):
True matches the reference called with ``segment_pos`` starting at 0, False (default) with a continuation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gradscope._errors import check_bool
from gradscope.io._build import Importer, expect, resolve_dtype
from gradscope.io._plan import CellPlan, ModelPlan, stack
from gradscope.io.formats import ImportFormatError, check_float_array, to_numpy_dict

# field of the cell -> the reference's path inside the layer (joined with "/" or ".")
PARAMS = {
    "a_param": ("a_param",),
    "input_gate_w": ("input_gate", "w"),
    "input_gate_b": ("input_gate", "b"),
    "a_gate_w": ("a_gate", "w"),
    "a_gate_b": ("a_gate", "b"),
}
SEPS = ("/", ".")


def _split_key(key: str):
    """``(prefix, sep, field)`` when ``key`` names an RG-LRU tensor (``field`` None for ``a_imag_param``)."""
    for field, parts in list(PARAMS.items()) + [(None, ("a_imag_param",))]:
        for sep in SEPS:
            suffix = sep.join(parts)
            if key == suffix or (key.endswith(suffix) and key[-len(suffix) - 1] in SEPS):
                return key[: len(key) - len(suffix)], sep, field
    return None


def layer_prefixes(keys) -> list[str]:
    """Prefixes of the RG-LRU layers (those with an ``a_param``) named in ``keys``, sorted."""
    return sorted({s[0] for s in map(_split_key, keys) if s is not None and s[2] == "a_param"})


def recognise(keys: set[str]) -> bool:
    """Whether ``keys`` hold a recurrentgemma RG-LRU layer (an ``a_param`` with its ``input_gate`` and
    ``a_gate`` weights under the same prefix). A whole Griffin tree is recognised too: `from_state_dict`
    then asks for ``prefix=``."""
    keys = set(keys)
    for p in layer_prefixes(keys):
        if all(any(p + sep.join(parts) in keys for sep in SEPS) for parts in PARAMS.values()):
            return True
    return False


def _key(arrays, prefix, field) -> str:
    """The key of ``field`` under ``prefix`` (whichever separator the file uses; "/" when absent)."""
    for sep in SEPS:
        k = prefix + sep.join(PARAMS[field])
        if k in arrays:
            return k
    return prefix + "/".join(PARAMS[field])


@Importer
def from_state_dict(
    sd: Mapping, *, prefix: str | None = None, reset_at_start: bool = False, dtype=None, source: str = "state dict"
) -> ModelPlan:
    """The `RGLRU` cell equal to the recurrentgemma RG-LRU layer whose parameters are ``sd`` (a flat mapping
    with "/"- or "."-joined keys, or the nested Flax tree; ``from_state_dict.plan``: its plan). ``prefix`` selects
    one layer of a bigger tree (e.g. ``"params/blocks.0/recurrent_block/rg_lru/"``). ``dtype``: float32 / float64
    (default: float64 when every tensor is float64 and JAX has x64). Missing tensors, wrong shapes, NaN/inf and
    unrelated tensors raise `ImportFormatError` naming them."""
    reset_at_start = check_bool("reset_at_start", reset_at_start)
    arrays = to_numpy_dict(sd, source=source, sep="/")
    found = layer_prefixes(arrays)
    if prefix and prefix not in found:  # "blocks.0/rg_lru" for "blocks.0/rg_lru/"
        prefix = next((prefix + sep for sep in SEPS if prefix + sep in found), prefix)
    if prefix is None:
        if len(found) > 1:
            raise ImportFormatError(
                f"{source}: several RG-LRU layers found (prefixes {found}): pass prefix= to choose one"
            )
        if not found:
            raise ImportFormatError(
                f"{source}: missing tensor 'a_param' (no RG-LRU layer found: expected "
                "'a_param', 'input_gate/w', 'input_gate/b', 'a_gate/w', 'a_gate/b')"
            )
        prefix = found[0]
        extra = sorted(k for k in arrays if (_split_key(k) or (None,))[0] != prefix)
        if extra:
            raise ImportFormatError(
                f"{source}: unexpected tensor {extra[0]!r} (and {len(extra) - 1} more) besides "
                f"the RG-LRU layer {prefix!r}: pass prefix= to import that layer only"
            )
    if any(_split_key(k) == (prefix, sep, None) for k in arrays for sep in SEPS):
        raise ImportFormatError(
            f"{source}: tensor {prefix + 'a_imag_param'!r} exists: the complex RG-LRU "
            "(only_real=False) is not supported"
        )
    k_a = _key(arrays, prefix, "a_param")
    if k_a not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {k_a!r}; RG-LRU layers found: {found or 'none'}")
    a_param = check_float_array(np.asarray(arrays[k_a]), k_a, source)
    k_w = _key(arrays, prefix, "input_gate_w")
    if k_w not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {k_w!r} (expected shape (H, n/H, n/H))")
    w = check_float_array(np.asarray(arrays[k_w]), k_w, source)
    if a_param.ndim != 1 or a_param.shape[0] == 0:
        raise ImportFormatError(f"{source}: tensor {k_a!r} has shape {tuple(a_param.shape)}, expected (n,)")
    n = a_param.shape[0]
    if w.ndim != 3 or w.shape[1] != w.shape[2] or w.shape[0] * w.shape[1] != n:
        raise ImportFormatError(
            f"{source}: tensor {k_w!r} has shape {tuple(w.shape)}, expected (H, n/H, n/H) "
            f"with n = {n} (the size of {k_a!r})"
        )
    H, k = w.shape[0], w.shape[1]
    shapes = {
        "a_param": (n,),
        "input_gate_w": (H, k, k),
        "input_gate_b": (H, k),
        "a_gate_w": (H, k, k),
        "a_gate_b": (H, k),
    }
    params = {f: expect(arrays, _key(arrays, prefix, f), shape, source) for f, shape in shapes.items()}
    dt = resolve_dtype(dtype, list(params.values()))
    static = {"input_size": n, "hidden_size": n, "num_heads": H, "c": 8.0, "reset_at_start": reset_at_start}
    return stack([CellPlan("rglru", "RGLRU", static, params, dt, name="rglru")])
