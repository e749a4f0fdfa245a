"""Per-layer views of stacks and per-unit views of diagonal cells, from the analysis record (no JAX).

**Per layer** (a `Stack`): the lag profile of each layer's own recurrence, log10 ‖∂S_T[l]/∂S_k[l]‖₂ for
the first state block of layer l (the ``lag_profile.blocks`` pair ``layer{l}.h→layer{l}.h``), with its
decay per step (least-squares slope, decades per step) and its value at the longest lag: the layer whose
curve falls fastest is the one that loses the gradient.

**Per unit** (a cell whose state Jacobian is diagonal: IndRNN, LRU, S4D, Mamba, minGRU, RG-LRU): the
product ∂S_T/∂S_k is diagonal, ∏_t a_{t,i}, so unit i forgets at its own rate λ_i = ⟨ln|a_{t,i}|⟩ nats per
step. These are the Lyapunov exponents of the record (for a diagonal product they are exactly the time
averages of ln|a_{t,i}|, sorted; complex-diagonal cells list each |λ| twice, for Re and Im). The time
constant τ_i = −1/λ_i is the number of steps over which unit i's gradient falls by a factor e (Li et al.
2018, IndRNN §3; Orvieto et al. 2023, LRU §3); a unit with τ_i ≥ T keeps its memory over the whole
sequence (λ_i ≥ 0: τ = ∞). A unit with λ_i = −∞ (a relu unit switched off at some step) has its
gradient cut to exactly zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from gradscope.report._plot import (
    _CYCLE,
    LAG_UNIT,
    NORM_UNIT,
    _no_data,
    finish_panel,
    integer_axis,
    legend,
    new_figure,
    series,
)
from gradscope.report.family import family_of, layer_prefixes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _rate(lag: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(y)
    return float(np.polyfit(lag[ok], y[ok], 1)[0]) if ok.sum() >= 2 else float("nan")


def layer_curves(a: Mapping) -> list[dict]:
    """Per layer of a stack: ``{"layer", "block", "lag", "log10", "decay_per_step", "log10_max_lag"}`` (lags
    ascending); [] for a single cell or a record without per-block lag profiles."""
    layers = layer_prefixes(a)
    lp = a.get("lag_profile") or {}
    blocks = lp.get("blocks") or {}
    if not layers or not blocks:
        return []
    lag = series(lp.get("lag"))
    out = []
    for prefix in layers:
        names = [b for b in a.get("blocks") or [] if str(b).startswith(prefix)]
        pair = blocks.get(f"{names[0]}→{names[0]}") if names else None
        if not isinstance(pair, Mapping):
            continue
        y = series(pair.get("log10_spectral"))
        if y.shape != lag.shape:
            continue
        order = np.argsort(lag)
        x, y = lag[order], y[order]
        out.append(
            {
                "layer": prefix.rstrip("."),
                "block": names[0],
                "lag": x,
                "log10": y,
                "decay_per_step": _rate(x, y),
                "log10_max_lag": float(y[-1]) if y.size else float("nan"),
            }
        )
    return out


def unit_time_constants(a: Mapping) -> dict | None:
    """Per-unit rates of a diagonal cell: ``{"rates", "tau", "length", "long", "cut", "units"}`` (rates in
    nats per step, sorted descending, −∞ for a cut unit; ``tau`` = −1/rate, ∞ for rate ≥ 0, 0 for a cut
    unit; ``long``/``cut``: how many units have τ ≥ T / a gradient cut to zero). None unless the record is
    of one diagonal cell with its full Lyapunov spectrum."""
    fam = family_of(a)
    ly = a.get("lyapunov")
    if fam.kind != "diagonal" or fam.layers or not isinstance(ly, Mapping):
        return None
    ex = series(ly.get("exponents"))
    d = int(sum(a.get("block_sizes") or [0]))
    if ex.ndim != 1 or ex.size != d or d == 0:
        return None
    rates = ex[::2] if fam.complex else ex
    rates = np.where(np.isnan(rates), -np.inf, rates)  # null in the record: ln 0 = −∞, an exactly zero factor
    with np.errstate(divide="ignore"):
        tau = np.where(rates >= 0, np.inf, -1.0 / rates)
    T = int(a.get("length") or 0)
    return {
        "rates": rates,
        "tau": tau,
        "length": T,
        "units": int(rates.size),
        "long": int(np.sum(tau >= T)),
        "cut": int(np.sum(np.isneginf(rates))),
    }


def layers_figure(a: Mapping) -> Figure:
    """Each layer's own lag profile log10 ‖∂S_T[l]/∂S_k[l]‖₂ against the lag, labelled with its decay per step."""
    curves = layer_curves(a)
    fig = new_figure(figsize=(8.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    for i, c in enumerate(curves):
        ax.plot(
            c["lag"],
            c["log10"],
            color=_CYCLE[i % len(_CYCLE)],
            lw=1.8,
            label=f"{c['layer']} ({c['block']}): {c['decay_per_step']:+.3g} decades/step",
        )
    if not curves or not any(np.isfinite(c["log10"]).any() for c in curves):
        _no_data(ax)
    thr = (a.get("summary") or {}).get("horizon_threshold")
    if thr is not None:
        ax.axhline(float(thr), color="0.5", ls=":", lw=1.2, label=f"horizon threshold (10^{float(thr):g})")
    ylabel = NORM_UNIT + r"  $\log_{10}\|\partial S_T[l]/\partial S_k[l]\|_2$"
    finish_panel(ax, LAG_UNIT + "  τ = T − k", ylabel, f"Gradient norm per layer: {a.get('name', '')}")
    return fig


def units_figure(a: Mapping) -> Figure:
    """The per-unit time constants τ_i (log scale, sorted) against the sequence length T."""
    u = unit_time_constants(a)
    fig = new_figure(figsize=(8.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    if u is None:
        _no_data(ax, "no per-unit rates (not a diagonal cell, or no Lyapunov spectrum)")
        T, n = int(a.get("length") or 1), 0
    else:
        T, n, tau = u["length"], u["units"], u["tau"]
        idx = np.arange(1, n + 1)
        shown = np.where(np.isfinite(tau) & (tau > 0), tau, np.nan)
        top = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else T, T) * 3.0
        ax.plot(idx, shown, "o", color=_CYCLE[0], ms=4, label="τ_i = −1/λ_i (finite)")
        inf = np.isinf(tau)
        if inf.any():
            ax.plot(idx[inf], np.full(inf.sum(), top), "^", color=_CYCLE[2], ms=6, label="τ_i = ∞ (λ_i ≥ 0)")
        ax.axhline(T, color=_CYCLE[3], ls="--", lw=1.2, label=f"T = {T} (long memory: τ ≥ T)")
        ax.set_yscale("log")
        ax.set_title(
            f"Per-unit time constants: {u['long']} of {n} units ({u['long'] / n:.0%}) keep τ ≥ T"
            + (f", {u['cut']} cut to zero" if u["cut"] else ""),
            fontsize="medium",
        )
    ax.set_xlabel("unit (sorted by rate, slowest first)")
    ax.set_ylabel("time constant τ_i (steps, log scale)")
    ax.grid(True, alpha=0.3, which="both")
    integer_axis(ax)
    legend(ax, fontsize="small", loc="best")
    fig.suptitle(f"Per-unit memory: {a.get('name', '')}")
    return fig
