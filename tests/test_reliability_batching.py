"""A sweep's numbers do not depend on how its configurations are batched (``--vmap``, i.e. the memory budget):
singular values an SVD cannot resolve (below ``d · eps · σ_max``) are null every time, the rest agree to
float32 rounding."""

import math

import numpy as np
import pytest

from gradscope.analysis.summary import resolved


def _leaves(x, path=""):
    if isinstance(x, dict):
        for k in sorted(x):
            yield from _leaves(x[k], f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, x


def test_values_below_the_dtype_resolution_are_null_and_noted():
    # log10 σ = 0, -3, -9 in float32 (d = 3): d * eps = 3.6e-7, so only -9 is below resolution
    sv = np.array([[0.0, -3.0, -9.0]], np.float32)
    out, note = resolved(sv, dense=True)
    assert out[0, 0] == 0.0 and out[0, 1] == -3.0 and math.isnan(out[0, 2])
    assert "below float32 resolution" in note
    out64, _ = resolved(sv.astype(np.float64), dense=True)  # float64 resolves 1e-9 of σ_max
    assert not np.isnan(out64).any()
    kept, note = resolved(sv, dense=False)  # diagonal products need no SVD: every value is exact
    assert not np.isnan(kept).any() and "no SVD" in note


@pytest.mark.slow
def test_sweep_numbers_do_not_depend_on_vmap():
    from gradscope.experiments import sweep as sw

    configs = sw.grid(["lstm", "gru"], [0.5, 1.5], [40], [0, 1], hidden=8, batch=2)
    one = sw.run_sweep(configs, max_vmap=1)
    many = sw.run_sweep(configs, max_vmap=len(configs))
    assert [a["name"] for a in one] == [a["name"] for a in many]
    a, b = dict(_leaves(one)), dict(_leaves(many))
    assert a.keys() == b.keys()
    nulls = [p for p in a if (a[p] is None) != (b[p] is None)]
    assert not nulls, f"null in one batching and a number in the other: {nulls[:5]}"
    assert any(p.endswith("]") and "spectra" in p and a[p] is None for p in a), "the test needs unresolved values"
    for p, x in a.items():
        y = b[p]
        if isinstance(x, float) and "seconds" not in p and "time" not in p:
            assert abs(x - y) <= 1e-3 * max(1.0, abs(x)), (p, x, y)
        elif not isinstance(x, float):
            assert x == y or "seconds" in p or "time" in p, (p, x, y)
