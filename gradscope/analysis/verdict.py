"""Verdicts from per-step rates, with their uncertainty (docs/verdicts.md).

The verdict depends on rates, not on how long the sequence is:

* the **decay per step** r: the least-squares slope of log10 ‖∂S_T/∂S_k‖₂ against the lag T−k (decades
  per step), reported from the batch curve as before. Its standard error comes from the fit of each
  sequence's own curve, with the residuals' lag-1 autocorrelation ρ inflating the ordinary least-squares
  error by √((1+ρ)/(1−ρ)) (the effective number of independent points of an AR(1) residual, Santer et
  al. 2000), and from the spread of the per-sequence slopes: se² = max(var(r_b)/B, mean(se_b²)/B);
* the **largest Lyapunov exponent** λ_max (nats per step; Benettin's QR method) with its standard error
  from the per-step growth increments of the running estimate (same AR(1) correction) and the batch
  spread. For products of random matrices both estimate the same rate (Oseledets), so λ_max/ln 10 is an
  independent check on r.

With the rate threshold ε = `RATE_THRESHOLD` decades per step and z = `CONFIDENCE_Z` standard errors:
``vanishing`` if r + z·se < −ε, ``exploding`` if r − z·se > ε, ``stable`` if −ε < r − z·se and
r + z·se < ε; otherwise ``inconclusive`` (the interval straddles ±ε: too short a sequence to tell).
λ_max is classified the same way (in decades, λ_max/ln 10); when both are decided and disagree the
verdict is ``inconclusive``. A state that overflows (inf/NaN in the rollout) is ``exploding`` with the
step where it happened; a gradient that is exactly zero in every sequence from some lag on is
``vanishing`` with that lag and its cause (relu units switched off: dead units), never a decay rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: ε: a rate of at most this many decades per step (a factor 10 per 100 steps) counts as neutral
RATE_THRESHOLD = 0.01
#: z: how many standard errors a rate must clear the threshold by
CONFIDENCE_Z = 2.0
#: fewer finite lags than this: no rate can be fitted
MIN_LAGS = 3
#: relu units dead for whole sequences from this fraction on are named in the reason (as the finding)
DEAD_FRACTION = 0.1
VERDICTS = ("vanishing", "exploding", "stable", "inconclusive")


def thresholds() -> dict[str, Any]:
    """The verdict's thresholds, as the report states them."""
    return {
        "rate_threshold": RATE_THRESHOLD,
        "rate_units": "decades (log10) per step",
        "lyapunov_threshold": RATE_THRESHOLD * math.log(10.0),
        "lyapunov_units": "nats per step",
        "confidence_z": CONFIDENCE_Z,
        "rule": (
            "vanishing if rate + z*se < -threshold, exploding if rate - z*se > threshold, stable if both "
            "ends lie within +-threshold, else inconclusive; overflow is exploding; a gradient exactly "
            "zero in every sequence is vanishing (dead units)"
        ),
    }


def ols_rate(y_by_lag) -> tuple[float, float]:
    """``(slope, standard error)`` of y (indexed by lag 1..n; non-finite entries dropped) against lag.

    se = √(Σe²/(n−2) / Σ(x−x̄)²) · √((1+ρ)/(1−ρ)) with ρ the lag-1 autocorrelation of the residuals e,
    clipped to [0, 1 − 1/n] (Santer et al. 2000). Fewer than `MIN_LAGS` finite points: (NaN, NaN)."""
    y = np.asarray(y_by_lag, np.float64)
    x = np.arange(1, y.size + 1, dtype=np.float64)
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    n = y.size
    if n < MIN_LAGS:
        return float("nan"), float("nan")
    xm = x - x.mean()
    sxx = float(np.sum(xm * xm))
    b = float(np.sum(xm * (y - y.mean())) / sxx)
    e = y - y.mean() - b * xm
    ss = float(np.sum(e * e))
    if not ss > 0:
        return b, 0.0
    rho = min(max(float(np.sum(e[1:] * e[:-1]) / ss), 0.0), 1.0 - 1.0 / n)
    return b, math.sqrt(ss / (n - 2) / sxx) * math.sqrt((1 + rho) / (1 - rho))


