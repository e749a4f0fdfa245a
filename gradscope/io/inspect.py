"""What a weight file holds and how gradscope would map it: `inspect_file` (``gradscope inspect FILE``),
and `load_model`, which picks the importer from the file's names.

Framework detection (from tensor names, overridable with ``framework=`` or a ``"framework"``
metadata/sidecar entry): Keras (``recurrent_kernel`` or ``.weights.h5`` ``vars/N`` slots), Flax
(``hi.kernel``, ``hn.kernel``, ``dense_h.kernel``), Equinox (``weight_ih`` with ``bias``/``bias_n``
and no ``bias_ih``), PyTorch (``weight_ih_l0`` or ``weight_ih``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from gradscope._errors import GradscopeError
from gradscope.io.formats import DEFAULT_MAX_BYTES, ImportFormatError, file_format, read_arrays

FRAMEWORKS = ("torch", "keras", "flax", "equinox")


def detect_framework(arrays, meta=None) -> str | None:
    """The framework whose naming the arrays follow, or ``None``."""
    from gradscope.io.flax import flax_cells
    from gradscope.io.keras import keras_layers
    from gradscope.io.torch import _prefixes

    fw = (meta or {}).get("framework")
    if fw in FRAMEWORKS:
        return fw
    if keras_layers(arrays):
        return "keras"
    if flax_cells({k.replace("/", "."): v for k, v in arrays.items()}):
        return "flax"
    names = set(arrays)
    if (
        any(re.search(r"(^|\.)weight_ih$", k) for k in names)
        and any(re.search(r"(^|\.)bias(_n)?$", k) for k in names)
        and not any(k.endswith("bias_ih") for k in names)
    ):
        return "equinox"
    if _prefixes(names):
        return "torch"
    return None


def _importer(framework):
    from gradscope.io import equinox, flax, keras, torch

    return {
        "torch": torch.from_torch,
        "keras": keras.from_keras,
        "flax": flax.from_flax,
        "equinox": equinox.from_equinox,
    }[framework]


def load_model(source, *, framework: str | None = None, **options):
    """Import ``source`` (a path or mapping) with the importer for ``framework`` (detected if omitted);
    ``options`` go to that importer (e.g. ``nonlinearity=`` for torch, ``layer=`` for keras)."""
    if framework is not None and framework not in FRAMEWORKS:
        raise ImportFormatError(f"framework={framework!r} is not allowed: expected one of {', '.join(FRAMEWORKS)}")
    if framework is None:
        arrays, meta, desc = read_arrays(source, max_bytes=options.get("max_bytes", DEFAULT_MAX_BYTES))
        framework = detect_framework(arrays, meta)
        if framework is None:
            raise ImportFormatError(
                f"{desc}: the tensor names match no supported layout (PyTorch, Keras, Flax, "
                f"Equinox); names are {sorted(arrays)[:12]}"
            )
    return _importer(framework)(source, **options)


def _describe_model(model) -> dict:
    from gradscope.io.deep_bidirectional import DeepBidirectional
    from gradscope.nets import Bidirectional, Stack

    if isinstance(model, DeepBidirectional):
        first = model.layers[0].forward
        layers, bidir, structure = model.num_layers, True, "DeepBidirectional"
    elif isinstance(model, Bidirectional):
        first, layers, bidir, structure = model.forward, 1, True, "Bidirectional"
    elif isinstance(model, Stack):
        first, layers, bidir, structure = model.layers[0], len(model.layers), False, "Stack"
    else:
        first, layers, bidir, structure = model, 1, False, "cell"
    out = {
        "gradscope_cell": first.name or type(first).__name__,
        "structure": structure,
        "input_size": int(model.input_size),
        "hidden_size": int(first.hidden_size),
        "proj_size": int(getattr(first, "proj_size", 0) or 0),
        "num_layers": layers,
        "bidirectional": bidir,
        "dtype": str(np.dtype(first.dtype)),
    }
    if getattr(first, "activation", None):
        out["nonlinearity"] = first.activation
    return out


def inspect_file(path, *, framework: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES, **options) -> dict:
    """Describe a weight file: format, size, metadata, every tensor (name, shape, dtype), the detected
    framework and the gradscope model it maps to (``"mapping"``), or why it does not (``"problem"``).

    An unreadable file (truncated, corrupt, pickled objects) raises `ImportFormatError`; a readable
    file whose layout cannot be mapped is described with ``mapping = None`` and a ``problem``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ImportFormatError(f"path={path!r} is not allowed: expected a file path")
    fmt = file_format(path)
    arrays, meta, desc = read_arrays(path, max_bytes=max_bytes)
    info = {
        "path": str(path),
        "format": fmt,
        "size_bytes": Path(path).stat().st_size,
        "metadata": dict(meta),
        "tensors": [
            {"name": k, "shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
            for k, v in sorted(arrays.items())
        ],
        "num_parameters": int(sum(np.size(v) for v in arrays.values())),
    }
    fw = framework or detect_framework(arrays, meta)
    info["framework"] = fw
    info["mapping"], info["problem"] = None, None
    if fw is None:
        info["problem"] = "the tensor names match no supported layout (PyTorch, Keras, Flax, Equinox)"
        return info
    try:
        model = load_model(path, framework=fw, max_bytes=max_bytes, **options)
    except GradscopeError as e:
        info["problem"] = str(e)
        return info
    info["mapping"] = _describe_model(model)
    if fw == "torch":
        from gradscope.io.torch import infer_layout

        lay = infer_layout(arrays, prefix=options.get("prefix"), source=desc)
        info["mapping"] |= {
            "kind": lay["kind"],
            "bias": lay["bias"],
            "prefix": lay["prefix"],
            "ignored_tensors": lay["ignored"],
        }
    return info
