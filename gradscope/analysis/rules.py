"""Finding rules on the bounds, the gates and the path split (`gradscope.analysis.findings` lists them).

Like the other rules, each is a pure function of one analysis in its JSON form that returns a `Finding`
or None; the thresholds are module constants, stated in each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gradscope.analysis._finding import Finding, _float, finding
from gradscope.analysis.verdict import RATE_THRESHOLD

#: saturated gates: at least this fraction of a gate's values has σ' = s(1 − s) below 0.01
SATURATED_FRACTION = 0.5
#: path split: the remainder must grow by more than this many decades over the sequence to "explode"
EXPLODE_DECADES = 1.0
#: path split: the surviving path must exceed the closed one by at least this many decades
PATH_GAP_DECADES = 1.0
#: IndRNN: the growth over T steps that the recurrent weights may allow (γ of Li et al. 2018; 2 in their code)
INDRNN_GAMMA = 2.0


def _threshold(a: Mapping[str, Any]) -> float:
    thr = (a.get("summary") or {}).get("horizon_threshold")
    return float(thr) if isinstance(thr, (int, float)) and not isinstance(thr, bool) else -3.0


def _is_forget(key: str) -> bool:
    return key == "f" or key.endswith(".f")


def saturated_gates(a: Mapping[str, Any]) -> Finding | None:
    """Sigmoid gates whose values sit at 0 or 1: at least `SATURATED_FRACTION` = 0.5 of the values have
    σ' = s(1 − s) < 0.01 (`gate_statistics`' ``saturated_fraction``). A saturated gate passes (almost) no
    gradient to its own weights, so it cannot learn (Hochreiter & Schmidhuber 1997; Gers et al. 2000).
    Forget gates whose mean is above 0.5 are left out: held open they are the cell-state highway, which
    is what a forget bias or the chrono initialisation asks for. The worst gate is reported."""
    gates = a.get("gates")
    if not isinstance(gates, Mapping):
        return None
    cand = {
        k: v
        for k, v in gates.items()
        if isinstance(v, Mapping)
        and isinstance(v.get("saturated_fraction"), (int, float))
        and not (_is_forget(k) and _float(v.get("mean")) > 0.5)
    }
    if not cand:
        return None
    key = max(cand, key=lambda k: cand[k]["saturated_fraction"])
    frac, mean = float(cand[key]["saturated_fraction"]), _float(cand[key].get("mean"))
    if not frac >= SATURATED_FRACTION:
        return None
    side = "closed (near 0)" if mean < 0.5 else "open (near 1)"
    return finding(
        id="saturated-gates",
        message=(
            f"gate {key!r} is saturated for {frac:.1%} of its values (σ' < 0.01, mostly {side}, mean {mean:.3f}): "
            "it passes almost no gradient to its own weights and cannot learn to switch"
        ),
        evidence={"gate": key, "saturated_fraction": frac, "mean": mean, "threshold": SATURATED_FRACTION},
    )


def pascanu_bound(a: Mapping[str, Any]) -> Finding | None:
    r"""Pascanu, Mikolov & Bengio (2013, §2.1): for ``h_t = φ(W h_{t−1} + …)`` with ``|φ'| ≤ γ``,
    ``‖∂h_t/∂h_k‖₂ ≤ (γ σ_max(W))^{t−k}``. When γ·σ_max(W) < 1 the gradient vanishes whatever the inputs:
    below 10^threshold from lag ⌈threshold / log10(γ σ_max)⌉ on. Fires exactly then (the ``bound`` section
    of kind "pascanu")."""
    b = a.get("bound")
    if not isinstance(b, Mapping) or b.get("kind") != "pascanu":
        return None
    g, s = _float(b.get("gamma")), _float(b.get("sigma_max"))
    gs = g * s
    if not (math.isfinite(gs) and gs < 1.0):
        return None
    thr, T = _threshold(a), int(a.get("length") or 0)
    per = math.log10(gs) if gs > 0 else -math.inf
    lag = math.ceil(thr / per) if per < 0 and math.isfinite(per) else 1
    return finding(
        id="pascanu-bound",
        message=(
            f"σ_max(W)·γ = {s:.3g}·{g:.3g} = {gs:.3g} < 1: Pascanu's bound ‖∂h_t/∂h_k‖ ≤ ({gs:.3g})^(t−k) "
            f"guarantees vanishing gradients, below 10^{thr:g} from lag {lag} on, whatever the inputs"
        ),
        evidence={
            "sigma_max": s,
            "gamma": g,
            "gamma_sigma_max": gs,
            "log10_bound_per_step": per,
            "log10_bound_at_length": per * T,
            "length": T,
            "threshold": thr,
            "lag_below_threshold": lag,
        },
    )


def path_split(a: Mapping[str, Any]) -> Finding | None:
    """LSTM/GRU path split of the direct-path block at the longest lag T (``highway_log10_max_lag`` h,
    the forget-gate product; ``remainder_log10_max_lag`` r, every other path; decades). Fires as

    * ``remainder-exploding``: the remainder explodes while the highway holds: r > `EXPLODE_DECADES` = 1,
      r/T > the verdict's rate threshold ε = 0.01 decades per step, and h ≥ the horizon threshold;
    * ``highway-closed``: the highway has closed while the remainder still carries the gradient: h below
      the horizon threshold, r at or above it, and r − h ≥ `PATH_GAP_DECADES` = 1.
    """
    s = a.get("summary") or {}
    h, r = s.get("highway_log10_max_lag"), s.get("remainder_log10_max_lag")
    T = int(a.get("length") or 0)
    if not isinstance(h, (int, float)) or not isinstance(r, (int, float)) or T < 1:
        return None
    h, r, thr = float(h), float(r), _threshold(a)
    ev = {
        "highway_log10_max_lag": h,
        "remainder_log10_max_lag": r,
        "remainder_decades_per_step": r / T,
        "highway_decades_per_step": h / T,
        "length": T,
        "threshold": thr,
        "rate_threshold": RATE_THRESHOLD,
    }
    if r > EXPLODE_DECADES and r / T > RATE_THRESHOLD and h >= thr:
        return finding(
            id="remainder-exploding",
            message=(
                f"the cell-state highway holds (10^{h:.2f} at lag {T}) but the remainder — the paths through h and "
                f"the gates — grows to 10^{r:.2f} ({r / T:+.3f} decades/step): the gradient explodes through the gates"
            ),
            evidence=ev | {"explode_decades": EXPLODE_DECADES},
        )
    if h < thr <= r and r - h >= PATH_GAP_DECADES:
        return finding(
            id="highway-closed",
            message=(
                f"the cell-state highway has closed (10^{h:.2f} at lag {T}, below 10^{thr:g}) while the remainder "
                f"still carries 10^{r:.2f}: the long-range gradient flows through the gates, not the cell state"
            ),
            evidence=ev | {"gap_decades": PATH_GAP_DECADES},
        )
    return None


def indrnn_range(a: Mapping[str, Any]) -> Finding | None:
    """IndRNN (Li et al. 2018, §3.1, eq. 4): ``|∂h_{n,T}/∂h_{n,0}| ≤ (γ_φ |u_n|)^T`` (γ_φ = sup|φ'|, 1 for
    relu). With the growth budget γ = `INDRNN_GAMMA` = 2 (their code), the recurrent weights must satisfy
    γ_φ |u_n| ≤ γ^(1/T); fires as ``indrnn-range`` when γ_φ·max|u| exceeds it (the gradient may grow by
    more than γ over T steps) or is below 10^(threshold/T) (every unit forgets: the bound is below
    10^threshold at lag T). Reads the ``bound`` section of kind "indrnn" (σ_max = max|u|)."""
    b = a.get("bound")
    if not isinstance(b, Mapping) or b.get("kind") != "indrnn":
        return None
    g, u = _float(b.get("gamma")), _float(b.get("sigma_max"))
    T, thr = int(a.get("length") or 0), _threshold(a)
    if T < 1 or not math.isfinite(g * u):
        return None
    hi, lo = INDRNN_GAMMA ** (1.0 / T), 10.0 ** (thr / T)
    gu = g * u
    ev = {
        "max_abs_u": u,
        "gamma_activation": g,
        "upper_limit": hi,
        "lower_limit": lo,
        "gamma_budget": INDRNN_GAMMA,
        "length": T,
        "threshold": thr,
        "log10_bound_at_length": T * math.log10(gu) if gu > 0 else -math.inf,
    }
    if gu > hi:
        return finding(
            id="indrnn-range",
            message=(
                f"IndRNN max|u| = {u:.5g} exceeds γ^(1/T) = {INDRNN_GAMMA:g}^(1/{T}) = {hi:.5g}: the gradient over "
                f"T = {T} steps may grow by up to 10^{ev['log10_bound_at_length']:.3g}, more than γ = {INDRNN_GAMMA:g}"
            ),
            evidence=ev,
            suggestion=(
                f"clip u to [−γ^(1/T), γ^(1/T)] after every update (gs.clip_recurrent(cell, {hi:.5g})), or build "
                f"the cell with max_length={T}"
            ),
        )
    if gu < lo:
        return finding(
            id="indrnn-range",
            message=(
                f"IndRNN max|u| = {u:.5g} is below 10^(threshold/T) = {lo:.5g}: every unit's gradient falls below "
                f"10^{thr:g} within T = {T} steps, so no unit remembers that far"
            ),
            evidence=ev,
            suggestion=f"raise u_min towards ε^(1/T) (Li et al. use u_min = ε^(1/T) for long memory; here {lo:.4g})",
        )
    return None


__all__ = [
    "EXPLODE_DECADES",
    "INDRNN_GAMMA",
    "PATH_GAP_DECADES",
    "SATURATED_FRACTION",
    "indrnn_range",
    "pascanu_bound",
    "path_split",
    "saturated_gates",
]