def mean_rate(increments) -> tuple[float, float]:
    """``(mean, standard error)`` of a series of per-step increments, AR(1)-corrected as `ols_rate`."""
    g = np.asarray(increments, np.float64)
    g = g[np.isfinite(g)]
    n = g.size
    if n == 0:
        return float("nan"), float("nan")
    if n < MIN_LAGS:
        return float(g.mean()), float("nan")
    e = g - g.mean()
    ss = float(np.sum(e * e))
    if not ss > 0:
        return float(g.mean()), 0.0
    rho = min(max(float(np.sum(e[1:] * e[:-1]) / ss), 0.0), 1.0 - 1.0 / n)
    return float(g.mean()), math.sqrt(ss / (n - 1) / n) * math.sqrt((1 + rho) / (1 - rho))


def _pool(values, errors) -> float:
    """Standard error of the batch mean of B per-sequence estimates with their own errors."""
    v, e = np.asarray(values, np.float64), np.asarray(errors, np.float64)
    ok = np.isfinite(v) & np.isfinite(e)
    v, e = v[ok], e[ok]
    B = v.size
    if B == 0:
        return float("nan")
    within = float(np.mean(e * e)) / B
    between = float(np.var(v, ddof=1)) / B if B > 1 else 0.0
    return math.sqrt(max(within, between))


def decay_stderr(per_sequence_by_k) -> float:
    """se of the decay per step from the per-sequence curves ``(B, T)`` or ``(T,)`` indexed by k."""
    c = np.atleast_2d(np.asarray(per_sequence_by_k, np.float64))[:, ::-1]
    fits = [ols_rate(row) for row in c]
    return _pool([f[0] for f in fits], [f[1] for f in fits])


def lyapunov_rate(trace, valid_steps=None) -> tuple[float, float]:
    """``(λ_max, se)`` in nats per step from a Lyapunov ``trace`` ``(B, n, k)`` or ``(n, k)``: the running
    estimates after each step. λ_max is the last running estimate of each sequence (or the one after
    its ``valid_steps[b]`` steps), averaged over the batch; se from the increments t·m_t − (t−1)·m_{t−1}."""
    tr = np.asarray(trace, np.float64)
    tr = tr[None] if tr.ndim == 2 else tr
    m = tr[..., 0]  # (B, n) running estimate of the largest exponent
    vals, errs = [], []
    for b in range(m.shape[0]):
        n = m.shape[1] if valid_steps is None else int(valid_steps[b])
        if n < 1:
            continue
        run = m[b, :n]
        with np.errstate(invalid="ignore"):  # −inf (an exactly zero step) minus −inf
            inc = np.diff(np.arange(1, n + 1) * run, prepend=0.0)
        vals.append(run[-1])
        errs.append(mean_rate(inc)[1])
    if not vals:
        return float("nan"), float("nan")
    return float(np.mean(vals)), _pool(vals, errs)


def _side(rate: float, se: float, eps: float) -> str | None:
    """The class of ``rate ± z·se`` against ±eps; None when undecided (or not computed)."""
    if not (math.isfinite(rate) and math.isfinite(se)):
        return None
    lo, hi = rate - CONFIDENCE_Z * se, rate + CONFIDENCE_Z * se
    if hi < -eps:
        return "vanishing"
    if lo > eps:
        return "exploding"
    if lo > -eps and hi < eps:
        return "stable"
    return None


def _relu_text(gates: Mapping[str, Any] | None) -> tuple[str, float]:
    """("", 0) or a phrase naming the relu units switched off, and the worst dead fraction."""
    relu = {k: v for k, v in (gates or {}).items() if isinstance(v, Mapping) and "dead_fraction" in v}
    if not relu:
        return "", 0.0
    key = max(relu, key=lambda k: relu[k]["dead_fraction"])
    dead, inactive = float(relu[key]["dead_fraction"]), float(relu[key].get("inactive_fraction", float("nan")))
    return (f"relu units switched off ({dead:.0%} dead for whole sequences, {inactive:.0%} inactive per step)", dead)


