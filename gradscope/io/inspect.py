"""What a weight file holds and how gradscope would map it: `inspect_file` (``gradscope inspect FILE``),
and `load_model`, which picks the importer from the file's names.

Framework detection (from tensor names, overridable with ``framework=`` or a ``"framework"``
metadata/sidecar entry): Keras (``recurrent_kernel`` or ``.weights.h5`` ``vars/N`` slots), Flax
(``hi.kernel``, ``hn.kernel``, ``dense_h.kernel``), Equinox (``weight_ih`` with ``bias``/``bias_n``
and no ``bias_ih``), PyTorch (``weight_ih_l0`` or ``weight_ih``), and the modern architectures of
`gradscope.io.modern` (mamba, xlstm, mingru, lru, rglru). Names that fit more than one layout are refused
as ambiguous (pass ``framework=``). `inspect_file` describes the importer's plan of the model (`describe_plan`,
what the built model would report through its ``named_cells()``): the file is read and checked with NumPy alone,
nothing is built and JAX is not imported.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from gradscope._errors import GradscopeError
from gradscope.io._build import Importer
from gradscope.io._plan import ModelPlan
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


def _plan(source, framework: str, **options) -> ModelPlan:
    """The plan of ``source`` by the importer of ``framework`` (a modern architecture goes through `from_torch`)."""
    from gradscope.io import equinox, flax, keras, torch

    if framework not in CLASSIC:
        return torch.from_torch.plan(source, kind=framework, **options)
    importers: dict[str, Importer] = {
        "torch": torch.from_torch,
        "keras": keras.from_keras,
        "flax": flax.from_flax,
        "equinox": equinox.from_equinox,
    }
    return importers[framework].plan(source, **options)


@Importer
def load_model(source, *, framework: str | None = None, **options) -> ModelPlan:
    """Import ``source`` (a path or mapping) with the importer for ``framework`` (detected if omitted);
    ``options`` go to that importer (e.g. ``nonlinearity=`` for torch, ``layer=`` for keras or mamba).
    Files are read without executing anything (see `gradscope.io.formats`); ``load_model.plan`` only plans
    the model (NumPy alone)."""
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
    return _plan(source, framework, **options)


def describe_plan(plan: ModelPlan) -> dict[str, Any]:
    """Sizes and structure of the model ``plan`` builds, as the built model reports them: its first cell (registry
    name, else class), how the cells are assembled, the first cell's sizes, the whole state's size, layers,
    direction, dtype, the nonlinearity when the cell has one, and the first cell's ``describe()`` without the
    values that are not scalars (``cell_config``)."""
    first = plan.cells[0]
    fields = first.fields
    out: dict[str, Any] = {
        "gradscope_cell": first.name or first.cls,
        "structure": plan.structure,
        "input_size": int(fields["input_size"]),
        "hidden_size": int(fields["hidden_size"]),
        "state_size": int(sum(c.state_size for c in plan.cells)),
        "proj_size": int(fields.get("proj_size", 0) or 0),
        "num_layers": plan.num_layers,
        "bidirectional": plan.bidirectional,
        "dtype": str(first.dtype),
    }
    if isinstance(fields.get("activation"), str):
        out["nonlinearity"] = fields["activation"]
    out["cell_config"] = {k: v for k, v in first.describe().items() if isinstance(v, (int, float, str, bool))}
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
        plan = load_model.plan(path, framework=fw, max_bytes=max_bytes, **options)
    except GradscopeError as e:
        info["problem"] = str(e)
        return info
    info["mapping"] = describe_plan(plan)
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
