"""One comparison of two report records (``Analysis.to_dict()`` after JSON cleaning) computed by two routes.

Floats agree to ``rel``/``abs``; a spectrum (a flat list under a ``singular_values`` key) agrees to ``spectrum_atol``
relative to its largest value, not to each value's own size: an SVD resolves σ_i only to ~ε·σ_max (None, a
value the report marks unresolved, compared as 0); a text that quotes numbers (a verdict's reason, a finding)
agrees word for word and number to number within the same ``rel``/``abs``; everything else exactly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

_NUMBER = re.compile(r"[-−+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?")


def assert_records_close(a, b, where: str = "record", *, rel: float, abs: float, spectrum_atol: float) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_records_close(a[k], b[k], f"{where}.{k}", rel=rel, abs=abs, spectrum_atol=spectrum_atol)
    elif isinstance(a, list) and "singular_values" in where and a and not isinstance(a[0], list):
        x, y = (np.array([np.nan if v is None else v for v in u], np.float64) for u in (a, b))
        top = np.nanmax(x)
        dx, dy = (np.nan_to_num(10.0 ** (u - top)) for u in (x, y))
        np.testing.assert_allclose(dx, dy, rtol=0, atol=spectrum_atol, err_msg=where)
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_records_close(u, v, f"{where}[{i}]", rel=rel, abs=abs, spectrum_atol=spectrum_atol)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=abs), where
    elif isinstance(a, str) and isinstance(b, str) and a != b:
        assert _NUMBER.split(a) == _NUMBER.split(b), where
        x, y = ([float(v.replace("−", "-")) for v in _NUMBER.findall(u)] for u in (a, b))
        assert x == pytest.approx(y, rel=rel, abs=abs), where
    else:
        assert a == b, where
