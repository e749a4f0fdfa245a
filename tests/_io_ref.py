"""Independent oracle for `gradscope.io`'s plans (what ``gradscope inspect`` describes without JAX): the model the
plan builds, read through the model protocol (``named_cells()``, each cell's sizes, ``state_size``,
``output_size``, ``dtype`` and ``describe()``), as ``gradscope inspect`` described files when it built them."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gradscope.io import inspect_file, load_model
from gradscope.io.inspect import describe_plan


def describe_model(model: Any) -> dict[str, Any]:
    """The mapping of a built model, read through ``named_cells()`` alone."""
    named = model.named_cells()
    first = named[0][1]
    prefixes = [p for p, _ in named]
    layers = {m.group(1) for p in prefixes if (m := re.search(r"layer(\d+)\.", p))}
    out = {
        "gradscope_cell": first.name,
        "structure": "cell" if prefixes == [""] else type(model).__name__,
        "input_size": int(model.input_size),
        "hidden_size": int(first.hidden_size),
        "state_size": int(sum(c.state_size for _, c in named)),
        "proj_size": int(getattr(first, "proj_size", 0) or 0),
        "num_layers": max(len(layers), 1),
        "bidirectional": any(p.endswith(("fwd.", "bwd.")) for p in prefixes),
        "dtype": str(np.dtype(first.dtype)),
    }
    if isinstance(getattr(first, "activation", None), str):
        out["nonlinearity"] = first.activation
    out["cell_config"] = {k: v for k, v in first.describe().items() if isinstance(v, (int, float, str, bool))}
    return out


def assert_inspect_describes_the_model(path, **options) -> dict[str, Any]:
    """`inspect_file`'s mapping of ``path`` begins with the description of the model `load_model` builds from it
    (same items, same order), and each planned cell reports what its built cell reports; returns the mapping."""
    plan, model = load_model.plan(path, **options), load_model(path, **options)
    named = model.named_cells()
    assert [(p.name or p.cls) for p in plan.cells] == [c.name for _, c in named]
    for p, (prefix, c) in zip(plan.cells, named, strict=True):
        planned = (list(p.describe().items()), p.state_size, p.output_size, str(p.dtype))
        assert planned == (list(c.describe().items()), c.state_size, c.output_size, str(np.dtype(c.dtype))), prefix
    want = describe_model(model)
    assert list(describe_plan(plan).items()) == list(want.items())
    mapping = inspect_file(path, **options)["mapping"]
    assert mapping is not None and list(mapping.items())[: len(want)] == list(want.items()), (mapping, want)
    return mapping
