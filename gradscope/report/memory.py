"""The parameter-sensitivity figure: log10 ‖∂S_t/∂θ‖_F against t per parameter, next to log10 ‖S_t‖.

Zucchet & Orvieto (2024, "Recurrent neural networks: vanishing and exploding gradients are not the end of
the story", NeurIPS 2024): as a network's memory lengthens, the state can become ever more sensitive to its
recurrent parameters while the state itself stays bounded — the curse of memory. The right panel shows the
two curves the ``curse-of-memory`` finding compares, and their difference.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gradscope.report._plot import _CYCLE, NORM_UNIT, _need, _no_data, finish_panel, series

#: parameters drawn with a legend entry (the rest thin and grey, largest final sensitivity first)
MAX_LABELLED = 8


def _last_finite(y: np.ndarray) -> float:
    ok = np.isfinite(y)
    return float(y[ok][-1]) if ok.any() else -np.inf


def sensitivity(analysis: Mapping) -> Figure:
    """Left: log10 ‖∂S_t/∂θ_p‖_F against t for every parameter leaf p, with the total over all of them;
    right: the total, the state norm log10 ‖S_t‖₂ and their difference (sensitivity relative to the state)."""
    s = _need(analysis, "sensitivity", " (analyse(..., sensitivity=True))")
    total = series(s.get("log10_total"))
    state = series(s.get("log10_state"))
    t = series(s.get("t"))
    if t.shape != total.shape:
        t = np.arange(total.size, dtype=np.float64)
    per = {str(n): series(v) for n, v in (s.get("by_parameter") or {}).items()}
    per = {n: y for n, y in per.items() if y.shape == t.shape}
    order = sorted(per, key=lambda n: -_last_finite(per[n]))
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    marker = "." if t.size <= 60 else None
    for i, n in enumerate(order):
        if i < MAX_LABELLED:
            ax1.plot(t, per[n], color=_CYCLE[i % len(_CYCLE)], lw=1.4, marker=marker, label=n)
        else:
            ax1.plot(t, per[n], color="0.7", lw=0.8, label="other parameters" if i == MAX_LABELLED else None)
    if total.size:
        ax1.plot(t, total, color="0.1", lw=2.2, ls="--", label="all parameters")
    if not np.isfinite(total).any():
        _no_data(ax1)
    ylabel = NORM_UNIT + r"  $\log_{10}\|\partial S_t/\partial\theta\|_F$"
    finish_panel(ax1, "step t", ylabel, "Sensitivity of the state to each parameter")
    if total.size and state.shape == total.shape:
        ax2.plot(t, total, color="0.1", lw=2.0, ls="--", label=r"$\log_{10}\|\partial S_t/\partial\theta\|_F$")
        ax2.plot(t, state, color=_CYCLE[0], lw=2.0, label=r"$\log_{10}\|S_t\|_2$")
        ax2.plot(t, total - state, color=_CYCLE[3], lw=1.4, label="difference (sensitivity / state)")
    if not (np.isfinite(total).any() and np.isfinite(state).any()):
        _no_data(ax2)
    finish_panel(ax2, "step t", NORM_UNIT, "Sensitivity against the state norm")
    fig.suptitle(f"Parameter sensitivity: {analysis.get('name', '')}")
    return fig
