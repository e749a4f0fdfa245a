"""The Diagnosis: per analysis, the verdict in one sentence with its evidence, the findings and what to
try, written from the report record alone (no JAX; the HTML page and ``summary.md`` both use it).

The evidence is the analysis's own numbers: the decay per step r ± its standard error (decades per
step), the horizon (``≥ T`` when the norm never fell below the threshold), the largest Lyapunov exponent
λ_max ± se (nats per step), the step where the state overflowed, the lag from which the gradient is
exactly zero; for a stack the per-layer decay (`gradscope.report.views.layer_curves`), for a diagonal cell
the per-unit time constants (`gradscope.report.views.unit_time_constants`). What to try comes from the
findings' suggestions; a verdict that no finding explains gets the usual remedy for its family
(`ADVICE`), with the paper it comes from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from gradscope.report.family import family_of
from gradscope.report.views import layer_curves, unit_time_constants

#: what to try when a verdict has no finding that explains it: (verdict, family kind) → advice
ADVICE = {
    ("vanishing", "dense"): (
        "use a gated cell (LSTM with forget bias 1, GRU) or a diagonal one (IndRNN, LRU), or initialise the "
        "recurrent matrix orthogonally / as the identity with relu (IRNN) so that its singular values are "
        "near 1 (Pascanu et al. 2013; Le et al. 2015)"
    ),
    ("vanishing", "gated"): (
        "keep the gated direct path open: a larger forget-gate bias (--forget-bias) or the chrono initialisation "
        "(--chrono T_max, T_max about the dependency length), which draws forget biases log U[1, T_max − 1] "
        "(Gers et al. 2000; Tallec & Ollivier 2018)"
    ),
    ("vanishing", "gru"): (
        "keep GRU's direct path open: bias the update gate so that 1 − z starts near 1 (the chrono "
        "initialisation of Tallec & Ollivier 2018 applied to z), or use an LSTM with forget bias 1"
    ),
    ("vanishing", "diagonal"): (
        "move the recurrent weights / eigenvalue moduli closer to 1 (IndRNN: |u| in [2^(−1/T), 2^(1/T)]; "
        "LRU: a larger r_min) so that more units keep a time constant ≥ T (Li et al. 2018; Orvieto et al. 2023)"
    ),
    ("exploding", "dense"): (
        "lower the recurrent gain below 1 (--gains), initialise orthogonally and clip the gradient norm "
        "(Pascanu et al. 2013 §3.2)"
    ),
    ("exploding", "gated"): (
        "scale down the recurrent weights, normalise the cell (ln-lstm) and clip the gradient norm "
        "(Pascanu et al. 2013 §3.2; Ba et al. 2016)"
    ),
    ("exploding", "diagonal"): (
        "constrain the recurrent weights / eigenvalue moduli to at most 1 (IndRNN: |u| ≤ 2^(1/T); LRU: r_max < 1) "
        "(Li et al. 2018; Orvieto et al. 2023)"
    ),
    ("inconclusive", ""): "run a longer sequence (--length) or more sequences (--batch) to narrow the rates' errors",
    ("stable", ""): "nothing to fix for gradient flow: the gradient reaches the first step at this length",
}


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """One analysis's diagnosis: ``sentence`` (the verdict with its evidence), ``details`` (per-layer or
    per-unit evidence), ``findings`` as ``(id, severity, message)`` and ``tries`` (what to change)."""

    name: str
    label: str
    verdict: str
    sentence: str
    details: tuple[str, ...]
    findings: tuple[tuple[str, str, str], ...]
    tries: tuple[str, ...]


def _num(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else float("nan")


def _pm(x: float, se: float, digits: str = ".3g") -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:+{digits}}" + (f" ± {se:.2g}" if math.isfinite(se) else "")


def _horizon(s: Mapping, T: int) -> str:
    thr = _num(s.get("horizon_threshold"))
    h = s.get("horizon")
    if s.get("horizon_censored"):
        return f"horizon ≥ {T} steps (the norm never fell below 10^{thr:g} within T = {T})"
    return f"horizon {h} of {T} steps (norm ≥ 10^{thr:g} up to that lag)"


def sentence(a: Mapping) -> str:
    """The verdict in one sentence, with the numbers behind it."""
    s = a.get("summary") or {}
    v = str(s.get("verdict", "?"))
    T = int(a.get("length") or 0)
    r, r_se = _num(s.get("decay_per_step")), _num(s.get("decay_per_step_stderr"))
    lam, lam_se = _num(s.get("lyapunov_max")), _num(s.get("lyapunov_max_stderr"))
    lam_txt = f"λ_max = {_pm(lam, lam_se)} nats/step" if math.isfinite(lam) else "λ_max not computed"
    if s.get("overflow_step") is not None:
        return (
            f"exploding: the state overflowed (inf/NaN) at step {s['overflow_step']} of {T}, so the forward pass "
            f"itself blows up ({lam_txt} before the overflow)"
        )
    if s.get("zero_lag") is not None:
        return (
            f"vanishing: the gradient is exactly zero from lag {s['zero_lag']} on in every sequence "
            f"({_horizon(s, T)}; {lam_txt})"
        )
    rate = f"decay {_pm(r, r_se, '.3g')} decades/step"
    if math.isfinite(r) and r < 0:
        rate += f" (a factor 10 every {-1 / r:.3g} steps)"
    eps = _num((a.get("verdict_rule") or {}).get("rate_threshold"))
    eps_txt = f"{eps:g} decades/step" if math.isfinite(eps) else "the rate threshold"
    head = {
        "vanishing": f"vanishing: the gradient norm falls faster than {eps_txt}",
        "exploding": f"exploding: the gradient norm grows faster than {eps_txt}",
        "stable": f"stable: the gradient norm changes by less than ±{eps_txt}",
        "inconclusive": f"inconclusive: the rates cannot be told apart from ±{eps_txt} at this length",
    }.get(v, v)
    return f"{head} — {rate}, {_horizon(s, T)}, {lam_txt}"


def _details(a: Mapping) -> tuple[str, ...]:
    s = a.get("summary") or {}
    out = [f"why: {s['verdict_reason']}"] if s.get("verdict") == "inconclusive" and s.get("verdict_reason") else []
    layers = layer_curves(a)
    if layers:
        worst = min(layers, key=lambda c: c["decay_per_step"] if math.isfinite(c["decay_per_step"]) else math.inf)
        per = ", ".join(f"{c['layer']} {c['decay_per_step']:+.3g}" for c in layers)
        out.append(
            f"per layer (decades/step of each layer's own recurrence): {per}; {worst['layer']} loses the "
            f"gradient fastest (10^{worst['log10_max_lag']:.3g} at the longest lag)"
        )
    u = unit_time_constants(a)
    if u is not None:
        live = sorted(t for t in u["tau"] if t > 0)
        mid = live[len(live) // 2] if live else 0.0
        med = (
            f"; median τ of the {len(live)} units not cut: {'∞ (no decay)' if math.isinf(mid) else f'{mid:.3g} steps'}"
            if live and u["cut"]
            else (f"; median τ {'∞ (no decay)' if math.isinf(mid) else f'{mid:.3g} steps'}" if live else "")
        )
        out.append(
            f"per unit: {u['long']} of {u['units']} units ({u['long'] / u['units']:.0%}) have a time constant "
            f"τ = −1/λ_i ≥ T = {u['length']} steps"
            + (
                f"; {u['cut']} units ({u['cut'] / u['units']:.0%}) have their gradient cut to exactly zero at some "
                "step (relu switched off)"
                if u["cut"]
                else ""
            )
            + med
        )
    return tuple(out)


def diagnose(a: Mapping) -> Diagnosis:
    """The `Diagnosis` of one analysis record."""
    s = a.get("summary") or {}
    v = str(s.get("verdict", "?"))
    fam = family_of(a)
    found = [f for f in a.get("findings") or [] if isinstance(f, Mapping)]
    tries = [str(f["suggestion"]) for f in found if f.get("suggestion")]
    advice = ADVICE.get((v, fam.family)) or ADVICE.get((v, fam.kind)) or ADVICE.get((v, ""))
    if advice and (not tries or v in ("inconclusive",)):
        tries.append(advice)
    return Diagnosis(
        name=str(a.get("name", "")),
        label=fam.label,
        verdict=v,
        sentence=sentence(a),
        details=_details(a),
        findings=tuple((str(f.get("id", "?")), str(f.get("severity", "?")), str(f.get("message", ""))) for f in found),
        tries=tuple(dict.fromkeys(tries)),
    )


def diagnoses(report: Mapping) -> list[Diagnosis]:
    """The Diagnosis of every analysis of a report, in report order."""
    return [diagnose(a) for a in report.get("analyses") or [] if isinstance(a, Mapping)]


def markdown(report: Mapping, limit: int = 50) -> list[str]:
    """The Diagnosis as Markdown lines (``summary.md``); at most ``limit`` analyses."""
    ds = diagnoses(report)
    lines = ["### Diagnosis", ""]
    for d in ds[:limit]:
        lines.append(f"- **`{d.name}`** ({d.label}) — {d.sentence}.")
        lines += [f"  - {x}." for x in d.details]
        if d.findings:  # the full records follow in the Findings section of summary.md
            ids = ", ".join(dict.fromkeys(f"{i} ({sev})" for i, sev, _ in d.findings))
            lines.append(f"  - findings: {ids} — see Findings below.")
        lines += [f"  - *Try:* {t}." for t in d.tries]
    if len(ds) > limit:
        lines.append(f"- … and {len(ds) - limit} more analyses (all in report.json)")
    return lines + [""]
