"""What a watched step is logged as: the analysis stages a watcher runs, and the scalars the backends write.

Stages (``metrics=`` of `gradscope.watch.Watcher`): the lag profile log10 ‖∂S_T/∂S_k‖₂ and its summary
(horizon, decay per step, norm at the longest lag; `gradscope.analysis.summary.summarise`) are always
computed, in one jitted pass (O(T·d³) for a dense state of size d). The others are opt-in:

* ``"gates"``: gate statistics of the rollout (one more forward pass);
* ``"paths"``: the split of the lag profile into the direct ("highway") path and the rest (one more pass
  over the Jacobians, for cells with a direct path such as the LSTM's cell state);
* ``"spectra"``: singular values at log-spaced lags and of the step Jacobians (SVDs, O(T·d³) more);
* ``"lyapunov"``: the Lyapunov spectrum by QR iteration (Benettin et al. 1980), the costliest stage.

Scalars (`scalars`), computed from the logged record so that every backend writes exactly the numbers of
the JSON-lines log: ``gradscope/<metric>`` for each finite number of the analysis summary, and for a stack
``gradscope/<layer>/horizon`` and ``gradscope/<layer>/log10_norm_max_lag`` from the per-layer curve of
`gradscope.report.history` (the maximum over the layer's own block pairs of log10 ‖∂S_T[a]/∂S_k[b]‖₂), the
numbers ``gradscope history`` draws. With ``"gates"``, ``gradscope[/<layer>]/gate_<g>_mean`` and
``…_saturated_fraction``. JAX-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from gradscope._errors import ConfigError
from gradscope._registry import Registry

PREFIX = "gradscope"
#: the stages a watcher can run -> the `gradscope.analyse` switch each turns on ("lag" is always on)
STAGES: Registry[str | None] = Registry(
    "metric", unknown="metrics={name!r} is not allowed: {hint}use some of {known}, or 'all'"
)
for _name, _switch in (
    ("lag", None),
    ("gates", "gates"),
    ("paths", "paths"),
    ("spectra", "spectra"),
    ("lyapunov", "lyapunov"),
):
    STAGES.register(_name, _switch)
DEFAULT = ("lag",)
#: summary entries that are settings or labels, not measurements
_NOT_METRICS = {"horizon_threshold", "horizon_censored", "finite", "verdict", "verdict_reason"}


def parse_metrics(metrics: Any) -> tuple[str, ...]:
    """The stages asked for, validated: a name, an iterable of names, or ``"all"``; "lag" is always added."""
    if metrics is None:
        return DEFAULT
    if isinstance(metrics, str):
        metrics = STAGES.names() if metrics == "all" else (metrics,)
    if not isinstance(metrics, Iterable):
        raise ConfigError(f"metrics={metrics!r} is not allowed: give stage names such as ('lag', 'lyapunov') or 'all'")
    names = list(metrics)
    for n in names:
        STAGES.get(n)  # UnknownNameError (a GradscopeError) for an unknown name, with suggestions
    return tuple(n for n in STAGES.names() if n == "lag" or n in names)


def analyse_options(stages: Iterable[str]) -> dict[str, bool]:
    """`gradscope.analyse` keyword switches for ``stages`` (everything not asked for is off)."""
    on = set(stages)
    return {switch: name in on for name, switch in zip(STAGES.names(), STAGES.entries(), strict=True) if switch}


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _layer(name: str) -> tuple[str, str]:
    """``"layer1.f"`` -> ("layer1", "f"); ``"f"`` -> ("", "f")."""
    head, dot, tail = name.rpartition(".")
    return (head, tail) if dot else ("", name)


def scalars(record: Mapping) -> dict[str, float]:
    """Tag -> value of one logged record (``{"analysis": Analysis.to_dict(), ...}``; see the module docstring).
    Null (NaN, not computed) entries are left out."""
    from gradscope.report.history import snapshot

    a = record["analysis"]
    out: dict[str, float] = {}
    for k, v in a["summary"].items():
        x = _finite(v)
        if k not in _NOT_METRICS and x is not None:
            out[f"{PREFIX}/{k}"] = x
    for layer, d in (snapshot(record).get("layers") or {}).items():
        for k in ("horizon", "log10_norm_max_lag"):
            x = _finite(d.get(k))
            if x is not None:
                out[f"{PREFIX}/{layer}/{k}"] = x
    for gate, st in (a.get("gates") or {}).items():
        layer, g = _layer(str(gate))
        for k in ("mean", "saturated_fraction"):
            x = _finite(st.get(k)) if isinstance(st, Mapping) else None
            if x is not None:
                out[f"{PREFIX}/{layer + '/' if layer else ''}gate_{g}_{k}"] = x
    return out


def lag_curve(record: Mapping) -> tuple[list[int], list[float | None]] | None:
    """``(lags, log10 norms)`` of the record's lag profile, lag 1 first; None when it has none."""
    lp = record["analysis"].get("lag_profile")
    if not isinstance(lp, Mapping):
        return None
    y = lp.get("log10_spectral", lp.get("log10_frobenius"))
    lags = lp.get("lag")
    if not isinstance(y, list) or not isinstance(lags, list):
        return None
    return list(reversed(lags)), list(reversed(y))