def classify(
    curve_by_k,
    *,
    per_sequence=None,
    lyapunov_trace=None,
    lyapunov_valid=None,
    overflow_step: int | None = None,
    gates: Mapping[str, Any] | None = None,
    length: int | None = None,
) -> dict[str, Any]:
    """The verdict entries of a summary: ``verdict``, ``verdict_reason``, ``decay_per_step_stderr``,
    ``lyapunov_max`` and ``lyapunov_max_stderr`` (when a trace is given), ``overflow_step`` (only when the
    state overflowed) and ``zero_lag`` (only when the gradient is exactly zero in every sequence).

    ``curve_by_k``: the batch log10 norm curve (k = 0..T−1); ``per_sequence``: the per-sequence curves
    (default: the batch curve); ``lyapunov_trace``: the running estimates (`lyapunov_rate`)."""
    by_lag = np.asarray(curve_by_k, np.float64)[::-1]
    T = int(length or by_lag.size)
    r, _ = ols_rate(by_lag)
    se = decay_stderr(by_lag[::-1] if per_sequence is None else per_sequence)
    out: dict[str, Any] = {"decay_per_step_stderr": se}
    lam = lam_se = float("nan")
    if lyapunov_trace is not None:
        lam, lam_se = lyapunov_rate(lyapunov_trace, lyapunov_valid)
        out["lyapunov_max"], out["lyapunov_max_stderr"] = lam, lam_se
    eps = RATE_THRESHOLD
    relu, dead = _relu_text(gates)
    if overflow_step is not None:
        out["overflow_step"] = int(overflow_step)
        out["verdict"] = "exploding"
        out["verdict_reason"] = (
            f"the state overflowed (inf/NaN) at step {overflow_step} of {T}: the forward pass explodes, so the "
            "Jacobians after it are meaningless and no decay rate is reported"
            + (f"; λ_max = {lam:.3g} ± {lam_se:.2g} nats/step before the overflow" if math.isfinite(lam) else "")
        )
        return out
    zero = ~(by_lag > -np.inf)  # NaN counts as not finite as well
    if zero.any() and not np.isnan(by_lag).any():
        lag0 = int(np.argmax(zero)) + 1
        out["zero_lag"] = lag0
        out["verdict"] = "vanishing"
        out["verdict_reason"] = f"the gradient is exactly zero from lag {lag0} on in every sequence: " + (
            relu + " (dead units), not a gradual decay" if relu else "a step Jacobian is exactly singular"
        )
        return out
    side_r, side_l = _side(r, se, eps), _side(lam / math.log(10.0), lam_se / math.log(10.0), eps)
    rate = f"decay {r:+.4f} ± {se:.2g} decades/step"
    lam_txt = f"λ_max {lam:+.4f} ± {lam_se:.2g} nats/step" if math.isfinite(lam) else "λ_max not computed"
    band = f"threshold ±{eps:g} decades/step, {CONFIDENCE_Z:g} standard errors"
    if side_r is None:
        verdict = "inconclusive"
        why = (
            f"{rate} cannot be told apart from the threshold ({band}) at T = {T}: a longer sequence or more "
            "sequences would narrow it"
            if math.isfinite(r)
            else f"too few finite lags (T = {T}) to fit a rate"
        )
    elif side_l is not None and side_l != side_r:
        verdict = "inconclusive"
        why = f"the two rates disagree: {rate} says {side_r}, {lam_txt} says {side_l} ({band}) at T = {T}"
    else:
        verdict = side_r
        word = {"vanishing": "below −", "exploding": "above +", "stable": "within ±"}[side_r]
        why = f"{rate} ({lam_txt}) lies {word}{eps:g} decades/step by more than {CONFIDENCE_Z:g} standard errors"
    if relu and dead >= DEAD_FRACTION:
        why += f"; {relu}: those units pass exactly zero gradient, the rate describes the live units"
    out["verdict"], out["verdict_reason"] = verdict, why
    return out


__all__ = [
    "CONFIDENCE_Z",
    "RATE_THRESHOLD",
    "VERDICTS",
    "classify",
    "decay_stderr",
    "lyapunov_rate",
    "mean_rate",
    "ols_rate",
    "thresholds",
]
