"""Matplotlib figures of saved analyses (``Analysis.to_dict()`` dicts or ``report.json`` entries).

Every function takes the JSON-ready dict (or a list of them for comparisons) and returns a
`matplotlib.figure.Figure` built without pyplot (no global state, nothing to close; notebooks display
it, `Figure.savefig` writes it). Nothing here differentiates: the numbers are the engine's.

Conventions read from the dicts: norms are log10, Lyapunov exponents natural log
per step; a lag-profile entry k is ``∂S_T/∂S_k`` at lag ``T − k``. ``None`` in a list means NaN or
−inf (an exactly zero product, e.g. a switched-off relu unit); it is drawn as a gap.

Colour maps are perceptually uniform (viridis); categorical lines use the tab10 cycle.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from gradscope.report._plot import (  # noqa: F401  (series, the units and the data helpers are part of this module's interface)
    _CYCLE,
    CMAP,
    LAG_UNIT,
    LYAP_UNIT,
    NORM_UNIT,
    ROUNDOFF_MARGIN,
    _as_list,
    _curve,
    _finite_range,
    _heatmap,
    _need,
    _no_data,
    _sv_data,
    finish_panel,
    integer_axis,
    legend,
    remainder_roundoff,
    series,
)
from gradscope.report.memory import sensitivity  # noqa: F401  (the "sensitivity" figure kind is drawn from here)


def lag_profiles(analyses, *, bounds: bool = True, threshold: bool = True) -> Figure:
    """log10 ‖∂S_T/∂S_{T−τ}‖ against the lag τ for one or several analyses on one axis.

    Where an analysis carries a classical bound (Pascanu et al. 2013, eq. 7: ‖∂h_t/∂h_k‖ ≤ (γ σ_max)^τ;
    IndRNN's |u|^τ), the bound τ · log10_per_step is drawn dashed in the analysis's colour. The dotted
    grey line is the horizon threshold.
    """
    items = _as_list(analyses)
    fig = Figure(figsize=(9.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    thresholds = set()
    for i, a in enumerate(items):
        color = _CYCLE[i % len(_CYCLE)]
        lag, y, band, what = _curve(a)
        name = str(a.get("name", f"analysis {i}"))
        ax.plot(
            lag,
            y,
            color=color,
            lw=1.8,
            marker="." if lag.size <= 60 else None,
            label=f"{name} ({a.get('summary', {}).get('verdict', '?')})",
        )
        if band is not None:
            ax.fill_between(lag, *band, color=color, alpha=0.2, lw=0)
        b = a.get("bound")
        if bounds and isinstance(b, Mapping) and b.get("log10_per_step") is not None and lag.size:
            tau = np.linspace(0.0, float(np.nanmax(lag)), 100)
            ax.plot(
                tau,
                tau * float(b["log10_per_step"]),
                color=color,
                ls="--",
                lw=1.2,
                label=f"{name}: bound ({b.get('kind', 'classical')}, {b['log10_per_step']:+.3g}/step)",
            )
        thr = a.get("summary", {}).get("horizon_threshold")
        if thr is not None:
            thresholds.add(float(thr))
    if threshold:
        for thr in sorted(thresholds):
            ax.axhline(thr, color="0.5", ls=":", lw=1.2, label=f"horizon threshold (10^{thr:g})")
    ax.set_xlabel(LAG_UNIT + "  τ = T − k")
    ax.set_ylabel(NORM_UNIT + r"  $\log_{10}\|\partial S_T/\partial S_k\|_2$")
    single = len(items) == 1
    what = f": {items[0].get('name', '')}" if single else f" ({len(items)} models)"
    ax.set_title("Gradient norm against lag" + what)
    ax.grid(True, alpha=0.3)
    integer_axis(ax)
    if len(ax.get_legend_handles_labels()[0]) > 4:  # many entries: keep them off the curves
        legend(ax, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        legend(ax, fontsize="small", loc="best")
    return fig


def triangle(analysis: Mapping) -> Figure:
    """Heat-map of log10 ‖∂S_t/∂S_k‖_F over target step t (rows) and source step k (columns), k ≤ t."""
    M = series(_need(analysis, "triangle", " (analyse(..., triangle=True))")["log10_frobenius"])
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    n = M.shape[0] if M.ndim == 2 else 0
    _heatmap(
        fig,
        ax,
        M if n else np.full((1, 1), np.nan),
        label=NORM_UNIT + r"  $\log_{10}\|\partial S_t/\partial S_k\|_F$",
        extent=(-0.5, n - 0.5, -0.5, n - 0.5) if n else None,
        aspect="equal",
    )
    ax.set_xlabel("source step k")
    ax.set_ylabel("target step t")
    integer_axis(ax)
    integer_axis(ax, which="y")
    ax.set_title(r"Jacobian products $\partial S_t/\partial S_k$: " + str(analysis.get("name", "")))
    return fig


def singular_values(analysis: Mapping) -> Figure:
    """Left: singular values of ∂S_T/∂S_k against the lag; right: of the one-step Jacobians ∂S_{t+1}/∂S_t."""
    sp = _need(analysis, "spectra")
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    _sv_lines(ax1, series(sp.get("lag")), *_sv_data(sp))
    ax1.set_xlabel(LAG_UNIT + "  τ = T − k")
    ax1.set_ylabel(NORM_UNIT + r"  $\log_{10}\sigma_i(\partial S_T/\partial S_k)$")
    ax1.set_title("Singular values along the lag")
    st = analysis.get("step_spectra")
    ax2.axhline(0.0, color="0.5", ls=":", lw=1, label=r"$\sigma = 1$")
    if st:
        _sv_lines(ax2, series(st.get("t")), *_sv_data(st))
    else:
        _no_data(ax2, "one-step spectra not computed")
    ax2.set_xlabel("step t")
    ax2.set_ylabel(NORM_UNIT + r"  $\log_{10}\sigma_i(\partial S_{t+1}/\partial S_t)$")
    ax2.set_title("Singular values of one-step Jacobians")
    integer_axis(ax1, ax2)
    fig.suptitle(f"Singular-value spectra: {analysis.get('name', '')}")
    return fig


def _sv_lines(ax, x, sv, band=None, what=""):
    """One line per singular-value index, coloured by index (viridis: dark = largest); with a batch, the
    median over the sequences and the min–max band of the largest and smallest one."""
    if sv.ndim != 2 or sv.shape[0] != x.size or not np.isfinite(sv).any():
        _no_data(ax)
        legend(ax, fontsize="small", loc="best")
        return
    order = np.argsort(x)
    x, sv = x[order], sv[order]
    k = sv.shape[1]
    cmap = colormaps[CMAP]
    suffix = f", {what}" if what else ""
    for i in range(k):
        label = (
            rf"$\sigma_1$ (largest){suffix}"
            if i == 0
            else (rf"$\sigma_{{{k}}}$ (smallest shown)" if i == k - 1 else None)
        )
        color = cmap(i / max(k - 1, 1) * 0.9)
        ax.plot(x, sv[:, i], color=color, lw=1.8 if i == 0 else 1.0, marker="." if x.size <= 40 else None, label=label)
        if band is not None and i in (0, k - 1):
            lo, hi = band[0][order][:, i], band[1][order][:, i]
            ax.fill_between(
                x, lo, hi, color=color, alpha=0.18, lw=0, label="min–max over sequences" if i == 0 else None
            )
    ax.grid(True, alpha=0.3)
    legend(ax, fontsize="small", loc="best")


def lyapunov(analysis: Mapping) -> Figure:
    """Left: the Lyapunov spectrum λ_1 ≥ … ≥ λ_k; right: the running estimates (convergence trace)."""
    ly = _need(analysis, "lyapunov")
    ex = series(ly.get("exponents"))
    tr = series(ly.get("trace"))
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    idx = np.arange(1, ex.size + 1)
    ax1.axhline(0.0, color="0.5", ls=":", lw=1, label=r"$\lambda = 0$ (neutral)")
    ax1.plot(idx, ex, "o-", color=_CYCLE[0], label=r"$\lambda_i$")
    if not np.isfinite(ex).any():
        _no_data(ax1)
    finish_panel(ax1, "exponent index i", r"$\lambda_i$" + f" ({LYAP_UNIT})", "Lyapunov spectrum")
    length = int(analysis.get("length") or 0)
    warm = int(ly.get("warmup") or 0)
    if tr.ndim == 2 and tr.size and np.isfinite(tr).any():
        stride = max(1, length // 200) if length else 1
        steps = warm + 1 + stride * np.arange(tr.shape[0])
        cmap = colormaps[CMAP]
        k = tr.shape[1]
        for i in range(k):
            label = r"$\lambda_1$" if i == 0 else (rf"$\lambda_{{{k}}}$" if i == k - 1 else None)
            ax2.plot(steps, tr[:, i], color=cmap(i / max(k - 1, 1) * 0.9), lw=1.6 if i == 0 else 0.9, label=label)
    else:
        _no_data(ax2, "no convergence trace")
    finish_panel(ax2, "steps averaged", f"running estimate ({LYAP_UNIT})", "Convergence of the estimates")
    fig.suptitle(f"Lyapunov exponents: {analysis.get('name', '')}")
    return fig


def paths(analysis: Mapping) -> Figure:
    """Direct-path split of ∂S_T/∂S_k: the highway (LSTM cell-state path ∏ f, or GRU's (1−z) path)
    against the remainder and the total, in log10 spectral norm over the lag; the remainder's round-off
    values (`remainder_roundoff`: the LSTM's lag 1) are gaps."""
    p = _need(analysis, "paths", " (LSTM/GRU-type cells in exact mode)")
    T = int(analysis.get("length") or 0)
    total = series(p.get("total_log10_spectral"))
    n = total.size
    lag = np.arange(n, 0, -1, dtype=np.float64) if not T or T != n else T - np.arange(n, dtype=np.float64)
    block = p.get("block", "")
    highway = "cell-state highway ∏ f" if block == "c" else "direct path ∏ diag(1−z)" if block == "h" else "direct path"
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.add_subplot()
    for key, label, color, ls in [
        ("total_log10_spectral", f"total ∂{block}_T/∂{block}_k", "0.15", "-"),
        ("highway_log10_spectral", highway, _CYCLE[0], "-"),
        ("remainder_log10_spectral", "remainder (all other paths)", _CYCLE[1], "--"),
    ]:
        y = series(p.get(key))
        if key.startswith("remainder") and y.shape == total.shape:
            roundoff = remainder_roundoff(analysis, total, y)
            if roundoff.any():
                y = np.where(roundoff, np.nan, y)
                label += f" (round-off at lag {', '.join(f'{v:g}' for v in lag[roundoff][:3])} not drawn)"
        if y.shape == lag.shape:
            ax.plot(lag, y, color=color, ls=ls, lw=1.8, marker="." if n <= 60 else None, label=label)
    if not np.isfinite(total).any():
        _no_data(ax)
    title = f"Path decomposition ({block} block): {analysis.get('name', '')}"
    finish_panel(ax, LAG_UNIT + "  τ = T − k", NORM_UNIT + r"  $\log_{10}\|\cdot\|_2$", title)
    return fig


def attribution(analysis: Mapping) -> Figure:
    """Left: ‖part of ∂E/∂θ contributed at lag τ = t − k‖ (Pascanu et al. 2013, eqs. 3–5) with the
    total; right: ‖∂E/∂S_t‖ per state block over time t."""
    at = _need(analysis, "attribution", " (analyse(..., attribution=True))")
    by_lag = series(at.get("log10_by_lag"))
    bt = series(at.get("log10_block_time"))
    blocks = [str(b) for b in (at.get("blocks") or analysis.get("blocks") or [])]
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.1, 1))
    tau = np.arange(by_lag.size)
    ax1.plot(tau, by_lag, "o-" if by_lag.size <= 60 else "-", color=_CYCLE[0], ms=3, label="contribution at lag τ")
    total = at.get("log10_total")
    if total is not None:
        ax1.axhline(float(total), color=_CYCLE[1], ls="--", lw=1.2, label="total ‖∂E/∂θ‖")
    if not np.isfinite(by_lag).any():
        _no_data(ax1)
    ylabel = NORM_UNIT + r"  $\log_{10}\|\partial E/\partial\theta\|_2$ at lag $\tau$"
    finish_panel(ax1, LAG_UNIT + "  τ = t − k", ylabel, "Gradient contribution by lag")
    if bt.ndim == 2 and bt.size:
        nT, nb = bt.shape
        _heatmap(
            fig,
            ax2,
            bt.T,
            label=NORM_UNIT + r"  $\log_{10}\|\partial E/\partial S_t[\mathrm{block}]\|$",
            extent=(-0.5, nT - 0.5, -0.5, nb - 0.5),
        )
        ax2.set_yticks(range(nb), blocks if len(blocks) == nb else [str(i) for i in range(nb)])
    else:
        _no_data(ax2)
    ax2.set_xlabel("step t")
    ax2.set_ylabel("state block")
    integer_axis(ax2)
    ax2.set_title("Back-propagated error per block × time")
    fig.suptitle(f"Gradient attribution: {analysis.get('name', '')}")
    return fig


def gates(analysis: Mapping) -> Figure:
    """Histograms of gate activations on [0, 1] (σ'(·) < 0.01 counts as saturated) and, for relu
    cells, the fractions of inactive and dead units."""
    g = _need(analysis, "gates")
    hist = {k: v for k, v in g.items() if isinstance(v, Mapping) and v.get("histogram") is not None}
    other = {k: v for k, v in g.items() if isinstance(v, Mapping) and k not in hist}
    n = len(hist) + (1 if other else 0)
    cols = min(max(n, 1), 4)
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(3.2 * cols + 0.6, 2.9 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, v) in zip(axes, hist.items()):
        counts = series(v["histogram"])
        edges = series(v.get("bin_edges"))
        if edges.size != counts.size + 1:
            edges = np.linspace(0.0, 1.0, counts.size + 1)
        tot = np.nansum(counts)
        frac = counts / tot if tot > 0 else counts
        ax.stairs(frac, edges, fill=True, color=_CYCLE[0], alpha=0.75, label=f"mean {v.get('mean', float('nan')):.2f}")
        sat = v.get("saturated_fraction")
        extra = f", open {v['open_fraction']:.0%}" if v.get("open_fraction") is not None else ""
        ax.set_title(
            f"gate {name}: saturated {sat:.0%}{extra}" if sat is not None else f"gate {name}", fontsize="medium"
        )
        ax.set_xlabel("gate value")
        ax.set_ylabel("fraction of values")
        legend(ax, fontsize="small", loc="upper center")
    if other:
        ax = axes[len(hist)]
        labels, vals = [], []
        for name, v in other.items():
            for k, x in v.items():
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    labels.append(f"{name}\n{k.replace('_fraction', '')}")
                    vals.append(float(x))
        ax.bar(range(len(vals)), vals, color=[_CYCLE[i % 10] for i in range(len(vals))], label="fraction of units")
        ax.bar_label(ax.containers[0], labels=[f"{v:.0%}" for v in vals], padding=2)
        ax.set_xticks(range(len(vals)), labels, fontsize="small")
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction")
        ax.set_xlabel("statistic")
        ax.set_title("relu units", fontsize="medium")
        legend(ax, fontsize="small", loc="upper right")
    for ax in axes[n:]:
        ax.set_axis_off()
    if n == 0:
        axes[0].set_axis_on()
        _no_data(axes[0], "this cell has no gates")
        axes[0].set_title("gates")
    fig.suptitle(f"Gate saturation: {analysis.get('name', '')}")
    return fig
