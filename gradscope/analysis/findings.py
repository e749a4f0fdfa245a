"""Findings: what an analysis says about a model, in words, with the numbers behind it and the fix.

Each rule is a small pure function of one analysis in its JSON form (``Analysis.to_dict()`` or an entry of
``report.json``, where ``None`` stands for NaN or −inf) that returns a `Finding` or None. `RULES` lists
them in the order they are reported; `evaluate` runs them all. Rules only read numbers that the analysis
already holds, so they also run on saved reports; a rule whose section is missing returns None.

A finding has the fields ``id`` (stable, kebab-case: checks and users address it), ``severity`` (one of
`SEVERITIES`), ``message`` (what was found, with its number), ``evidence`` (the numbers that triggered
it, with the threshold they crossed), ``suggestion`` (the concrete change) and ``reference`` (paper and
notebook). The thresholds are module constants, stated in each rule's docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gradscope.analysis._finding import SEVERITIES, Finding, Rule, _float, _series, finding
from gradscope.analysis.rules import indrnn_range, pascanu_bound, path_split, saturated_gates
from gradscope.analysis.verdict import CONFIDENCE_Z, RATE_THRESHOLD

#: curse of memory: the parameter sensitivity outgrows the state by more than this many decades
CURSE_EXCESS = 1.0
#: chaos: largest Lyapunov exponent above this (nats per step): the verdict's rate threshold ε = 0.01
#: decades per step in nats, so a model the verdict calls stable is never called chaotic
CHAOS_LAMBDA = RATE_THRESHOLD * math.log(10.0)
#: dead units: at least this fraction of a relu cell's units is switched off for a whole sequence
DEAD_FRACTION = 0.1
#: forget gate: mean forget-gate value at or below this (0.5 is σ(0), the value with no forget bias)
FORGET_MEAN = 0.6


# --- the rules ----------------------------------------------------------------------------------


def curse_of_memory(a: Mapping[str, Any]) -> Finding | None:
    r"""Parameter sensitivity growing much faster than the state (Zucchet & Orvieto 2024).

    With ``g(t) = log10 ‖∂S_t/∂θ‖_F − log10 ‖S_t‖₂`` (batch means of the ``sensitivity`` section), the
    excess ``g(t_end) − g(t_start)`` is how many decades more the sensitivity grew than the state between
    the first step where both are finite (``t_start``, normally 1) and the last (``t_end``, normally T).
    Fires when the excess exceeds `CURSE_EXCESS` = 1 decade. For ``h_t = λ h_{t−1} + x_t`` driven by
    white noise the RMS ratio tends to √(1 + λ²)/(1 − λ²), so the excess approaches log10 of that as
    |λ| → 1, whether or not the input is normalised (normalisation divides both by the same γ).
    """
    s = a.get("sensitivity")
    if not isinstance(s, Mapping):
        return None
    tot, st = _series(s.get("log10_total")), _series(s.get("log10_state"))
    ok = [t for t in range(1, min(len(tot), len(st))) if math.isfinite(tot[t]) and math.isfinite(st[t])]
    if len(ok) < 2:
        return None
    t0, t1 = ok[0], ok[-1]
    excess = (tot[t1] - st[t1]) - (tot[t0] - st[t0])
    if not excess > CURSE_EXCESS:
        return None
    per = {n: _series(v) for n, v in (s.get("by_parameter") or {}).items()}
    finite_end = {n: v[t1] for n, v in per.items() if len(v) > t1 and math.isfinite(v[t1])}
    worst = max(finite_end, key=lambda n: finite_end[n]) if finite_end else ""
    return finding(
        id="curse-of-memory",
        message=(
            f"the state's sensitivity to the parameters grew {excess:.2f} decades more than the state itself "
            f"between t = {t0} and t = {t1} (most sensitive: {worst or '?'}): long memory makes the loss "
            "very sensitive to the slow recurrent parameters"
        ),
        evidence={
            "excess_decades": excess,
            "threshold_decades": CURSE_EXCESS,
            "t_start": t0,
            "t_end": t1,
            "log10_sensitivity_start": tot[t0],
            "log10_sensitivity_end": tot[t1],
            "log10_state_start": st[t0],
            "log10_state_end": st[t1],
            "parameter": worst,
            "log10_parameter_sensitivity_end": finite_end.get(worst, float("nan")),
        },
    )


def chaos(a: Mapping[str, Any]) -> Finding | None:
    """Largest Lyapunov exponent λ_max > `CHAOS_LAMBDA` = ε·ln 10 ≈ 0.023 nats per step (the verdict's rate
    threshold ε = 0.01 decades per step), by more than `CONFIDENCE_Z` standard errors where the analysis
    has one: perturbations of the state grow like exp(λ_max t), so gradients over long lags explode
    (Pascanu et al. 2013 §2; Engelken, Wolf & Abbott 2020). Below the threshold the growth is at most a
    factor 10 per 100 steps, which the verdict calls stable; neutral models (identity IRNN, |λ| = 1) never
    fire."""
    s = a.get("summary") or {}
    lam, se = s.get("lyapunov_max"), s.get("lyapunov_max_stderr")
    if not isinstance(lam, (int, float)) or isinstance(lam, bool):
        return None
    se = float(se) if isinstance(se, (int, float)) and not isinstance(se, bool) and math.isfinite(se) else 0.0
    if not lam - CONFIDENCE_Z * se > CHAOS_LAMBDA:
        return None
    lam = float(lam)
    T = int(a.get("length") or 0)
    return finding(
        id="chaos",
        message=(
            f"largest Lyapunov exponent λ_max = {lam:.4g} ± {se:.2g} nats per step > {CHAOS_LAMBDA:.3g}: "
            f"perturbations of the state grow by a factor exp(λ_max·T) = 10^{lam * T / math.log(10):.3g} over "
            f"T = {T} steps (chaotic or exploding dynamics)"
        ),
        evidence={
            "lyapunov_max": lam,
            "lyapunov_max_stderr": se,
            "threshold": CHAOS_LAMBDA,
            "length": T,
            "log10_growth_over_length": lam * T / math.log(10),
        },
    )


def dead_units(a: Mapping[str, Any]) -> Finding | None:
    """Relu cells: fraction of units whose pre-activation is ≤ 0 at every step of a sequence (mean over the
    sequences; `gate_statistics`'s ``dead_fraction``) at least `DEAD_FRACTION` = 0.1. Such a unit outputs
    exactly zero, so it carries no signal and no gradient; several layers: the worst one is reported."""
    gates = a.get("gates")
    if not isinstance(gates, Mapping):
        return None
    relu = {
        k: v for k, v in gates.items() if isinstance(v, Mapping) and isinstance(v.get("dead_fraction"), (int, float))
    }
    if not relu:
        return None
    key = max(relu, key=lambda k: relu[k]["dead_fraction"])
    dead = float(relu[key]["dead_fraction"])
    if not dead >= DEAD_FRACTION:
        return None
    inactive = relu[key].get("inactive_fraction")
    where = key.removesuffix("relu").rstrip(".") or "the cell"
    return finding(
        id="dead-units",
        message=(
            f"{dead:.1%} of the relu units of {where} are switched off for whole sequences (pre-activation ≤ 0 "
            "at every step): they pass neither signal nor gradient"
        ),
        evidence={
            "dead_fraction": dead,
            "inactive_fraction": _float(inactive),
            "threshold": DEAD_FRACTION,
            "gate": key,
        },
    )


def _lstm_gate(model: Mapping[str, Any], key: str) -> bool:
    """Whether the forget-gate entry ``key`` (``"f"``, ``"layer1.f"``, ``"fwd.layer0.f"``) belongs to an
    LSTM-type cell, found by walking the model description along the key's prefix."""
    desc: Any = model
    for seg in key.split(".")[:-1]:
        if not isinstance(desc, Mapping):
            return False
        if seg.startswith("layer") and seg[5:].isdigit() and isinstance(desc.get("layers"), list):
            layers, i = desc["layers"], int(seg[5:])
            desc = layers[i] if i < len(layers) else {}
        elif seg in ("fwd", "bwd"):
            desc = desc.get("forward" if seg == "fwd" else "backward")
    return isinstance(desc, Mapping) and "lstm" in str(desc.get("cell", ""))


def forget_gate(a: Mapping[str, Any]) -> Finding | None:
    """LSTM-type cells: mean forget-gate value f̄ ≤ `FORGET_MEAN` = 0.6, i.e. at σ(0) = 0.5 (no forget bias)
    or closed. The cell state then keeps a fraction f̄ per step: a memory of −1/ln f̄ steps (1.4 steps at
    0.5). Several layers: the one with the smallest mean is reported."""
    gates = a.get("gates")
    if not isinstance(gates, Mapping):
        return None
    model = a.get("model") or {}
    fs = {
        k: v
        for k, v in gates.items()
        if (k == "f" or k.endswith(".f"))
        and isinstance(v, Mapping)
        and isinstance(v.get("mean"), (int, float))
        and _lstm_gate(model, k)
    }
    if not fs:
        return None
    key = min(fs, key=lambda k: fs[k]["mean"])
    mean = float(fs[key]["mean"])
    if not mean <= FORGET_MEAN:
        return None
    timescale = -1.0 / math.log(mean) if 0.0 < mean < 1.0 else float("nan")
    where = key.removesuffix("f").rstrip(".") or "the cell"
    return finding(
        id="forget-gate",
        message=(
            f"the forget gates of {where} average {mean:.3f} (≤ {FORGET_MEAN}): the cell state keeps only that "
            f"fraction per step, a memory of about {timescale:.2g} steps, so the cell-state highway closes"
        ),
        evidence={
            "forget_mean": mean,
            "threshold": FORGET_MEAN,
            "memory_steps": timescale,
            "open_fraction": _float(fs[key].get("open_fraction")),
            "saturated_fraction": _float(fs[key].get("saturated_fraction")),
            "gate": key,
        },
    )


#: the rules, in the order their findings are reported
RULES: tuple[Rule, ...] = (
    curse_of_memory,
    chaos,
    dead_units,
    forget_gate,
    saturated_gates,
    pascanu_bound,
    path_split,
    indrnn_range,
)


def evaluate(analysis: Mapping[str, Any], rules: tuple[Rule, ...] = RULES) -> tuple[Finding, ...]:
    """Run ``rules`` on one analysis in its JSON form; the findings that fired, in rule order."""
    out = []
    for rule in rules:
        f = rule(analysis)
        if f is not None:
            if f.severity not in SEVERITIES:
                raise ValueError(f"rule {rule.__name__} returned severity {f.severity!r}: use one of {SEVERITIES}")
            out.append(f)
    return tuple(out)


__all__ = [
    "CHAOS_LAMBDA",
    "CURSE_EXCESS",
    "DEAD_FRACTION",
    "FORGET_MEAN",
    "RULES",
    "SEVERITIES",
    "Finding",
    "Rule",
    "chaos",
    "curse_of_memory",
    "dead_units",
    "evaluate",
    "forget_gate",
    "indrnn_range",
    "pascanu_bound",
    "path_split",
    "saturated_gates",
]
