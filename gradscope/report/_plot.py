"""Shared pieces of the report's matplotlib figures: JSON lists to arrays (``None`` → NaN, drawn as a gap),
the "section missing" error, the no-data note, the masked heat-map, units and colours.

Colour maps are perceptually uniform (viridis); categorical lines use the tab10 cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradscope._errors import ConfigError
from gradscope.analysis.summary import ROUNDOFF_MARGIN, remainder_resolved  # noqa: F401  (re-exported by figures)

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

#: colour map for heat-maps and ordered families of lines (perceptually uniform)
CMAP = "viridis"
#: matplotlib's tab10 colours (``colormaps["tab10"].colors``, checked by the tests), written out so that the
#: report's data side (captions, the HTML page's Plotly figures) never imports matplotlib
_TAB10 = ("1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b", "e377c2", "7f7f7f", "bcbd22", "17becf")
#: the tab10 colours as RGB tuples in [0, 1]
_CYCLE: tuple[tuple[float, ...], ...] = tuple(tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)) for h in _TAB10)
NORM_UNIT = "log10 norm"
LAG_UNIT = "lag (steps)"
LYAP_UNIT = "nats per step"


def new_figure(**kw: Any) -> Figure:
    """A matplotlib ``Figure(**kw)`` (Agg, no pyplot state). matplotlib is imported here and in `colormap`, on
    the first figure drawn: building, checking and rendering a report never import it."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def colormap(name: str) -> Colormap:
    """matplotlib's colour map ``name`` (imported on first use, as in `new_figure`)."""
    from matplotlib import colormaps

    return colormaps[name]


def series(values) -> np.ndarray:
    """A JSON list (possibly nested, with ``None``) as a float array; ``None`` → NaN (a gap)."""
    if values is None:
        return np.array([], np.float64)

    def conv(v):
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return np.nan if v is None else float(v)

    return np.asarray(conv(values), np.float64)


def _need(a: Mapping, key: str, why: str = "") -> Mapping:
    sec = a.get(key) if isinstance(a, Mapping) else None
    if sec is None:
        name = a.get("name", "?") if isinstance(a, Mapping) else type(a).__name__
        raise ConfigError(f"analysis {name!r} has no {key!r} section{why}: re-run the analysis with it switched on")
    return sec


def _as_list(analyses) -> list[Mapping]:
    if isinstance(analyses, Mapping):
        return [analyses]
    if isinstance(analyses, Sequence) and not isinstance(analyses, (str, bytes)) and analyses:
        return list(analyses)
    raise ConfigError(
        f"analyses={analyses!r:.60} is not allowed: expected an analysis dict or a non-empty list of them"
    )


def _finite_range(*arrays) -> tuple[float, float] | None:
    vals = [np.asarray(x)[np.isfinite(x)] for x in arrays if np.size(x)]
    vals = [v for v in vals if v.size]
    if not vals:
        return None
    allv = np.concatenate(vals)
    return float(allv.min()), float(allv.max())


def _no_data(ax, text="no finite values (all exactly zero or not computed)"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)


def _heatmap(fig, ax, M, *, label, extent=None, aspect="auto"):
    """imshow with NaN/−inf masked (drawn as background) and a labelled colour bar."""
    M = np.ma.masked_invalid(np.asarray(M, np.float64))
    rng = _finite_range(M.filled(np.nan))
    cmap = colormap(CMAP).with_extremes(bad=(1.0, 1.0, 1.0, 0.0))  # gaps show the background
    vmin, vmax = rng if rng else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    im = ax.imshow(
        M, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest", extent=extent
    )
    fig.colorbar(im, ax=ax, label=label)
    if rng is None:
        _no_data(ax)
    return im


def integer_axis(*axes_or_axis, which: str = "x") -> None:
    """Integer ticks only (lags, steps, unit and exponent indices are whole numbers)."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes_or_axis:
        (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def finish_panel(ax, xlabel: str, ylabel: str, title: str) -> None:
    """The finish every line panel of the report shares, so that they all read alike: axis labels, title, a
    light grid, integer x ticks (the x axes count lags, steps or indices) and a legend of the drawn series."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    integer_axis(ax)
    legend(ax, fontsize="small", loc="best")


def _drawn(handle) -> bool:
    """Whether a legend handle shows anything: a line with at least one finite point, any other artist."""
    get = getattr(handle, "get_xydata", None)
    if get is None:
        return True
    xy = np.asarray(get(), np.float64)
    return bool(xy.size and np.isfinite(xy).all(axis=-1).any())


def legend(ax, **kw):
    """``ax.legend`` naming only the series that are drawn (a line whose values are all gaps gets no entry)."""
    handles, labels = ax.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(handles, labels) if _drawn(h)]
    if not keep:
        return None
    return ax.legend([h for h, _ in keep], [lab for _, lab in keep], **kw)


def _curve(a: Mapping):
    """(lags, log10 norm, band or None, label of the norm) of an analysis's lag profile."""
    lp = _need(a, "lag_profile")
    lag = series(lp.get("lag"))
    if "log10_spectral" in lp:
        y, band, what = series(lp["log10_spectral"]), None, "spectral"
    else:  # probe mode: Frobenius estimate ± standard error
        y, what = series(lp.get("log10_frobenius")), "Frobenius (probe)"
        err = series(lp.get("log10_frobenius_stderr"))
        band = (y - err, y + err) if err.shape == y.shape else None
    if lag.shape != y.shape:
        lag = np.arange(y.size, 0, -1, dtype=np.float64)
    order = np.argsort(lag)
    band = None if band is None else (band[0][order], band[1][order])
    return lag[order], y[order], band, what


def _sv_data(sec: Mapping):
    """(values, band or None, what): the per-sequence median of each singular value with its min–max band
    over the sequences when the record has them (a batch), else the single sequence's values."""
    med = series(sec.get("log10_singular_values_median"))
    if med.size:
        lo, hi = series(sec.get("log10_singular_values_min")), series(sec.get("log10_singular_values_max"))
        band = (lo, hi) if lo.shape == med.shape == hi.shape else None
        return med, band, "median over sequences"
    return series(sec.get("log10_singular_values")), None, ""


def remainder_roundoff(analysis: Mapping, total, remainder) -> np.ndarray:
    """Where the path split's remainder is float round-off, drawn as a gap: null in the record (records
    written since 2026-12-06 null it at the source), or at round-off by the same rule for older report.json
    files (`gradscope.analysis.summary.remainder_resolved`: an LSTM's lag 1, where it is exactly zero and
    float32 gives ~10^−7 of the total, a spike that is no property of the model)."""
    dtype = str((analysis.get("precision") or {}).get("dtype", "float32"))
    resolved, _ = remainder_resolved(total, remainder, np.float64 if "64" in dtype else np.float32)
    return np.isnan(resolved) & np.isfinite(np.asarray(total, np.float64))
