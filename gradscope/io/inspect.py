"""What a weight file holds and how gradscope would map it: `inspect_file` (``gradscope inspect FILE``),
and `load_model`, which picks the importer from the file's names.

Framework detection (from tensor names, overridable with ``framework=`` or a ``"framework"``
metadata/sidecar entry): Keras (``recurrent_kernel`` or ``.weights.h5`` ``vars/N`` slots), Flax
(``hi.kernel``, ``hn.kernel``, ``dense_h.kernel``), Equinox (``weight_ih`` with ``bias``/``bias_n``
and no ``bias_ih``), PyTorch (``weight_ih_l0`` or ``weight_ih``), and the modern architectures of
`gradscope.io.modern` (mamba, xlstm, mingru, lru, rglru). Names that fit more than one layout are refused
as ambiguous (pass ``framework=``). The model is described through its ``named_cells()`` (the cell
protocol), so any network gradscope builds is described the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from gradscope._errors import GradscopeError
from gradscope.io.formats import DEFAULT_MAX_BYTES, ImportFormatError, file_format, read_arrays

CLASSIC = ("torch", "keras", "flax", "equinox")
#: what ``framework=`` takes: the four frameworks' RNN/LSTM/GRU layouts and the modern architectures
FRAMEWORKS = CLASSIC + ("mamba", "xlstm", "mingru", "lru", "rglru")


def _classic(arrays) -> str | None:
    """The framework whose RNN/LSTM/GRU naming the arrays follow (first match in a fixed order), or ``None``."""
    from gradscope.io.flax import flax_cells
    from gradscope.io.keras import keras_layers
    from gradscope.io.torch import _prefixes

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


def detect_framework(arrays, meta=None, *, source: str = "mapping") -> str | None:
    """The framework (or modern architecture, `gradscope.io.modern`) whose naming the arrays follow, or
    ``None``; a ``"framework"`` metadata entry decides. Names that fit several raise `ImportFormatError`."""
    from gradscope.io import modern

    fw = (meta or {}).get("framework")
    if fw in FRAMEWORKS:
        return fw
    found: dict = dict(modern.detect(arrays))
    classic = _classic(arrays)
    if classic is not None:
        found[classic] = "RNN/LSTM/GRU weights"
    if len(found) > 1:
        raise modern.ambiguous(found, source)
    return next(iter(found), None)


def _importer(framework):
    from gradscope.io import equinox, flax, keras, torch

    if framework not in CLASSIC:
        return lambda source, **options: torch.from_torch(source, kind=framework, **options)
    return {
        "torch": torch.from_torch,
        "keras": keras.from_keras,
        "flax": flax.from_flax,
        "equinox": equinox.from_equinox,
    }[framework]


def load_model(source, *, framework: str | None = None, **options):
    """Import ``source`` (a path or mapping) with the importer for ``framework`` (detected if omitted);
    ``options`` go to that importer (e.g. ``nonlinearity=`` for torch, ``layer=`` for keras or mamba).
    Files are read without executing anything (see `gradscope.io.formats`)."""
    if framework is not None and framework not in FRAMEWORKS:
        raise ImportFormatError(f"framework={framework!r} is not allowed: expected one of {', '.join(FRAMEWORKS)}")
    from gradscope.io import modern

    if framework is None:
        arrays, meta, desc = read_arrays(source, max_bytes=options.get("max_bytes", DEFAULT_MAX_BYTES))
        framework = detect_framework(arrays, meta, source=desc)
        if framework is None:
            raise ImportFormatError(
                f"{desc}: the tensor names match no supported layout (PyTorch, Keras, Flax, Equinox, or a "
                f"modern one: {modern.MARKERS}); names are {sorted(arrays)[:12]}"
            )
    return _importer(framework)(source, **options)


def _describe_model(model) -> dict:
    """Sizes and structure of an imported model, read through the model protocol (``named_cells``)."""
    named = model.named_cells() if callable(getattr(model, "named_cells", None)) else (("", model),)
    first = named[0][1]
    prefixes = [p for p, _ in named]
    layers = {m.group(1) for p in prefixes if (m := re.search(r"layer(\d+)\.", p))}
    out = {
        "gradscope_cell": getattr(first, "name", "") or type(first).__name__,
        "structure": "cell" if prefixes == [""] else type(model).__name__,
        "input_size": int(model.input_size),
        "hidden_size": int(first.hidden_size),
        "state_size": int(sum(getattr(c, "state_size", c.hidden_size) for _, c in named)),
        "proj_size": int(getattr(first, "proj_size", 0) or 0),
        "num_layers": max(len(layers), 1),
        "bidirectional": any(p.endswith(("fwd.", "bwd.")) for p in prefixes),
        "dtype": str(np.dtype(first.dtype)),
    }
    if isinstance(getattr(first, "activation", None), str):
        out["nonlinearity"] = first.activation
    describe = getattr(first, "describe", None)
    if callable(describe):  # the cell's own static configuration (heads, dt rank, g, ...)
        config = describe()
        if isinstance(config, dict):
            out["cell_config"] = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
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
    info["mapping"], info["problem"] = None, None
    try:
        fw = framework or detect_framework(arrays, meta, source=desc)
    except GradscopeError as e:
        info["framework"], info["problem"] = None, str(e)
        return info
    info["framework"] = fw
    if fw is None:
        info["problem"] = (
            "the tensor names match no supported layout (PyTorch, Keras, Flax, Equinox, "
            + ", ".join(FRAMEWORKS[len(CLASSIC) :])
            + ")"
        )
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
    elif fw not in CLASSIC:
        from gradscope.io import modern

        info["mapping"] |= modern.describe(arrays, fw, options.get("prefix"))
    return info
