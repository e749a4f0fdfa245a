"""Interactive figures for ``report.html``: Plotly figure specs built from the report record (no JAX).

Plotly (plotly.js, MIT, maintained by Plotly Inc.) gives hover values, series toggled by clicking the
legend, box zoom and a reset button with no code of ours. The page embeds plotly.js *once* (`plotly_js`,
the bundle shipped in the ``plotly`` Python package: about 4.8 MB, no network at view time) and each
figure as a JSON spec ``{"data", "layout"}`` drawn by one small script (`html_figure`, `boot_script`);
docs/report.md says why Plotly rather than Bokeh or Vega-Lite. Without the ``plotly`` package
(`available`), the page keeps the inlined PNGs and says so.

The builders mirror the matplotlib figures of `gradscope.report.figures` / `gradscope.report.views` and
read the same record fields; numbers are rounded to 5 significant digits (``None`` = a gap).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from html import escape

import numpy as np

from gradscope.report._plot import _CYCLE, _curve, _sv_data, remainder_roundoff, series

#: heat-maps larger than this (cells per side) stay PNG: the JSON would dwarf the page
MAX_HEATMAP = 400
#: the x-axis title of every figure drawn against the lag
_LAG = "lag τ = T − k (steps)"
_CONFIG = {"displaylogo": False, "responsive": True, "scrollZoom": False}


def available() -> bool:
    """Whether the ``plotly`` package (the source of plotly.js) is installed."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def plotly_js() -> str:
    """The plotly.js bundle of the installed ``plotly`` package (inlined once per page)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _color(i: int) -> str:
    r, g, b = (int(round(255 * c)) for c in _CYCLE[i % len(_CYCLE)])
    return f"rgb({r},{g},{b})"


def _r(values) -> list:
    """A float array as a JSON list, 5 significant digits, NaN/±inf → None (a gap)."""
    a = np.asarray(values, np.float64)
    if a.ndim > 1:
        return [_r(v) for v in a]
    return [float(f"{x:.5g}") if math.isfinite(x) else None for x in a.tolist()]


def _axis(title: str, *, integer: bool = False, log: bool = False, **kw) -> dict:
    ax = {"title": {"text": title}, "zeroline": False, "showgrid": True, "gridcolor": "#e5e7eb"}
    if integer:
        ax["tickformat"] = "d"  # integer ticks on lags, steps and indices
    if log:
        ax["type"] = "log"
    return ax | kw


def _layout(title: str, x: dict, y: dict, **kw) -> dict:
    return {
        "title": {"text": title, "font": {"size": 15}},
        "xaxis": x,
        "yaxis": y,
        "hovermode": "closest",
        "margin": {"l": 70, "r": 20, "t": 50, "b": 55},
        "legend": {"font": {"size": 11}},
        "height": 430,
        "template": "none",
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
    } | kw


def _line(x, y, name: str, color: str, *, dash: str = "solid", width: float = 2.0, unit: str = "log10", **kw) -> dict:
    return {
        "type": "scatter",
        "mode": "lines",
        "x": _r(x),
        "y": _r(y),
        "name": name,
        "line": {"color": color, "dash": dash, "width": width},
        "hovertemplate": f"%{{x}}: {unit} %{{y:.4g}}<extra>{escape(name)}</extra>",
    } | kw


def _figure(data: list, title: str, x: str, y: str, *, y_axis: Mapping | None = None, **layout) -> dict:
    """A one-panel figure spec. Every x axis here counts lags, steps or indices, so its ticks are integers;
    ``y_axis`` holds the options of the y axis (`_axis`), ``layout`` those of the whole figure (`_layout`)."""
    return {"data": data, "layout": _layout(title, _axis(x, integer=True), _axis(y, **(y_axis or {})), **layout)}


def lag_profiles(items: list[Mapping]) -> dict:

    data, thresholds = [], set()
    for i, a in enumerate(items):
        lag, y, band, _ = _curve(a)
        name = str(a.get("name", f"analysis {i}"))
        c = _color(i)
        verdict = (a.get("summary") or {}).get("verdict", "?")
        data.append(_line(lag, y, f"{name} ({verdict})", c, legendgroup=name))
        if band is not None:
            data.append(
                _line(lag, band[1], f"{name} ± se", c, width=0, legendgroup=name, showlegend=False, hoverinfo="skip")
            )
            data.append(
                _line(lag, band[0], f"{name} ± se", c, width=0, legendgroup=name, showlegend=False, fill="tonexty")
            )
        b = a.get("bound")
        if isinstance(b, Mapping) and b.get("log10_per_step") is not None and lag.size:
            tau = np.array([0.0, float(np.nanmax(lag))])
            data.append(
                _line(tau, tau * float(b["log10_per_step"]), f"{name}: bound ({b['log10_per_step']:+.3g}/step)", c,
                      dash="dash", width=1.2, legendgroup=name, visible="legendonly")
            )  # fmt: skip
        thr = (a.get("summary") or {}).get("horizon_threshold")
        if thr is not None:
            thresholds.add(float(thr))
    xmax = max((float(np.nanmax(_curve(a)[0])) for a in items), default=1.0)
    for thr in sorted(thresholds):
        data.append(_line([0, xmax], [thr, thr], f"horizon threshold 10^{thr:g}", "#888", dash="dot", width=1.2))
    return _figure(
        data,
        "Gradient norm against lag (click a legend entry to hide it; the bounds are hidden at first)",
        _LAG,
        "log10 ‖∂S_T/∂S_k‖₂",
    )


def _two_panels(left: list, right: list, title: str, axes: tuple[str, str, str, str]) -> dict:
    """Two side-by-side panels; ``axes`` are the titles (left x, left y, right x, right y), the x axes with
    integer ticks as in `_figure`."""
    for t in right:
        t["xaxis"], t["yaxis"] = "x2", "y2"
    x1, y1, x2, y2 = axes
    return {
        "data": left + right,
        "layout": _layout(
            title,
            _axis(x1, integer=True, domain=[0.0, 0.44]),
            _axis(y1),
            xaxis2=_axis(x2, integer=True, domain=[0.56, 1.0], anchor="y2"),
            yaxis2=_axis(y2, anchor="x2"),
        ),
    }


def _sv_traces(x, sec: Mapping) -> list:

    sv, band, what = _sv_data(sec)
    if sv.ndim != 2 or sv.shape[0] != x.size:
        return []
    order = np.argsort(x)
    x, sv = x[order], sv[order]
    k = sv.shape[1]
    out = []
    for i in range(k):
        grey = int(40 + 160 * i / max(k - 1, 1))
        c = _color(0) if i == 0 else f"rgb({grey},{grey},{grey})"
        name = f"σ_{i + 1}" + (f" ({what})" if what and i == 0 else "")
        out.append(
            _line(x, sv[:, i], name, c, width=2.0 if i == 0 else 1.0, legendgroup=f"sv{i}", showlegend=i in (0, k - 1))
        )
        if band is not None and i in (0, k - 1):
            lo, hi = band[0][order][:, i], band[1][order][:, i]
            out.append(_line(x, hi, f"σ_{i + 1} max", c, width=0, legendgroup=f"sv{i}", showlegend=False))
            out.append(
                _line(x, lo, f"σ_{i + 1} min", c, width=0, legendgroup=f"sv{i}", showlegend=False, fill="tonexty",
                      fillcolor="rgba(31,119,180,0.15)" if i == 0 else "rgba(120,120,120,0.15)")
            )  # fmt: skip
    return out


def singular_values(a: Mapping) -> dict:
    sp = a.get("spectra") or {}
    left = _sv_traces(series(sp.get("lag")), sp)
    st = a.get("step_spectra") or {}
    right = _sv_traces(series(st.get("t")), st) if st else []
    for t in right:  # one legend for both panels: the entries toggle the same σ_i on each (legend groups)
        t["showlegend"] = False
    return _two_panels(
        left,
        right,
        f"Singular values: {a.get('name', '')} (left: of ∂S_T/∂S_k by lag; right: of the one-step Jacobians)",
        (_LAG, "log10 σ_i(∂S_T/∂S_k)", "step t", "log10 σ_i(∂S_(t+1)/∂S_t)"),
    )


def lyapunov(a: Mapping) -> dict:
    ly = a.get("lyapunov") or {}
    ex = series(ly.get("exponents"))
    left = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": list(range(1, ex.size + 1)),
            "y": _r(ex),
            "name": "λ_i",
            "line": {"color": _color(0)},
            "hovertemplate": "λ_%{x} = %{y:.4g} nats/step<extra></extra>",
        }
    ]
    tr = series(ly.get("trace"))
    right = []
    if tr.ndim == 2 and tr.size:
        T = int(a.get("length") or 0)
        stride = max(1, T // 200) if T else 1
        steps = int(ly.get("warmup") or 0) + 1 + stride * np.arange(tr.shape[0])
        for i in range(min(tr.shape[1], 8)):  # the leading exponents; the full spectrum is on the left
            right.append(_line(steps, tr[:, i], f"running λ_{i + 1}", _color(i + 1), width=1.6 if i == 0 else 1.0,
                               unit="nats/step"))  # fmt: skip
    return _two_panels(
        left,
        right,
        f"Lyapunov exponents: {a.get('name', '')} (left: spectrum; right: running estimates)",
        ("exponent index i", "λ_i (nats per step)", "steps averaged", "running estimate (nats per step)"),
    )


def paths(a: Mapping) -> dict:

    p = a.get("paths") or {}
    total = series(p.get("total_log10_spectral"))
    n, T = total.size, int(a.get("length") or 0)
    lag = np.arange(n, 0, -1, dtype=np.float64) if T != n else T - np.arange(n, dtype=np.float64)
    block = p.get("block", "")
    data = []
    for key, label, c, dash in [
        ("total_log10_spectral", f"total ∂{block}_T/∂{block}_k", "#262626", "solid"),
        ("highway_log10_spectral", "highway (gated direct path)", _color(0), "solid"),
        ("remainder_log10_spectral", "remainder (all other paths)", _color(1), "dash"),
    ]:
        y = series(p.get(key))
        if key.startswith("remainder") and y.shape == total.shape:
            y = np.where(remainder_roundoff(a, total, y), np.nan, y)
        if y.shape == lag.shape:
            data.append(_line(lag, y, label, c, dash=dash))
    return _figure(data, f"Path decomposition ({block} block): {a.get('name', '')}", _LAG, "log10 ‖·‖₂")


def triangle(a: Mapping) -> dict | None:
    M = series((a.get("triangle") or {}).get("log10_frobenius"))
    if M.ndim != 2 or M.shape[0] > MAX_HEATMAP:
        return None
    heatmap = {
        "type": "heatmap",
        "z": _r(M),
        "colorscale": "Viridis",
        "colorbar": {"title": {"text": "log10 ‖·‖_F"}},
        "hovertemplate": "t = %{y}, k = %{x}: log10 %{z:.4g}<extra></extra>",
    }
    return _figure(
        [heatmap],
        f"Jacobian products ∂S_t/∂S_k: {a.get('name', '')}",
        "source step k",
        "target step t",
        y_axis={"integer": True},
        height=520,
    )


def sensitivity(a: Mapping) -> dict:
    s = a.get("sensitivity") or {}
    t = series(s.get("t"))
    data = [
        _line(t, series(v), str(n), _color(i), width=1.2)
        for i, (n, v) in enumerate((s.get("by_parameter") or {}).items())
    ]
    total, state = series(s.get("log10_total")), series(s.get("log10_state"))
    data.append(_line(t, total, "all parameters", "#1a1a1a", dash="dash", width=2.2))
    if state.shape == total.shape:
        data.append(_line(t, state, "state log10 ‖S_t‖₂", _color(0), width=2.0, visible="legendonly"))
    return _figure(data, f"Parameter sensitivity ∂S_t/∂θ: {a.get('name', '')}", "step t", "log10 ‖∂S_t/∂θ‖_F")


def layers(a: Mapping) -> dict:
    from gradscope.report.views import layer_curves

    data = [
        _line(c["lag"], c["log10"], f"{c['layer']} ({c['decay_per_step']:+.3g}/step)", _color(i))
        for i, c in enumerate(layer_curves(a))
    ]
    return _figure(data, f"Gradient norm per layer: {a.get('name', '')}", _LAG, "log10 ‖∂S_T[l]/∂S_k[l]‖₂")


def units(a: Mapping) -> dict | None:
    from gradscope.report.views import unit_time_constants

    u = unit_time_constants(a)
    if u is None:
        return None
    tau, T = u["tau"], u["length"]
    idx = np.arange(1, tau.size + 1)
    shown = np.where(np.isfinite(tau) & (tau > 0), tau, np.nan)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": idx.tolist(),
            "y": _r(shown),
            "name": "τ_i = −1/λ_i",
            "marker": {"color": _color(0), "size": 6},
            "hovertemplate": "unit rank %{x}: τ = %{y:.4g} steps<extra></extra>",
        },
        _line([1, max(tau.size, 1)], [T, T], f"T = {T}", _color(3), dash="dash", width=1.2, unit="steps"),
    ]
    return _figure(
        data,
        f"Per-unit time constants: {u['long']} of {u['units']} units keep τ ≥ T"
        + (f"; {u['cut']} cut to zero, not drawn" if u["cut"] else ""),
        "unit (sorted by rate, slowest first)",
        "τ_i (steps, log scale)",
        y_axis={"log": True},
    )


#: figure kind (the file-name suffix) → builder; kinds not listed stay PNG
BUILDERS: dict[str, Callable[[Mapping], dict | None]] = {
    "singular_values": singular_values,
    "lyapunov": lyapunov,
    "paths": paths,
    "triangle": triangle,
    "sensitivity": sensitivity,
    "layers": layers,
    "units": units,
}


def html_figure(div_id: str, spec: Mapping) -> str:
    """The figure's placeholder and its JSON spec (``</`` escaped so it cannot close the script)."""
    payload = json.dumps(dict(spec) | {"config": _CONFIG}, allow_nan=False, ensure_ascii=False).replace("</", "<\\/")
    return (
        f'<div class="gs-plot" id="{escape(div_id)}"></div>'
        f'<script type="application/json" class="gs-fig" data-target="{escape(div_id)}">{payload}</script>'
    )


def boot_script() -> str:
    """plotly.js (once) and the loop that draws every ``gs-fig`` spec of the page."""
    return (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f'<script type="text/javascript">{plotly_js()}</script>'
        "<script>document.querySelectorAll('script.gs-fig').forEach(function (s) {"
        "var f = JSON.parse(s.textContent);"
        "Plotly.newPlot(s.dataset.target, f.data, f.layout, f.config);});</script>"
    )
