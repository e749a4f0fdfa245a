"""The numbers an `Analysis` reports, from the engine's arrays: summary metrics, the verdict on all the
evidence, and the batch reductions.

Summary metrics (all from the batch-mean log10 spectral norm of ``∂S_T/∂S_k`` against the lag T−k):

* ``log10_norm_max_lag``: log10 ‖∂S_T/∂S_0‖₂;
* ``decay_per_step``: least-squares slope of log10 norm against lag (log10 units per step);
* ``horizon``: the largest lag τ such that the norm stays ≥ 10^threshold at every lag ≤ τ;
  ``horizon_censored``: True when the norm never falls below the threshold (the horizon is then ≥ T);
* ``lyapunov_max``: the largest Lyapunov exponent (nats per step);
* ``decay_per_step_stderr``, ``lyapunov_max_stderr``: their standard errors;
* ``verdict`` ("vanishing", "exploding", "stable" or "inconclusive") and ``verdict_reason``: from the two
  per-step rates and their uncertainty against the thresholds of `gradscope.analysis.verdict` (stated in
  the record's ``verdict_rule`` section and docs/verdicts.md), so that it does not depend on T; a state
  that overflows is "exploding" with its ``overflow_step``, a gradient exactly zero in every sequence
  "vanishing" with its ``zero_lag`` and cause (dead relu units).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradscope.analysis.verdict import classify


def json_num(x):
    """JSON-ready float: NaN/±inf become None (documented as 'exactly zero / not computed')."""
    x = float(x)
    return x if math.isfinite(x) else None


def json_list(a):
    """Nested lists of floats (None for NaN/±inf), or one `json_num` for a 0-d array. Built in one pass
    (``astype(object)``), not a call per number: a default compare converts ~70 000 numbers."""
    a = np.asarray(a, np.float64)
    if a.ndim == 0:
        return json_num(a)
    out = a.astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def summarise(curve_by_k: np.ndarray, threshold: float) -> dict[str, Any]:
    """Summary metrics from a log10 norm curve indexed by k = 0..T−1 (lag T−k); the verdict from the curve
    alone (`gradscope.analysis.verdict.classify`; `analyse` adds the Lyapunov rate, the batch spread,
    overflow and dead units)."""
    by_lag = np.asarray(curve_by_k, np.float64)[::-1]  # lag 1..T
    T = by_lag.size
    lags = np.arange(1, T + 1)
    ok = np.isfinite(by_lag)
    slope = float(np.polyfit(lags[ok], by_lag[ok], 1)[0]) if ok.sum() >= 2 else float("nan")
    above = by_lag >= threshold
    horizon = int(T if above.all() else np.argmin(above))
    out = {
        "log10_norm_lag1": json_num(by_lag[0]),
        "log10_norm_max_lag": float(by_lag[-1]),
        "decay_per_step": slope,
        "horizon": horizon,
        "horizon_threshold": float(threshold),
        # the norm never fell below the threshold: the horizon is only known to be ≥ T
        "horizon_censored": bool(above.all()),
    }
    return out | classify(curve_by_k, length=T)


def diagnose(
    summary: dict, curve, *, per_sequence=None, lyapunov=None, states=None, state_finite=None, gates=None, warmup=0
) -> dict:
    """``summary`` with the verdict of `gradscope.analysis.verdict.classify` on all the evidence: the
    per-sequence curves, the Lyapunov trace, overflow of the flat ``states`` (…, T+1, d) (or their
    finiteness ``state_finite`` (…, T+1)) and the gate statistics."""
    T = int(np.asarray(curve).shape[-1])
    overflow, valid = None, None
    if states is not None:
        state_finite = np.all(np.isfinite(np.asarray(states)), axis=-1)
    if state_finite is not None:
        bad = ~np.asarray(state_finite, bool).reshape(-1, T + 1)  # (B, T+1)
        first = np.where(bad.any(axis=1), np.argmax(bad, axis=1), T + 1)
        if bad.any():
            overflow = int(first.min())
            valid = np.minimum(first, T) - warmup
    v = classify(
        curve,
        per_sequence=per_sequence,
        lyapunov_trace=None if lyapunov is None else lyapunov.trace,
        lyapunov_valid=valid,
        overflow_step=overflow,
        gates=gates,
        length=T,
    )
    out = {k: x for k, x in summary.items() if k not in ("overflow_step", "zero_lag")} | v
    if overflow is not None:  # the lag profile is anchored after the overflow: not a number
        for k in ("log10_norm_lag1", "log10_norm_max_lag", "decay_per_step", "decay_per_step_stderr"):
            out[k] = float("nan")
        for k in ("highway_log10_max_lag", "remainder_log10_max_lag"):
            if k in out:
                out[k] = float("nan")
        out["horizon"], out["horizon_censored"] = T, True
    return out


def batch_mean(a, batched):
    """Aggregate a log10 quantity over the batch as log10 of the mean *norm* (log-mean-exp).

    A sequence whose product is exactly zero (−inf, e.g. a relu unit switched off) then does not
    turn the batch's curve into −inf; the curve is the log of the average gradient norm.
    """
    a = np.asarray(a, np.float64)
    if not batched:
        return a
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.max(a, axis=0)
        ms = np.where(np.isfinite(m), m, 0.0)
        return ms + np.log10(np.mean(10.0 ** (a - ms), axis=0))


def plain_mean(a, batched):
    a = np.asarray(a, np.float64)
    return np.mean(a, axis=0) if batched else a


def resolved(log10_sv, *, dense: bool) -> tuple[np.ndarray, str]:
    """log10 singular values (…, d), descending, with those below the dtype's resolution made NaN (null in
    the report), and the note that says so.

    An SVD in floating point resolves a singular value σ_i only above about ``d · eps · σ_max`` (its absolute
    error is a small multiple of ``eps · ‖M‖₂``; Golub & Van Loan 2013, §8.6): a σ_i below that is rounding
    noise, which changes with the batching of the computation (``--vmap``, free memory). Each such value is
    reported as null, the same way every time. Diagonal models need no SVD (exact products of ``|a_n|`` in
    log space), so their values are all kept.
    """
    a = np.array(log10_sv, dtype=np.float64)
    dtype = np.dtype(getattr(log10_sv, "dtype", np.float32))
    name = dtype.name if dtype.kind == "f" else "float32"
    if not dense or a.ndim == 0 or a.shape[-1] < 2:
        return a, f"every value resolved (no SVD); {name}"
    floor = np.log10(a.shape[-1] * np.finfo(dtype if dtype.kind == "f" else np.float32).eps)
    with np.errstate(invalid="ignore"):
        a[a < a[..., :1] + floor] = np.nan
    return a, f"null: below {name} resolution (sigma_i < d * eps * sigma_max, d = {a.shape[-1]})"


#: a path-split remainder less than this many decades above ``total · eps`` is round-off
ROUNDOFF_MARGIN = 1.5


def remainder_resolved(total, remainder, dtype) -> tuple[np.ndarray, str]:
    """The path split's remainder (log10, against the lag) with the values at float round-off made NaN (null
    in the report), and the note that says so: ``remainder ≤ total + log10(eps) + ROUNDOFF_MARGIN``.

    The remainder is computed as total − highway, a difference whose absolute error is a few ``eps · ‖total‖``.
    For an LSTM it is exactly zero at lag 1 (c_{t−1} reaches c_t only through f_t: the gates read h_{t−1},
    not c_{t−1}); in float32 it comes out near 10^−7 of the total, a number that is no property of the model
    and changes with the order of the operations (the CPU's vector width, the batching of a sweep). Such
    values are reported as null, the same way every time."""
    r = np.array(remainder, dtype=np.float64)
    dt = np.dtype(dtype)
    name = dt.name if dt.kind == "f" else "float32"
    floor = np.log10(np.finfo(dt if dt.kind == "f" else np.float32).eps) + ROUNDOFF_MARGIN
    with np.errstate(invalid="ignore"):
        r[r <= np.asarray(total, np.float64) + floor] = np.nan
    return r, f"null: the remainder at {name} round-off (remainder <= total * eps * 10^{ROUNDOFF_MARGIN})"


def per_sequence(sv, batched: bool) -> dict:
    """Median, minimum and maximum over the sequences of log10 singular values (B, n, k): values some
    sequence actually has, unlike the batch mean (empty when not batched)."""
    if not batched:
        return {}
    a = np.asarray(sv, np.float64)
    with np.errstate(invalid="ignore"):
        return {
            "log10_singular_values_median": json_list(np.median(a, axis=0)),
            "log10_singular_values_min": json_list(np.min(a, axis=0)),
            "log10_singular_values_max": json_list(np.max(a, axis=0)),
        }


def sensitivity_dict(s, batched: bool) -> dict:
    """The ``sensitivity`` section: curves over t = 0..T (entry 0 is None: S_0 does not depend on θ)."""
    return {
        "t": list(range(int(s.length) + 1)),
        "by_parameter": {n: json_list(batch_mean(v, batched)) for n, v in s.by_parameter.items()},
        "log10_total": json_list(batch_mean(s.log10_total, batched)),
        "log10_state": json_list(batch_mean(s.log10_state, batched)),
        "growth": {n: json_list(plain_mean(v, batched)) for n, v in s.growth.items()},
        "state_growth": json_list(plain_mean(s.state_growth, batched)),
        "sizes": {n: int(v) for n, v in s.sizes.items()},
        "units": "log10 Frobenius norm of dS_t/dtheta; state: log10 2-norm of S_t; growth: decades per step",
    }
