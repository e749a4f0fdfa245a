"""The one JSON sanitiser: strict JSON (RFC 8259) from gradscope's records.

``clean`` maps NumPy/JAX scalars and arrays to Python, NaN and ±inf to ``None`` (the documented meaning of
null in reports: not computed, or an exactly-zero norm whose log10 is −inf), tuples to lists and keys to
``str``; records with ``to_dict`` are expanded. ``dumps`` serialises with ``allow_nan=False`` so nothing
non-standard can slip through. No JAX import: `gradscope.checks` uses it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def clean(obj: Any) -> Any:
    """Strict-JSON copy of ``obj`` (see the module docstring)."""
    if isinstance(obj, Mapping):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        # reports hold lists of thousands of numbers: those already strict JSON (a finite float: x − x is NaN
        # for ±inf and NaN; an int, not a bool; a str) are copied inline, without a call per number
        return [v if ((t := type(v)) is float and v - v == 0.0) or t is int or t is str else clean(v) for v in obj]
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, bool) or type(obj).__name__ == "bool_":
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return clean(obj.to_dict())
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # NumPy / JAX scalars and arrays
        return clean(obj.tolist())
    if hasattr(obj, "__array__"):
        import numpy as np

        a = np.asarray(obj)
        return clean(a.item() if a.ndim == 0 else a.tolist())
    return str(obj)


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps(clean(obj), allow_nan=False, **kw)``."""
    return json.dumps(clean(obj), allow_nan=False, **kw)
